"""The recorder contract every backend implements, and the sequencing step they share.

An `EventRecorder` stores events exactly as given and returns them exactly as
stored (no upcasting; see `event_store.store.EventStore` for that). Backends:
`event_store.memory.MemoryRecorder` and `event_store.postgres.PostgresRecorder`;
`tests/contract/` runs one suite against both.

Appending is two steps. Outside any lock, `prepare()` encodes every event and
computes its leaf hash (the expensive part). Then, inside the backend's sequencer
(one writer at a time), `sequence()` checks idempotency and expected versions
against the current state and gives each new event its position (the next integer:
positions have no gaps), stream version and chain hash (one SHA-256 each).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from event_store.events import AppendRequest, NewEvent, RecordedEvent
from event_store.exceptions import ConcurrencyConflict, DuplicateEvent
from event_store.integrity import StoredRow, VerifyReport, encode_json, leaf_hash, link, micros, verify

__all__ = ["EventRecorder", "LogHead", "NewRow", "Prepared", "Sequenced", "prepare", "sequence"]


@dataclass(frozen=True, slots=True)
class LogHead:
    position: int
    chain_hash: bytes


@dataclass(frozen=True, slots=True)
class Prepared:
    """What can be computed for an event before the sequencer lock."""

    payload_json: str
    metadata_json: str
    leaf: bytes


def prepare(requests: Sequence[AppendRequest], recorded_at: datetime) -> dict[uuid.UUID, Prepared]:
    """Encode and leaf-hash every requested event. Pure; runs outside the lock, so
    concurrent writers do this work in parallel."""
    out: dict[uuid.UUID, Prepared] = {}
    recorded_us = micros(recorded_at)
    for req in requests:
        for e in req.events:
            payload_json, metadata_json = encode_json(e.payload), encode_json(e.metadata)
            out[e.event_id] = Prepared(payload_json, metadata_json, leaf_hash(
                str(e.event_id), e.stream_id, e.event_type, e.schema_version, micros(e.occurred_at),
                recorded_us, payload_json, metadata_json))
    return out


@dataclass(frozen=True, slots=True)
class NewRow:
    """A new event with everything the sequencer decided for it."""

    position: int
    event: NewEvent
    stream_version: int
    payload_json: str
    metadata_json: str
    chain_hash: bytes


@dataclass(frozen=True, slots=True)
class Sequenced:
    new: list[NewRow]
    """Rows to write, in position order."""
    positions: dict[uuid.UUID, int]
    """Position of every event in the requests, new or already stored."""
    streams: dict[str, int]
    """New version of every stream that grows."""
    head: LogHead


def sequence(
    requests: Sequence[AppendRequest],
    prepared: Mapping[uuid.UUID, Prepared],
    recorded_at: datetime,
    head: LogHead,
    stream_versions: Mapping[str, int],
    stored: Mapping[uuid.UUID, tuple[str, int]],
) -> Sequenced:
    """Decide what an atomic batch appends; runs inside the sequencer lock. Pure.

    ``stream_versions``: current version of each requested stream (absent = 0).
    ``stored``: ``event_id -> (stream_id, position)`` for requested ids already in the log.
    An event already stored is skipped and keeps its position (idempotency); the
    expected-version check applies to the events that are new.
    """
    positions: dict[uuid.UUID, int] = {}
    versions = dict(stream_versions)
    new: list[NewRow] = []
    previous = head.chain_hash
    position = head.position
    for req in requests:
        fresh: list[NewEvent] = []
        for e in req.events:
            if e.event_id in stored:
                owner, at = stored[e.event_id]
                if owner != e.stream_id:
                    raise DuplicateEvent(f"event_id {e.event_id} is already stored in stream {owner!r}")
                positions[e.event_id] = at
            elif e.event_id not in positions:
                positions[e.event_id] = 0  # placeholder: a repeat inside the batch is skipped
                fresh.append(e)
        if not fresh:
            continue
        current = versions.get(req.stream_id, 0)
        if req.expected_version is not None and req.expected_version != current:
            raise ConcurrencyConflict(req.stream_id, req.expected_version, current)
        for e in fresh:
            current += 1
            position += 1
            p = prepared[e.event_id]
            previous = link(previous, p.leaf)
            positions[e.event_id] = position
            new.append(NewRow(position, e, current, p.payload_json, p.metadata_json, previous))
        versions[req.stream_id] = current
    changed = {s: v for s, v in versions.items() if v != stream_versions.get(s, 0)}
    return Sequenced(new, positions, changed, LogHead(position, previous))


class EventRecorder(abc.ABC):
    """Append-only, ordered, idempotent storage of events."""

    async def append(self, stream_id: str, events: Sequence[NewEvent], expected_version: int | None = None) -> list[int]:
        """Append ``events`` to one stream; return their positions (original ones for
        events already stored). Raises `ConcurrencyConflict` if the stream is not at
        ``expected_version``."""
        positions = await self.append_batch([AppendRequest(stream_id, tuple(events), expected_version)])
        return [positions[e.event_id] for e in events]

    @abc.abstractmethod
    async def append_batch(self, requests: Sequence[AppendRequest]) -> dict[uuid.UUID, int]:
        """Append to many streams atomically (all or nothing) in one round trip
        where the backend allows; return every requested event's position."""

    @abc.abstractmethod
    async def read_stream(self, stream_id: str, from_version: int = 1, limit: int | None = None) -> list[RecordedEvent]:
        """A stream's events from ``from_version`` on, in version order."""

    @abc.abstractmethod
    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with position > ``after``, in position order, at most ``limit``."""

    @abc.abstractmethod
    async def head(self) -> LogHead:
        """The last position and chain hash."""

    async def last_position(self) -> int:
        return (await self.head()).position

    @abc.abstractmethod
    def subscribe(self, after: int = 0, poll_interval: float = 1.0) -> AsyncGenerator[RecordedEvent, None]:
        """Every event after ``after``: first those stored, then each new one once it
        commits, in position order, never skipping or repeating one. Close it with
        ``aclose()`` (or ``contextlib.aclosing``)."""

    @abc.abstractmethod
    async def read_stored(self, after: int = 0, limit: int = 10_000) -> list[StoredRow]:
        """Rows exactly as stored (payload and metadata as their stored text), in
        position order: what `verify` checks."""

    async def verify(self, page: int = 10_000) -> VerifyReport:
        """Recompute the hash chain over the whole log (see `event_store.integrity`)."""
        head = await self.head()

        async def pages() -> AsyncGenerator[list[StoredRow], None]:
            # The next page is fetched while this one is hashed, so the database's
            # work overlaps ours.
            pending: asyncio.Task[list[StoredRow]] | None = asyncio.create_task(self.read_stored(0, page))
            try:
                while pending is not None:
                    rows = await pending
                    pending = asyncio.create_task(self.read_stored(rows[-1].position, page)) \
                        if len(rows) == page else None
                    if rows:
                        yield rows
            finally:
                if pending is not None:
                    pending.cancel()

        async with contextlib.aclosing(pages()) as rows:
            return await verify(rows, head.position, head.chain_hash)

    async def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections; the default has none."""
