"""In-memory recorder: the reference backend for unit tests and the contract suite.

Single event loop, no persistence. An `asyncio.Lock` plays the part of the
PostgreSQL sequencer and an `asyncio.Condition` that of LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime

from event_store.base import EventRecorder, LogHead, sequence
from event_store.events import AppendRequest, RecordedEvent
from event_store.integrity import GENESIS

__all__ = ["MemoryRecorder"]


class MemoryRecorder(EventRecorder):
    def __init__(self) -> None:
        self._events: list[RecordedEvent] = []
        self._by_id: dict[uuid.UUID, RecordedEvent] = {}
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._head = LogHead(0, GENESIS)
        self._lock = asyncio.Lock()
        self._appended = asyncio.Condition()

    async def append_batch(self, requests: Sequence[AppendRequest]) -> dict[uuid.UUID, int]:
        async with self._lock:
            ids = {e.event_id for r in requests for e in r.events}
            stored = {i: (self._by_id[i].stream_id, self._by_id[i].position) for i in ids if i in self._by_id}
            versions = {r.stream_id: len(self._streams.get(r.stream_id, ())) for r in requests}
            done = sequence(requests, self._head, versions, stored, datetime.now(UTC))
            # sequence() raised before this point if anything conflicts: all or nothing.
            for e in done.new:
                self._events.append(e)
                self._by_id[e.event_id] = e
                self._streams.setdefault(e.stream_id, []).append(e)
            self._head = done.head
        if done.new:
            async with self._appended:
                self._appended.notify_all()
        return done.positions

    async def read_stream(self, stream_id: str, from_version: int = 1, limit: int | None = None) -> list[RecordedEvent]:
        events = self._streams.get(stream_id, [])[max(from_version, 1) - 1:]
        return events[:limit] if limit is not None else list(events)

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        # Positions are 1, 2, 3, ... so position p sits at index p - 1.
        start = max(after, 0)
        return self._events[start:start + limit]

    async def head(self) -> LogHead:
        return self._head

    async def subscribe(self, after: int = 0, poll_interval: float = 1.0) -> AsyncGenerator[RecordedEvent, None]:
        position = after
        while True:
            batch = await self.read_all(position, 500)
            for event in batch:
                position = event.position
                yield event
            if len(batch) < 500:
                async with self._appended:
                    if self._head.position <= position:
                        try:
                            await asyncio.wait_for(self._appended.wait(), poll_interval)
                        except TimeoutError:
                            pass
