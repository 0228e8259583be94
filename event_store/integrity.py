"""The hash chain that makes the log tamper-evident, and its verification.

Payload and metadata are stored as the exact JSON text the writer produced (the
PostgreSQL ``json`` type keeps text byte for byte), and that text is what gets
hashed, so verification never re-encodes anything.

- *leaf* = SHA-256(0x00 ‖ canonical line of the event: id, stream, type, schema
  version, occurred/recorded times in integer microseconds, payload text, metadata text)
- *chain hash* = SHA-256(0x01 ‖ previous chain hash ‖ leaf), from 32 zero bytes.

The 0x00/0x01 prefixes follow RFC 6962 §2.1, so a leaf can never pass for a link.
A leaf does not contain the position or the stream version: it can be computed
before the writer takes the sequencer lock. The chain binds the order instead, and
`verify` checks that positions run 1, 2, 3, … and that each stream's versions run
1, 2, 3, … in position order. Together that finds:

- an altered event (its leaf, hence its chain hash, changes);
- a removed event (a position is missing);
- an inserted or duplicated event (a position repeats, or the chain breaks);
- reordered events (the chain breaks at the first moved one);
- a renumbered stream version (a stream's versions stop being consecutive);
- a cut-off tail (the log ends before the head record: last position and hash).

A superuser can rewrite the head record too. The head hash printed by
``vigil audit verify`` is therefore worth recording outside the database; that is
the usual limit of a hash chain without external anchoring.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson

__all__ = [
    "GENESIS", "StoredRow", "StoredFields", "encode_json", "micros", "leaf_hash", "link", "VerifyReport", "verify",
]

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_YIELD_EVERY = 1000
"""`verify` lets the event loop run every this many positions."""

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# Types orjson would encode on its own but the standard library refuses (datetimes,
# dataclasses, subclasses of str/int/dict/list) go to `default`, which hands them back.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def encode_json(value: object) -> str:
    """The JSON text written for a payload or metadata (and hashed as it is): compact,
    UTF-8 kept as is, NaN and infinities refused (`ValueError`), in insertion order.

    orjson writes it, about five times faster than the standard library (encoding is
    most of an append's client time). Anything orjson cannot write exactly as intended
    goes to the standard library's checking encoder instead: a type it does not take,
    an integer beyond 64 bits, nesting deeper than 254, and any output containing
    ``null``, because orjson writes NaN and infinities as ``null`` where they must be
    refused. Either way the text is what is stored and hashed, and the same value
    always takes the same path, so it always gets the same text."""
    try:
        out = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _ENCODER.encode(value)
    if b"null" in out:
        return _ENCODER.encode(value)
    return out.decode()

_MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """Exact integer microseconds since the Unix epoch, as hashed (PostgreSQL's
    timestamptz keeps exactly that much)."""
    return (value - _EPOCH) // _MICROSECOND


@functools.lru_cache(maxsize=65_536)
def _quoted(text: str) -> str:
    # Stream ids repeat across a log; quoting each once is a measurable share of verify.
    return json.dumps(text, ensure_ascii=False)


def leaf_hash(
    event_id: str, stream_id: str, event_type: str, schema_version: int,
    occurred_us: int, recorded_us: int, payload_json: str, metadata_json: str,
) -> bytes:
    """The leaf over canonical forms: the id as its hyphenated text, times as integer
    microseconds (what PostgreSQL can hand back without building Python objects)."""
    line = (
        f"{event_id}\n{_quoted(stream_id)}\n{event_type}\n{schema_version}\n"
        f"{occurred_us}\n{recorded_us}\n{payload_json}\n{metadata_json}"
    )
    return hashlib.sha256(b"\x00" + line.encode()).digest()


def link(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + previous + leaf).digest()


class StoredRow(NamedTuple):
    """One event exactly as stored, payload and metadata as their stored text.
    (A named tuple: verification builds one per event, and tuples are cheap.)"""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    occurred_us: int
    recorded_us: int
    payload_json: str
    metadata_json: str
    chain_hash: bytes

    def leaf(self) -> bytes:
        return leaf_hash(self.event_id, self.stream_id, self.event_type, self.schema_version,
                         self.occurred_us, self.recorded_us, self.payload_json, self.metadata_json)


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


StoredFields = tuple[int, str, str, int, str, int, int, int, str, str, bytes]
"""A stored row as a plain tuple, in `StoredRow`'s field order (what `verify` reads)."""


def _tampered(checked: int, last_hash: bytes, position: int, problem: str) -> VerifyReport:
    return VerifyReport(False, checked, checked, last_hash, position, problem)


async def verify(rows: AsyncIterable[Sequence[StoredFields]], head_position: int, head_hash: bytes) -> VerifyReport:
    """Check the chain over all stored rows (pages in position order, each row a
    `StoredRow` or any tuple in its field order) against the head record. Stops at
    the first problem."""
    expected = 1
    previous = GENESIS
    versions: dict[str, int] = {}
    async for page in rows:
        # The hot loop of `vigil audit verify`: unpack once, no per-row objects.
        for (position, event_id, stream_id, stream_version, event_type, schema_version, occurred_us, recorded_us,
             payload_json, metadata_json, chain_hash) in page:
            if position != expected:
                if position < expected:
                    return _tampered(expected - 1, previous, position,
                                     f"position {position} appears again or out of order")
                return _tampered(expected - 1, previous, expected,
                                 f"position {expected} is missing (next stored is {position})")
            computed = link(previous, leaf_hash(event_id, stream_id, event_type, schema_version, occurred_us,
                                                recorded_us, payload_json, metadata_json))
            if computed != chain_hash:
                return _tampered(expected - 1, previous, position,
                                 "event content or order does not match its chain hash")
            version = versions.get(stream_id, 0) + 1
            if stream_version != version:
                return _tampered(expected - 1, previous, position,
                                 f"stream {stream_id} has version {stream_version}, expected {version}")
            versions[stream_id] = version
            previous = computed
            expected += 1
            if not expected % _YIELD_EVERY:
                # Let the event loop run, so a page being fetched meanwhile keeps flowing
                # (otherwise the socket buffer fills and the server waits for us).
                await asyncio.sleep(0)
    if expected - 1 != head_position:
        return _tampered(expected - 1, previous, expected,
                         f"log ends at position {expected - 1} but the head records {head_position}")
    if previous != head_hash:
        return _tampered(expected - 1, previous, head_position, "last chain hash does not match the head record")
    return VerifyReport(True, expected - 1, head_position, previous)
