"""The recorder contract every backend implements, and the sequencing step they share.

An `EventRecorder` stores events exactly as given and returns them exactly as
stored (no upcasting; see `event_store.store.EventStore` for that). Backends:
`event_store.memory.MemoryRecorder` and `event_store.postgres.PostgresRecorder`;
`tests/contract/` runs one suite against both.

Appending is two steps. Outside any lock, requests are validated. Then, inside the
backend's sequencer (one at a time), `sequence()` checks idempotency and expected
versions against the current state, and gives each new event its position (the
next integer: positions have no gaps), stream version, store time and chain hash.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from event_store.events import AppendRequest, NewEvent, RecordedEvent
from event_store.exceptions import ConcurrencyConflict, DuplicateEvent
from event_store.integrity import VerifyReport, canonical_json, chain, leaf_hash_encoded, verify

__all__ = ["EventRecorder", "LogHead", "Sequenced", "sequence"]


@dataclass(frozen=True, slots=True)
class LogHead:
    position: int
    chain_hash: bytes


@dataclass(frozen=True, slots=True)
class Sequenced:
    new: list[RecordedEvent]
    """Events to write, in position order."""
    positions: dict[uuid.UUID, int]
    """Position of every event in the requests, new or already stored."""
    streams: dict[str, int]
    """New version of every stream that grows."""
    head: LogHead
    encoded: list[tuple[str, str]]
    """`canonical_json` of each new event's payload and metadata, as hashed: write these."""


def sequence(
    requests: Sequence[AppendRequest],
    head: LogHead,
    stream_versions: Mapping[str, int],
    stored: Mapping[uuid.UUID, tuple[str, int]],
    now: datetime,
) -> Sequenced:
    """Decide what an atomic batch appends. Pure.

    ``stream_versions``: current version of each requested stream (absent = 0).
    ``stored``: ``event_id -> (stream_id, position)`` for requested ids already in the log.
    An event already stored is skipped and keeps its position (idempotency); the
    expected-version check applies to the events that are new.
    """
    positions: dict[uuid.UUID, int] = {}
    versions = dict(stream_versions)
    fresh: list[tuple[NewEvent, int]] = []
    for req in requests:
        new_events: list[NewEvent] = []
        for e in req.events:
            if e.event_id in stored:
                owner, position = stored[e.event_id]
                if owner != e.stream_id:
                    raise DuplicateEvent(f"event_id {e.event_id} is already stored in stream {owner!r}")
                positions[e.event_id] = position
            elif e.event_id not in positions:
                positions[e.event_id] = 0  # placeholder: a repeat inside the batch is skipped
                new_events.append(e)
        if not new_events:
            continue
        current = versions.get(req.stream_id, 0)
        if req.expected_version is not None and req.expected_version != current:
            raise ConcurrencyConflict(req.stream_id, req.expected_version, current)
        for e in new_events:
            current += 1
            fresh.append((e, current))
        versions[req.stream_id] = current
    leaves = []
    encoded = []
    position = head.position
    for e, version in fresh:
        position += 1
        positions[e.event_id] = position
        texts = (canonical_json(e.payload), canonical_json(e.metadata))
        encoded.append(texts)
        leaves.append(leaf_hash_encoded(
            position, e.event_id, e.stream_id, version, e.event_type, e.schema_version, e.occurred_at, now, *texts))
    hashes = chain(head.chain_hash, leaves)
    new = [
        RecordedEvent(
            position=head.position + i + 1, event_id=e.event_id, stream_id=e.stream_id, stream_version=version,
            event_type=e.event_type, schema_version=e.schema_version, occurred_at=e.occurred_at,
            recorded_at=now, payload=e.payload, metadata=e.metadata, chain_hash=h,
        )
        for i, ((e, version), h) in enumerate(zip(fresh, hashes, strict=True))
    ]
    new_head = LogHead(position, hashes[-1]) if hashes else head
    grown = {r.stream_id: versions[r.stream_id] for r in requests if r.stream_id in versions}
    changed = {s: v for s, v in grown.items() if v != stream_versions.get(s, 0)}
    return Sequenced(new, positions, changed, new_head, encoded)


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

    async def verify(self, page: int = 10_000) -> VerifyReport:
        """Recompute the hash chain over the whole log (see `event_store.integrity`)."""
        head = await self.head()

        async def pages() -> AsyncGenerator[RecordedEvent, None]:
            after = 0
            while True:
                batch = await self.read_all(after, page)
                for e in batch:
                    yield e
                if len(batch) < page:
                    return
                after = batch[-1].position

        return await verify(pages(), head.position, head.chain_hash)

    async def close(self) -> None:
        """Release connections; the default has none."""
