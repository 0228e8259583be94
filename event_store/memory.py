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

from event_store.base import EventRecorder, LogHead, assign, chain, prepare
from event_store.events import Appended, AppendRequest, RecordedEvent
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

    async def append_batch(self, requests: Sequence[AppendRequest]) -> Appended:
        now = datetime.now(UTC)
        events = [e for r in requests for e in r.events]
        prepared = dict(zip((e.event_id for e in events), prepare(events, now), strict=True))
        async with self._lock:
            ids = {e.event_id for e in events}
            stored = {i: (self._by_id[i].stream_id, self._by_id[i].position) for i in ids if i in self._by_id}
            versions = {r.stream_id: len(self._streams.get(r.stream_id, ())) for r in requests}
            plan = assign(requests, self._head.position, versions, stored)
            rows, head_hash = chain(plan, [prepared[e.event_id] for e in plan.events], now, self._head.chain_hash)
            # assign() raised before this point if anything conflicts: all or nothing.
            for e, row in zip(plan.events, rows, strict=True):
                position, event_id, _, version, _, _, _, _, payload, metadata, chained = row
                # Readers get the stored text decoded, as from PostgreSQL, not the caller's dicts.
                event = RecordedEvent(position, e.event_id, e.stream_id, version, e.event_type, e.schema_version,
                                      e.occurred_at, now, json.loads(payload), json.loads(metadata), chained)
                self._rows.append(StoredRow(position, event_id, e.stream_id, version, e.event_type, e.schema_version,
                                            micros(e.occurred_at), micros(now), payload, metadata, chained))
                self._events.append(event)
                self._by_id[event.event_id] = event
                self._streams.setdefault(event.stream_id, []).append(event)
            self._head = LogHead(plan.position, head_hash)
        if rows:
            async with self._appended:
                self._appended.notify_all()
        return Appended(plan.positions, plan.first if plan.events else None)

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
