"""The event log on PostgreSQL, through asyncpg.

Ordering rule (what subscribers rely on): a reader that has seen position ``p``
must never later find a *new* event at a position below ``p``. A ``bigserial``
alone does not give that: two transactions can take positions 7 and 8, and 8 can
commit first, so a reader polling "after 6" sees 8, moves on, and misses 7 when it
commits. Here every append takes one transaction-scoped advisory lock before it
inserts, so positions are handed out and committed in the same order. That
serialises writers; it is the simple, correct rule for the thin slice, and the
event-store issue replaces it with a high-water mark that lets writers run in
parallel. The NOTIFY is sent inside the same transaction, so PostgreSQL delivers it
only after the commit (https://www.postgresql.org/docs/current/sql-notify.html).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Sequence
from importlib import resources
from typing import Any

import asyncpg

from event_store.events import NewEvent, RecordedEvent
from event_store.exceptions import MigrationError, StoreUnavailable

__all__ = ["PostgresEventStore", "NOTIFY_CHANNEL"]

NOTIFY_CHANNEL = "vigil_events"
_APPEND_LOCK = 0x5649_4749  # "VIGI": the advisory lock key that orders appends
_MIGRATE_LOCK = 0x5649_4D47

_TRANSIENT = (OSError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError,
              asyncpg.TooManyConnectionsError, asyncio.TimeoutError)

_INSERT = """
INSERT INTO events (event_id, stream_id, event_type, schema_version, occurred_at, payload, metadata)
SELECT e.event_id, e.stream_id, e.event_type, e.schema_version, e.occurred_at, e.payload, e.metadata
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::jsonb[], $7::jsonb[])
     WITH ORDINALITY AS e(event_id, stream_id, event_type, schema_version, occurred_at, payload, metadata, n)
ORDER BY e.n
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id, position
"""

_SELECT = """
SELECT position, event_id, stream_id, event_type, schema_version, occurred_at, recorded_at, payload, metadata
FROM events
"""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _row_to_event(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        event_type=row["event_type"],
        schema_version=row["schema_version"],
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        payload=row["payload"],
        metadata=row["metadata"],
    )


class PostgresEventStore:
    """Append, read and subscribe to the event log. Create with `connect()`."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 5, attempts: int = 20) -> PostgresEventStore:
        """Open a pool, retrying transient connection errors with back-off."""
        delay = 0.2
        for attempt in range(1, attempts + 1):
            try:
                pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
                return cls(pool, dsn)
            except _TRANSIENT as e:
                if attempt == attempts:
                    raise StoreUnavailable(f"cannot connect to PostgreSQL after {attempts} attempts: {e}") from e
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> list[str]:
        """Apply pending migrations in file-name order; return the names applied."""
        files = sorted(
            (f for f in resources.files("event_store.migrations").iterdir() if f.name.endswith(".sql")),
            key=lambda f: f.name,
        )
        applied: list[str] = []
        async with self._pool.acquire() as conn, conn.transaction():
            # One migrator at a time: the worker and the gateway both migrate at start.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for f in files:
                if f.name in done:
                    continue
                try:
                    await conn.execute(f.read_text())
                except asyncpg.PostgresError as e:
                    raise MigrationError(f"migration {f.name} failed: {e}") from e
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", f.name)
                applied.append(f.name)
        return applied

    async def append(self, events: Sequence[NewEvent]) -> dict[uuid.UUID, int]:
        """Append ``events`` atomically; return each event's position.

        Idempotent by ``event_id``: an event already in the log is not written again
        and its original position is returned.
        """
        if not events:
            return {}
        cols: list[list[Any]] = [[], [], [], [], [], [], []]
        for e in events:
            for col, value in zip(
                cols,
                (e.event_id, e.stream_id, e.event_type, e.schema_version, e.occurred_at, e.payload, e.metadata),
                strict=True,
            ):
                col.append(value)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPEND_LOCK)
                rows = await conn.fetch(_INSERT, *cols)
                positions = {r["event_id"]: r["position"] for r in rows}
                missing = [e.event_id for e in events if e.event_id not in positions]
                if missing:
                    old = await conn.fetch("SELECT event_id, position FROM events WHERE event_id = ANY($1::uuid[])", missing)
                    positions.update({r["event_id"]: r["position"] for r in old})
                if rows:
                    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(max(r["position"] for r in rows)))
        except _TRANSIENT as e:
            raise StoreUnavailable(f"append failed, database unreachable: {e}") from e
        return positions

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with position > ``after``, in position order, at most ``limit``."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_SELECT + "WHERE position > $1 ORDER BY position LIMIT $2", after, limit)
        return [_row_to_event(r) for r in rows]

    async def last_position(self) -> int:
        async with self._pool.acquire() as conn:
            value = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        return int(value)

    async def subscribe(self, after: int = 0, poll_interval: float = 1.0) -> AsyncGenerator[RecordedEvent, None]:
        """Yield every event after ``after``: first those already stored, then new
        ones as they commit (woken by NOTIFY, with a slow poll as a safety net)."""
        wake = asyncio.Event()
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn)

        def on_notify(*_: object) -> None:
            wake.set()

        await conn.add_listener(NOTIFY_CHANNEL, on_notify)
        try:
            position = after
            while True:
                wake.clear()
                batch = await self.read_all(position, 500)
                for event in batch:
                    position = event.position
                    yield event
                if len(batch) < 500:
                    try:
                        await asyncio.wait_for(wake.wait(), poll_interval)
                    except TimeoutError:
                        pass
        finally:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not mask the real error
                pass
