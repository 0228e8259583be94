"""In-memory recorder: the reference backend for unit tests and the contract suite.

Single event loop, no persistence. An `asyncio.Lock` plays the part of the
PostgreSQL sequencer and an `asyncio.Condition` that of LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime

from event_store.base import EventRecorder, LogHead, NewRow, prepare, sequence
from event_store.events import AppendRequest, RecordedEvent
from event_store.integrity import GENESIS, StoredRow, micros
import contextlib

__all__ = ["MemoryRecorder"]


class MemoryRecorder(EventRecorder):
    def __init__(self) -> None:
        self._rows: list[StoredRow] = []
        self._events: list[RecordedEvent] = []
        self._by_id: dict[uuid.UUID, RecordedEvent] = {}
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._head = LogHead(0, GENESIS)
        self._lock = asyncio.Lock()
        self._appended = asyncio.Condition()

    async def append_batch(self, requests: Sequence[AppendRequest]) -> dict[uuid.UUID, int]:
        now = datetime.now(UTC)
        prepared = prepare(requests, now)
        async with self._lock:
            ids = {e.event_id for r in requests for e in r.events}
            stored = {i: (self._by_id[i].stream_id, self._by_id[i].position) for i in ids if i in self._by_id}
            versions = {r.stream_id: len(self._streams.get(r.stream_id, ())) for r in requests}
            done = sequence(requests, prepared, now, self._head, versions, stored)
            # sequence() raised before this point if anything conflicts: all or nothing.
            for new in done.new:
                event = _decoded(new, now)
                self._rows.append(StoredRow(
                    new.position, str(event.event_id), event.stream_id, new.stream_version, event.event_type,
                    event.schema_version, micros(event.occurred_at), micros(now), new.payload_json,
                    new.metadata_json, new.chain_hash))
                self._events.append(event)
                self._by_id[event.event_id] = event
                self._streams.setdefault(event.stream_id, []).append(event)
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

    async def read_stored(self, after: int = 0, limit: int = 10_000) -> list[StoredRow]:
        start = max(after, 0)
        return self._rows[start:start + limit]

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
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._appended.wait(), poll_interval)


def _decoded(row: NewRow, recorded_at: datetime) -> RecordedEvent:
    """What a reader gets back: decoded from the stored text, as PostgreSQL would."""
    e = row.event
    return RecordedEvent(
        position=row.position, event_id=e.event_id, stream_id=e.stream_id, stream_version=row.stream_version,
        event_type=e.event_type, schema_version=e.schema_version, occurred_at=e.occurred_at,
        recorded_at=recorded_at, payload=json.loads(row.payload_json), metadata=json.loads(row.metadata_json),
        chain_hash=row.chain_hash,
    )
