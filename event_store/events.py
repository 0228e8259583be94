"""Event records: what is appended (`NewEvent`) and what is read back (`RecordedEvent`).

Event types are stable names in the past tense (``VitalsObserved``), never Python
paths; ``schema_version`` lets later readers upcast old payloads.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from event_store.exceptions import InvalidEvent

__all__ = ["NewEvent", "RecordedEvent", "StoredTime", "JsonObject", "AppendRequest", "Appended", "ANY_VERSION",
           "NO_STREAM"]

JsonObject = dict[str, Any]

ANY_VERSION: None = None
"""``expected_version`` that skips the optimistic concurrency check."""
NO_STREAM = 0
"""``expected_version`` of a stream that must not exist yet."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

StoredTime = int | bytes
"""A time as a store hands it over: integer microseconds since the Unix epoch, or
PostgreSQL's binary ``timestamptz`` (8 bytes, big-endian signed microseconds since
2000-01-01 UTC), which the PostgreSQL backend passes on untouched: asking the server
for integers costs it numeric arithmetic on every row, and building a datetime per
row costs the client about as much as the rest of the row."""


def _time(value: StoredTime) -> datetime:
    if isinstance(value, bytes):
        return _PG_EPOCH + timedelta(microseconds=int.from_bytes(value, "big", signed=True))
    return _EPOCH + timedelta(microseconds=value)


