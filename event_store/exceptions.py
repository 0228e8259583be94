"""Errors raised by event_store.

    EventStoreError
    ├── InvalidEvent          an event failed validation; the message names the field
    ├── ConcurrencyConflict   a stream was not at the expected version (reload, decide again)
    ├── DuplicateEvent        an event id is already used by a different stream
    ├── AppendForbidden       the database refused a write (privileges, immutability)
    ├── MigrationError        a migration file is missing, malformed or failed
    └── StoreUnavailable      the database cannot be reached (transient: retry later)
"""

from __future__ import annotations

__all__ = [
    "EventStoreError", "InvalidEvent", "ConcurrencyConflict", "DuplicateEvent", "AppendForbidden",
    "MigrationError", "StoreUnavailable",
]


class EventStoreError(Exception):
    """Root of the event store's errors."""


class InvalidEvent(EventStoreError, ValueError):
    """An event is malformed. Fix the producer; the event was not stored."""


class ConcurrencyConflict(EventStoreError):
    """Another writer appended to the stream first. Re-read the stream, decide again
    on the new state, and append with the new expected version."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r} is at version {actual}, expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class DuplicateEvent(EventStoreError):
    """An event id is already stored for another stream: ids must be unique across the
    log. Derive ids from the input (topic/partition/offset) or use uuid4."""


class AppendForbidden(EventStoreError):
    """The database refused the write (missing privilege or the append-only trigger).
    Nothing was stored; check the role the process connects as."""


class MigrationError(EventStoreError):
    """The schema could not be brought up to date. Check the database log and the
    ``schema_migrations`` table, fix the cause, then run ``vigil db migrate`` again."""


class StoreUnavailable(EventStoreError):
    """The database could not be reached. Transient: the caller should back off and retry."""
