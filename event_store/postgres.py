"""The event log on PostgreSQL (TimescaleDB where present), through asyncpg.

Ordering rule, which subscribers and ``audit verify`` rely on: positions are handed
out, and committed, strictly one after another. A writer first locks the single
``log_head`` row (``SELECT ... FOR UPDATE``), takes the next positions from it,
inserts, moves the head, and commits, which releases the lock. So when a reader
sees position ``p``, every position below ``p`` has already committed: nothing can
appear behind it later. A bare ``bigserial`` would not give that (7 and 8 can be
drawn in one order and committed in the other, and a reader that saw 8 would skip
7); see also https://www.postgresql.org/docs/current/functions-sequence.html on
sequence values not being transactional.

This serialises the final step of every append, and it has to: each event's chain
hash depends on the one before it, so some writer-wide order is needed at write
time. Everything that can happen outside the lock does (validation, encoding), the
lock is held for three round trips (lock + lookups, one multi-table insert,
commit), and batch appends pay for it once per batch. The NOTIFY is sent in the same
transaction and so delivered only after commit
(https://www.postgresql.org/docs/current/sql-notify.html).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar

import asyncpg

from event_store.base import EventRecorder, LogHead, prepare, sequence
from event_store.events import AppendRequest, RecordedEvent
from event_store.integrity import StoredRow
from event_store.exceptions import AppendForbidden, EventStoreError, MigrationError, StoreUnavailable
import contextlib

__all__ = ["PostgresRecorder", "NOTIFY_CHANNEL", "migrate"]

NOTIFY_CHANNEL = "vigil_events"
_MIGRATE_LOCK = 0x5649_4D47  # advisory lock: one migrator at a time

# Errors worth retrying: the connection broke or the server is starting/overloaded.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError, asyncpg.InterfaceError,
)
T = TypeVar("T")

_LOCK_AND_LOOK = """
SELECT h.position, h.chain_hash,
       (SELECT coalesce(json_agg(json_build_array(i.event_id, i.stream_id, i.position)), '[]')
          FROM event_ids i WHERE i.event_id = ANY($1::uuid[])) AS stored,
       (SELECT coalesce(json_object_agg(s.stream_id, s.version), '{}')
          FROM streams s WHERE s.stream_id = ANY($2::text[])) AS versions
FROM log_head h
FOR UPDATE OF h
"""

_INSERT = f"""
WITH rows AS (
    SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::int[],
                         $7::timestamptz[], $8::json[], $9::json[], $10::bytea[])
           AS r(position, event_id, stream_id, stream_version, event_type, schema_version,
                occurred_at, payload, metadata, chain_hash)
), ev AS (
    INSERT INTO events (position, event_id, stream_id, stream_version, event_type, schema_version,
                        occurred_at, recorded_at, payload, metadata, chain_hash)
    SELECT position, event_id, stream_id, stream_version, event_type, schema_version,
           occurred_at, $11, payload, metadata, chain_hash FROM rows
), ids AS (
    INSERT INTO event_ids (event_id, stream_id, position) SELECT event_id, stream_id, position FROM rows
), st AS (
    INSERT INTO streams (stream_id, version) SELECT * FROM unnest($12::text[], $13::int[])
    ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version
)
UPDATE log_head SET position = $14, chain_hash = $15
RETURNING pg_notify('{NOTIFY_CHANNEL}', position::text)
"""

_SELECT = """
SELECT position, event_id, stream_id, stream_version, event_type, schema_version,
       occurred_at, recorded_at, payload, metadata, chain_hash
FROM events
"""


def _encode_json(value: object) -> str:
    # Already-encoded text (the canonical JSON that was hashed) goes in as it is.
    return value if isinstance(value, str) else json.dumps(value)


# Payload and metadata exactly as stored (json keeps the text), for verification.
_SELECT_STORED = """
SELECT position, event_id::text, stream_id, stream_version, event_type, schema_version,
       (extract(epoch FROM occurred_at) * 1000000)::bigint,
       (extract(epoch FROM recorded_at) * 1000000)::bigint,
       payload::text, metadata::text, chain_hash
FROM events WHERE position > $1 ORDER BY position LIMIT $2
"""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_encode_json, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=_encode_json, decoder=json.loads, schema="pg_catalog")


def _row_to_event(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"], event_id=row["event_id"], stream_id=row["stream_id"],
        stream_version=row["stream_version"], event_type=row["event_type"], schema_version=row["schema_version"],
        occurred_at=row["occurred_at"], recorded_at=row["recorded_at"], payload=row["payload"],
        metadata=row["metadata"], chain_hash=bytes(row["chain_hash"]),
    )


async def _retrying(what: str, call: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Run ``call``; retry only transient errors, with back-off; translate the rest."""
    delay = 0.1
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except _TRANSIENT as e:
            if attempt == attempts:
                raise StoreUnavailable(f"{what}: database unreachable after {attempts} attempts: {e}") from e
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        except asyncpg.InsufficientPrivilegeError as e:
            raise AppendForbidden(f"{what}: {e}") from e
        except asyncpg.PostgresError as e:
            raise EventStoreError(f"{what}: {type(e).__name__}: {e}") from e
    raise AssertionError("unreachable")