_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{2,63}$")
_STREAM_ID = re.compile(r"^[a-z][a-z0-9_]*-[A-Za-z0-9_.:-]{1,128}$")


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``event_id`` is deterministic where it derives from an
    input, so appending it again is a no-op."""

    event_id: uuid.UUID
    stream_id: str
    event_type: str
    occurred_at: datetime
    payload: JsonObject
    schema_version: int = 1
    metadata: JsonObject = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.event_id, uuid.UUID):
            raise InvalidEvent(f"event_id: expected a UUID, got {type(self.event_id).__name__}")
        if not _STREAM_ID.match(self.stream_id):
            raise InvalidEvent(f"stream_id: {self.stream_id!r} is not '<kind>-<id>'")
        if not _TYPE_NAME.match(self.event_type):
            raise InvalidEvent(f"event_type: {self.event_type!r} is not a CamelCase type name")
        if self.occurred_at.tzinfo is None:
            raise InvalidEvent("occurred_at: must be timezone-aware")
        if not isinstance(self.schema_version, int) or self.schema_version < 1:
            raise InvalidEvent(f"schema_version: {self.schema_version!r} is not a positive integer")
        if not isinstance(self.payload, dict):
            raise InvalidEvent("payload: must be a JSON object")
        if not isinstance(self.metadata, dict):
            raise InvalidEvent("metadata: must be a JSON object")


_LONG_DIGITS = re.compile(r"[0-9]{19}")


def _decode(text: str) -> Any:
    """Stored JSON text back to its value: orjson (several times faster), or the
    standard library where orjson would change it: orjson reads integers beyond 64
    bits as floats. Those have 19 digits or more, so any text with such a run of digits
    is read by the standard library; the few others with one (a digit string, a float
    like 0.000123... with 17 significant digits) only take the slower path."""
    if _LONG_DIGITS.search(text) is not None:
        return json.loads(text)
    return orjson.loads(text)


class RecordedEvent:
    """An event as stored: its global ``position`` (1, 2, 3, ... with no gaps), its
    ``stream_version`` (1, 2, ... within ``stream_id``), store time, and ``chain_hash``,
    the hash chain value that `event_store.integrity` checks.

    Immutable, like a frozen dataclass (every field is a read-only property), and
    compared field by field. Built with `stored()`, it keeps the payload and metadata
    as their stored JSON text and the times as the store handed them over, and
    converts each on first access (then keeps the result): a reader that pages
    through the log without looking inside every event does not pay for decoding it.
    (A plain frozen dataclass cost more to build than asyncpg took to fetch the row.)
    """

    __slots__ = ("_position", "_event_id", "_stream_id", "_stream_version", "_event_type", "_schema_version",
                 "_occurred_at", "_recorded_at", "_payload", "_metadata", "_chain_hash")
    __match_args__ = ("position", "event_id", "stream_id", "stream_version", "event_type", "schema_version",
                      "occurred_at", "recorded_at", "payload", "metadata", "chain_hash")

    _position: int
    _event_id: uuid.UUID
    _stream_id: str
    _stream_version: int
    _event_type: str
    _schema_version: int
    _occurred_at: datetime | StoredTime
    _recorded_at: datetime | StoredTime
    _payload: JsonObject | str
    _metadata: JsonObject | str
    _chain_hash: bytes

    def __init__(
        self, position: int, event_id: uuid.UUID, stream_id: str, stream_version: int, event_type: str,
        schema_version: int, occurred_at: datetime, recorded_at: datetime, payload: JsonObject, metadata: JsonObject,
        chain_hash: bytes = b"",
    ) -> None:
        self._position, self._event_id, self._stream_id = position, event_id, stream_id
        self._stream_version, self._event_type, self._schema_version = stream_version, event_type, schema_version
        self._occurred_at, self._recorded_at = occurred_at, recorded_at
        self._payload, self._metadata, self._chain_hash = payload, metadata, chain_hash

    @classmethod
    def stored(
        cls, position: int, event_id: uuid.UUID, stream_id: str, stream_version: int, event_type: str,
        schema_version: int, occurred_at: StoredTime, recorded_at: StoredTime, payload_json: str, metadata_json: str,
        chain_hash: bytes,
    ) -> RecordedEvent:
        """From the stored form: times as `StoredTime`, payload and metadata as JSON
        text (each converted when first read)."""
        e = cls.__new__(cls)
        e._position, e._event_id, e._stream_id = position, event_id, stream_id
        e._stream_version, e._event_type, e._schema_version = stream_version, event_type, schema_version
        e._occurred_at, e._recorded_at = occurred_at, recorded_at
        e._payload, e._metadata, e._chain_hash = payload_json, metadata_json, chain_hash
        return e

    @property
    def position(self) -> int:
        return self._position

    @property
    def event_id(self) -> uuid.UUID:
        return self._event_id

    @property
    def stream_id(self) -> str:
        return self._stream_id

    @property
    def stream_version(self) -> int:
        return self._stream_version

    @property
    def event_type(self) -> str:
        return self._event_type

    @property
    def schema_version(self) -> int:
        return self._schema_version

    @property
    def occurred_at(self) -> datetime:
        t = self._occurred_at
        if not isinstance(t, datetime):
            t = self._occurred_at = _time(t)
        return t

    @property
    def recorded_at(self) -> datetime:
        t = self._recorded_at
        if not isinstance(t, datetime):
            t = self._recorded_at = _time(t)
        return t

    @property
    def payload(self) -> JsonObject:
        p = self._payload
        if isinstance(p, str):
            p = self._payload = _decode(p)
        return p

    @property
    def metadata(self) -> JsonObject:
        m = self._metadata
        if isinstance(m, str):
            m = self._metadata = _decode(m)
        return m

    @property
    def chain_hash(self) -> bytes:
        return self._chain_hash

    def with_payload(self, payload: JsonObject, schema_version: int) -> RecordedEvent:
        """A copy with another payload and schema version (what upcasting produces)."""
        return RecordedEvent(self._position, self._event_id, self._stream_id, self._stream_version, self._event_type,
                             schema_version, self.occurred_at, self.recorded_at, payload, self.metadata,
                             self._chain_hash)

    def _fields(self) -> tuple[object, ...]:
        return (self._position, self._event_id, self._stream_id, self._stream_version, self._event_type,
                self._schema_version, self.occurred_at, self.recorded_at, self.payload, self.metadata,
                self._chain_hash)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable payload dicts: unhashable, as the dataclass was

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in zip(self.__match_args__, self._fields(), strict=True))
        return f"RecordedEvent({values})"

    def to_json(self) -> JsonObject:
        """The wire form used by the gateway."""
        return {
            "position": self.position,
            "event_id": str(self.event_id),
            "stream_id": self.stream_id,
            "stream_version": self.stream_version,
            "event_type": self.event_type,
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "payload": self.payload,
        }


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """Events for one stream, appended only if the stream is at ``expected_version``
    (its number of events; `NO_STREAM` = 0), or unconditionally with `ANY_VERSION`."""

    stream_id: str
    events: tuple[NewEvent, ...]
    expected_version: int | None = ANY_VERSION

    def __post_init__(self) -> None:
        if not self.events:
            raise InvalidEvent("events: an append needs at least one event")
        for e in self.events:
            if e.stream_id != self.stream_id:
                raise InvalidEvent(f"stream_id: event {e.event_id} is for {e.stream_id!r}, not {self.stream_id!r}")
        if self.expected_version is not None and self.expected_version < 0:
            raise InvalidEvent(f"expected_version: {self.expected_version} is negative")


class Appended(dict[uuid.UUID, int]):
    """What `append_batch` returns: every requested event's position (a dict, as
    before), and ``first_written``, the position of the first event this call wrote
    (None if every event was stored already). An event is new iff its position is at
    least that: the call writes its new events after everything already in the log."""

    __slots__ = ("first_written",)

    def __init__(self, positions: dict[uuid.UUID, int], first_written: int | None) -> None:
        super().__init__(positions)
        self.first_written = first_written

    def written(self, event_id: uuid.UUID) -> bool:
        """Whether this call wrote ``event_id`` (False: it was stored before)."""
        return self.first_written is not None and self[event_id] >= self.first_written
