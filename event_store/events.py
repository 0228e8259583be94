"""Event records: what is appended (`NewEvent`) and what is read back (`RecordedEvent`).

Event types are stable names in the past tense (``VitalsObserved``), never Python
paths; ``schema_version`` lets later readers upcast old payloads.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from event_store.exceptions import InvalidEvent

__all__ = ["NewEvent", "RecordedEvent", "JsonObject", "AppendRequest", "ANY_VERSION", "NO_STREAM"]

JsonObject = dict[str, Any]

ANY_VERSION: None = None
"""``expected_version`` that skips the optimistic concurrency check."""
NO_STREAM = 0
"""``expected_version`` of a stream that must not exist yet."""

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


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: its global ``position`` (1, 2, 3, ... with no gaps), its
    ``stream_version`` (1, 2, ... within ``stream_id``), store time, and ``chain_hash``,
    the hash chain value that `event_store.integrity` checks."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    payload: JsonObject
    metadata: JsonObject
    chain_hash: bytes = b""

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
