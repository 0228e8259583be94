"""The recorder contract every backend implements, and the sequencing steps they share.

An `EventRecorder` stores events exactly as given and returns them exactly as
stored (no upcasting; see `event_store.store.EventStore` for that). Backends:
`event_store.memory.MemoryRecorder` and `event_store.postgres.PostgresRecorder`;
`tests/contract/` runs one suite against both.

Appending is three pure steps around the backend's sequencer (one writer at a time):

1. `prepare()` encodes each event's payload and metadata and computes its leaf hash
   (the expensive part). It needs no log state, so it can run before the sequencer
   lock, or under it in slices while the database is busy taking in rows (large
   PostgreSQL batches, see `event_store.postgres`).
2. `assign()`, inside the sequencer, checks idempotency and expected versions against
   the current state and gives each new event its position (the next integer:
   positions have no gaps) and stream version.
3. `chain()`, inside the sequencer, links the new events' leaves onto the head's
   chain hash (one SHA-256 each) and lays out the rows to write.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import TypeVar

from event_store.events import Appended, AppendRequest, NewEvent, RecordedEvent
from event_store.exceptions import ConcurrencyConflict, DuplicateEvent
from event_store.integrity import StoredFields, StoredRow, VerifyReport, encode_json, leaf_hash, link, micros, verify

__all__ = ["EventRecorder", "LogHead", "Prepared", "prepare", "Assignment", "assign", "NewRow", "chain", "prefetched"]

T = TypeVar("T")


async def prefetched(fetch: Callable[[int], Awaitable[Sequence[T]]], after: int, page: int,
                     position_of: Callable[[T], int]) -> AsyncGenerator[Sequence[T], None]:
    """Pages ``fetch(after)``, ``fetch(<last position of that page>)``, ... until one is
    short, each requested before the previous one is handed out: the database reads
    the next page while the caller works through this one."""
    pending: asyncio.Task[Sequence[T]] | None = asyncio.ensure_future(fetch(after))
    try:
        while pending is not None:
            rows = await pending
            if len(rows) == page:
                pending = asyncio.ensure_future(fetch(position_of(rows[-1])))
                # Let it send its query before the caller takes the CPU for this page.
                await asyncio.sleep(0)
            else:
                pending = None
            if rows:
                yield rows
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


@dataclass(frozen=True, slots=True)
class LogHead:
    position: int
    chain_hash: bytes


Prepared = tuple[str, str, str, bytes, int]
"""What `prepare()` computes for an event: its id as text (the canonical form, which
asyncpg also parses faster than it reads a `uuid.UUID`), payload JSON, metadata
JSON, leaf hash, and its occurrence time in integer microseconds since the Unix epoch."""


def prepare(events: Iterable[NewEvent], recorded_at: datetime) -> list[Prepared]:
    """Encode and leaf-hash every event, in order. Pure; needs no log state."""
    out: list[Prepared] = []
    recorded_us = micros(recorded_at)
    encode = encode_json
    for e in events:
        event_id, payload_json, metadata_json = str(e.event_id), encode(e.payload), encode(e.metadata)
        occurred_us = micros(e.occurred_at)
        out.append((event_id, payload_json, metadata_json, leaf_hash(
            event_id, e.stream_id, e.event_type, e.schema_version, occurred_us, recorded_us,
            payload_json, metadata_json), occurred_us))
    return out


@dataclass(frozen=True, slots=True)
class Assignment:
    events: list[NewEvent]
    """The events to write, in position order: ``events[i]`` gets position ``first + i``.
    (Parallel lists rather than a tuple per event: fewer objects for the garbage
    collector to track through a large batch.)"""
    versions: list[int]
    """The stream version of each of `events`."""
    positions: dict[uuid.UUID, int]
    """Position of every event in the requests, new or already stored."""
    streams: dict[str, int]
    """New version of every stream that grows."""
    position: int
    """The log's last position once the new events are written."""

    @property
    def first(self) -> int:
        return self.position - len(self.events) + 1


