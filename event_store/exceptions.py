"""Errors raised by event_store.

    EventStoreError
    ├── InvalidEvent          an event failed validation; the message names the field
    ├── MigrationError        a migration file is missing, malformed or failed
    └── StoreUnavailable      the database cannot be reached (transient: retry later)
"""

from __future__ import annotations

__all__ = ["EventStoreError", "InvalidEvent", "MigrationError", "StoreUnavailable"]


class EventStoreError(Exception):
    """Root of the event store's errors."""


class InvalidEvent(EventStoreError, ValueError):
    """An event is malformed. Fix the producer; the event was not stored."""


class MigrationError(EventStoreError):
    """The schema could not be brought up to date. Check the database log and the
    ``schema_migrations`` table, fix the cause, then run ``vigil db migrate`` again."""


class StoreUnavailable(EventStoreError):
    """The database could not be reached. Transient: the caller should back off and retry."""