def _migration_files(timescale: bool) -> list[tuple[str, str]]:
    """(name, SQL) in order; ``NNNN_x.timescaledb.sql`` / ``NNNN_x.native.sql`` are
    alternatives of one migration ``NNNN_x``, chosen by the extension's presence."""
    chosen: dict[str, str] = {}
    for f in resources.files("event_store.migrations").iterdir():
        if not f.name.endswith(".sql"):
            continue
        parts = f.name[: -len(".sql")].split(".")
        name, variant = parts[0], (parts[1] if len(parts) > 1 else "")
        if variant not in ("", "native", "timescaledb"):
            raise MigrationError(f"migration {f.name}: unknown variant {variant!r}")
        if variant == ("native" if timescale else "timescaledb"):
            continue
        chosen[name] = f.read_text()
    return sorted(chosen.items())


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations in one transaction; return the names applied."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, flavour text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await conn.fetch("SELECT name, flavour FROM schema_migrations")
        done = {r["name"] for r in rows}
        flavours = {r["flavour"] for r in rows if r["flavour"] != "any"}
        if flavours:
            timescale = "timescaledb" in flavours
        else:
            timescale = bool(await conn.fetchval(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"))
        applied = []
        for name, sql in _migration_files(timescale):
            if name in done:
                continue
            try:
                await conn.execute(sql)
            except asyncpg.PostgresError as e:
                raise MigrationError(f"migration {name} failed: {e}") from e
            await conn.execute("INSERT INTO schema_migrations (name, flavour) VALUES ($1, $2)",
                               name, "timescaledb" if timescale else "native")
            applied.append(name)
        # Every start (worker, gateway, `vigil db migrate`) keeps three months of
        # partitions ahead; the default partition catches anything beyond them.
        await conn.execute("SELECT vigil_ensure_partitions(3)")
        return applied


class PostgresRecorder(EventRecorder):
    """Create with `connect()`; call `migrate()` once per database."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 5, attempts: int = 20, role: str | None = None
    ) -> PostgresRecorder:
        """Open a pool, retrying while the server is unreachable (it may be starting).
        ``role``: ``SET ROLE`` for every connection (e.g. ``vigil_app``)."""
        # Custom plans: a cached generic plan for "event_id = ANY($1)" scans the whole
        # event_ids table (it is planned once, when the table was tiny), under the lock.
        settings = {"plan_cache_mode": "force_custom_plan"} | ({"role": role} if role else {})

        async def open_pool() -> asyncpg.Pool:
            return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection,
                                             server_settings=settings)

        return cls(await _retrying("connect", open_pool, attempts), dsn)

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> list[str]:
        async with self._pool.acquire() as conn:
            return await migrate(conn)

    async def append_batch(self, requests: Sequence[AppendRequest]) -> dict[uuid.UUID, int]:
        if not requests:
            return {}
        ids = list({e.event_id for r in requests for e in r.events})
        stream_ids = list({r.stream_id for r in requests})
        now = datetime.now(UTC)
        prepared = prepare(requests, now)  # encoding and leaf hashes: outside the lock

        async def attempt() -> dict[uuid.UUID, int]:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(_LOCK_AND_LOOK, ids, stream_ids)
                stored = {uuid.UUID(i): (s, p) for i, s, p in row["stored"]}
                done = sequence(requests, prepared, now, LogHead(row["position"], bytes(row["chain_hash"])),
                                row["versions"], stored)
                if done.new:
                    n = done.new
                    await conn.execute(
                        _INSERT,
                        [r.position for r in n], [r.event.event_id for r in n], [r.event.stream_id for r in n],
                        [r.stream_version for r in n], [r.event.event_type for r in n],
                        [r.event.schema_version for r in n], [r.event.occurred_at for r in n],
                        [r.payload_json for r in n], [r.metadata_json for r in n], [r.chain_hash for r in n], now,
                        list(done.streams), list(done.streams.values()),
                        done.head.position, done.head.chain_hash,
                    )
                return done.positions

        return await _retrying("append", attempt)

    async def read_stream(self, stream_id: str, from_version: int = 1, limit: int | None = None) -> list[RecordedEvent]:
        async def read() -> list[RecordedEvent]:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    _SELECT + "WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3",
                    stream_id, from_version, limit)
            return [_row_to_event(r) for r in rows]

        return await _retrying("read_stream", read)

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        async def read() -> list[RecordedEvent]:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(_SELECT + "WHERE position > $1 ORDER BY position LIMIT $2", after, limit)
            return [_row_to_event(r) for r in rows]

        return await _retrying("read_all", read)

    async def read_stored(self, after: int = 0, limit: int = 10_000) -> list[StoredRow]:
        async def read() -> list[StoredRow]:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(_SELECT_STORED, after, limit)
            return [StoredRow._make(r) for r in rows]

        return await _retrying("read_stored", read)

    async def head(self) -> LogHead:
        async def read() -> LogHead:
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow("SELECT position, chain_hash FROM log_head")
            return LogHead(row["position"], bytes(row["chain_hash"]))

        return await _retrying("head", read)

    async def subscribe(self, after: int = 0, poll_interval: float = 1.0) -> AsyncGenerator[RecordedEvent, None]:
        """Catch up from the table, then follow NOTIFY (with a slow poll as a safety net)."""
        wake = asyncio.Event()
        conn: asyncpg.Connection = await _retrying("subscribe", lambda: asyncpg.connect(self._dsn))

        def on_notify(*_: Any) -> None:
            wake.set()

        await conn.add_listener(NOTIFY_CHANNEL, on_notify)
        try:
            position = after
            while True:
                wake.clear()
                batch = await self.read_all(position, 1000)
                for event in batch:
                    position = event.position
                    yield event
                if len(batch) < 1000:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), poll_interval)
        finally:
            # Closing a broken connection must not mask the error that ended the loop.
            with contextlib.suppress(Exception):
                await conn.close()