def assign(
    requests: Sequence[AppendRequest],
    head_position: int,
    stream_versions: Mapping[str, int],
    stored: Mapping[uuid.UUID, tuple[str, int]],
) -> Assignment:
    """Decide what an atomic batch appends; runs inside the sequencer. Pure.

    ``stream_versions``: current version of each requested stream (absent = 0).
    ``stored``: ``event_id -> (stream_id, position)`` for requested ids already in the log.
    An event already stored is skipped and keeps its position (idempotency); the
    expected-version check applies to the events that are new. Raises
    `ConcurrencyConflict` or `DuplicateEvent` before anything is decided.
    """
    positions: dict[uuid.UUID, int] = {}
    versions = dict(stream_versions)
    new: list[NewEvent] = []
    new_versions: list[int] = []
    position = head_position
    for req in requests:
        current = before = versions.get(req.stream_id, 0)
        for e in req.events:
            event_id = e.event_id
            if stored and (hit := stored.get(event_id)) is not None:
                owner, at = hit
                if owner != e.stream_id:
                    raise DuplicateEvent(f"event_id {event_id} is already stored in stream {owner!r}")
                positions[event_id] = at
            elif event_id not in positions:  # else a repeat inside the batch: skipped
                current += 1
                position += 1
                positions[event_id] = position
                new.append(e)
                new_versions.append(current)
        if current != before:
            # Only a request that adds events is checked; if it fails, nothing is kept.
            if req.expected_version is not None and req.expected_version != before:
                raise ConcurrencyConflict(req.stream_id, req.expected_version, before)
            versions[req.stream_id] = current
    changed = {s: v for s, v in versions.items() if v != stream_versions.get(s, 0)}
    return Assignment(new, new_versions, positions, changed, position)


NewRow = tuple[int, str, str, int, str, int, int, int, str, str, bytes]
"""A new event as written, in the ``events`` table's column order: position, event
id (text), stream id, stream version, event type, schema version, occurred at and
recorded at (integer microseconds since the Unix epoch, as hashed), payload JSON,
metadata JSON, chain hash. (A plain tuple: a large batch builds one per event, and
asyncpg's COPY takes them as they are; `event_store.postgres` gives it a
``timestamptz`` codec that writes integer times without making datetimes of them.)"""


def chain(
    plan: Assignment, prepared: Sequence[Prepared], recorded_at: datetime, previous: bytes, start: int = 0,
) -> tuple[list[NewRow], bytes]:
    """The rows for ``plan.events[start:start + len(prepared)]`` (``prepared`` in the
    same order), each linked onto ``previous``, the chain hash before them; and the
    last chain hash. Pure; call it on consecutive slices to spread the work, passing
    each slice's last hash to the next."""
    rows: list[NewRow] = []
    stop = start + len(prepared)
    position = plan.first + start
    recorded_us = micros(recorded_at)
    for e, version, (event_id, payload_json, metadata_json, leaf, occurred_us) in zip(
            plan.events[start:stop], plan.versions[start:stop], prepared, strict=True):
        previous = link(previous, leaf)
        rows.append((position, event_id, e.stream_id, version, e.event_type, e.schema_version, occurred_us,
                     recorded_us, payload_json, metadata_json, previous))
        position += 1
    return rows, previous


_POSITION: Callable[[RecordedEvent], int] = attrgetter("position")
_FIRST: Callable[[StoredFields], int] = itemgetter(0)


class EventRecorder(abc.ABC):
    """Append-only, ordered, idempotent storage of events."""

    async def append(self, stream_id: str, events: Sequence[NewEvent], expected_version: int | None = None) -> list[int]:
        """Append ``events`` to one stream; return their positions (original ones for
        events already stored). Raises `ConcurrencyConflict` if the stream is not at
        ``expected_version``."""
        positions = await self.append_batch([AppendRequest(stream_id, tuple(events), expected_version)])
        return [positions[e.event_id] for e in events]

    @abc.abstractmethod
    async def append_batch(self, requests: Sequence[AppendRequest]) -> Appended:
        """Append to many streams atomically (all or nothing) in one round trip
        where the backend allows; return every requested event's position, and
        which of them this call wrote (`Appended`)."""

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

    async def _read_stored_fields(self, after: int, limit: int) -> Sequence[StoredFields]:
        """`read_stored` for `verify`: a backend may return plain tuples, which are
        cheaper to build than `StoredRow`."""
        return await self.read_stored(after, limit)

    def read_all_pages(self, after: int = 0, page: int = 10_000) -> AsyncGenerator[Sequence[RecordedEvent], None]:
        """Every event after ``after`` as it is stored now, in pages of ``page`` events in
        position order; the next page is read while the caller handles this one. (Unlike
        `subscribe`, it ends at the last event stored.) Close it with ``aclose()`` if
        you stop early."""
        return prefetched(lambda position: self.read_all(position, page), after, page, _POSITION)

    async def verify(self, page: int = 10_000) -> VerifyReport:
        """Recompute the hash chain over the whole log (see `event_store.integrity`);
        the next page is read while this one is hashed."""
        head = await self.head()
        pages = prefetched(lambda position: self._read_stored_fields(position, page), 0, page, _FIRST)
        async with contextlib.aclosing(pages) as rows:
            return await verify(rows, head.position, head.chain_hash)

    async def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections; the default has none."""
