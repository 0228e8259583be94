"""The hash chain that makes the log tamper-evident, and its verification.

Every event's *leaf* is SHA-256 over a canonical encoding of everything stored about
it (position, ids, versions, type, times, payload, metadata). Its *chain hash* is
``SHA-256(0x01 || previous chain hash || leaf)``, starting from 32 zero bytes. The
distinct prefixes (0x00 for leaves, 0x01 for links) follow RFC 6962 §2.1 so a leaf
can never be passed off as a link. Positions are gap-free, so `verify` can tell:

- an altered event: its recomputed chain hash differs;
- a removed event: a position is missing;
- an inserted event: a position repeats or the chain breaks after it;
- reordered events: the chain breaks at the first moved one;
- a cut-off tail: the log ends before the head record (last position and hash).

A superuser can rewrite the head record too. Verification is then only as strong
as the last head value an auditor wrote down elsewhere (``vigil audit verify``
prints it), which is the usual limit of a hash chain without external anchoring.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import datetime

from event_store.events import RecordedEvent

__all__ = ["GENESIS", "canonical_json", "leaf_hash", "leaf_hash_encoded", "link", "chain", "VerifyReport", "verify"]

GENESIS = bytes(32)


def _ts(value: datetime) -> str:
    # Microseconds in UTC: PostgreSQL's timestamptz keeps exactly that much.
    return f"{value.timestamp():.6f}"


def _canonical(value: object) -> object:
    """Numbers as PostgreSQL's jsonb gives them back: an integral float (5.0, 1e20)
    may return as an int, so encode it as one on both sides."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _canonical(v) if isinstance(v, (float, dict, list)) else v for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def canonical_json(value: object) -> str:
    """The one JSON text of ``value`` that both sides hash: sorted keys, no spaces,
    integral floats as integers. It survives PostgreSQL's jsonb round trip."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def leaf_hash_encoded(
    position: int, event_id: uuid.UUID, stream_id: str, stream_version: int, event_type: str,
    schema_version: int, occurred_at: datetime, recorded_at: datetime, payload_json: str, metadata_json: str,
) -> bytes:
    """SHA-256 leaf of one event whose payload and metadata are already `canonical_json`."""
    encoded = (
        f"[{position},\"{event_id}\",{json.dumps(stream_id, ensure_ascii=False)},{stream_version},"
        f"{json.dumps(event_type)},{schema_version},\"{_ts(occurred_at)}\",\"{_ts(recorded_at)}\","
        f"{payload_json},{metadata_json}]"
    )
    return hashlib.sha256(b"\x00" + encoded.encode()).digest()


def leaf_hash(event: RecordedEvent) -> bytes:
    """SHA-256 leaf of a stored event, as verification recomputes it."""
    return leaf_hash_encoded(
        event.position, event.event_id, event.stream_id, event.stream_version, event.event_type,
        event.schema_version, event.occurred_at, event.recorded_at,
        canonical_json(event.payload), canonical_json(event.metadata),
    )


def link(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + previous + leaf).digest()


def chain(previous: bytes, leaves: list[bytes]) -> list[bytes]:
    out = []
    for leaf in leaves:
        previous = link(previous, leaf)
        out.append(previous)
    return out


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    events: int
    last_position: int
    last_hash: bytes
    first_bad_position: int | None = None
    problem: str = ""

    def summary(self) -> str:
        if self.ok:
            return f"OK: {self.events} events, positions 1-{self.last_position}, head {self.last_hash.hex()}"
        return f"TAMPERED at position {self.first_bad_position}: {self.problem}"


async def verify(events: AsyncIterable[RecordedEvent], head_position: int, head_hash: bytes) -> VerifyReport:
    """Check the chain over ``events`` (all of them, in position order) against the
    head record. Stops at the first problem."""
    expected = 1
    previous = GENESIS
    count = 0

    def bad(position: int, problem: str) -> VerifyReport:
        return VerifyReport(False, count, expected - 1, previous, position, problem)

    async for event in events:
        if event.position < expected:
            return bad(event.position, f"position {event.position} appears again or out of order")
        if event.position > expected:
            return bad(expected, f"position {expected} is missing (next stored is {event.position})")
        computed = link(previous, leaf_hash(event))
        if computed != event.chain_hash:
            return bad(event.position, "event content or order does not match its chain hash")
        previous = computed
        count += 1
        expected += 1
    if expected - 1 != head_position:
        return bad(expected, f"log ends at position {expected - 1} but the head records {head_position}")
    if previous != head_hash:
        return bad(head_position, "last chain hash does not match the head record")
    return VerifyReport(True, count, head_position, previous)
