"""`EventStore`: what application code reads and appends through. It wraps an
`EventRecorder` and upcasts every event it reads (`event_store.upcasting`), so code
only ever sees current schema versions. Auditing and verification go to the
recorder itself, which returns events exactly as stored."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from event_store.base import EventRecorder
from event_store.events import Appended, AppendRequest, NewEvent, RecordedEvent
from event_store.upcasting import Upcasters

__all__ = ["EventStore"]


class EventStore:
    def __init__(self, recorder: EventRecorder, upcasters: Upcasters | None = None) -> None:
        self.recorder = recorder
        self._upcasters = upcasters or Upcasters()

    async def append(self, stream_id: str, events: Sequence[NewEvent], expected_version: int | None = None) -> list[int]:
        return await self.recorder.append(stream_id, events, expected_version)

    async def append_batch(self, requests: Sequence[AppendRequest]) -> Appended:
        return await self.recorder.append_batch(requests)

    async def read_stream(self, stream_id: str, from_version: int = 1, limit: int | None = None) -> list[RecordedEvent]:
        return [self._upcasters.upcast(e) for e in await self.recorder.read_stream(stream_id, from_version, limit)]

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return [self._upcasters.upcast(e) for e in await self.recorder.read_all(after, limit)]

    async def last_position(self) -> int:
        return await self.recorder.last_position()

    async def subscribe(self, after: int = 0, poll_interval: float = 1.0) -> AsyncGenerator[RecordedEvent, None]:
        events = self.recorder.subscribe(after, poll_interval)
        try:
            async for event in events:
                yield self._upcasters.upcast(event)
        finally:
            await events.aclose()
