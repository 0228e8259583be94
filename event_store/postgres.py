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
time. What the lock costs is kept small:

- Idempotency is checked optimistically. Under the lock the writer reads only the
  head and the versions of its streams, assumes its event ids are new, and inserts
  them into ``event_ids``; if its primary key refuses an id that is already stored,
  the transaction rolls back and the append runs again with a lookup of every id
  (`_LOOK_UP`). Re-appends are rare (a retry after a crash), so the common case
  saves an index probe per event, under the lock. A ``ConcurrencyConflict``
  triggers the same lookup before it is raised, since events already stored do
  not count against the expected version.
- A small batch (fewer than `_COPY_FROM` events) is encoded and leaf-hashed before
  the lock and written with one multi-table statement: the lock is held for three
  round trips (lock + read, insert, commit).
- A larger batch is written with two binary ``COPY`` commands, which cost the server
  about a third less than ``unnest`` arrays, and the client far less. Its events are
  encoded and leaf-hashed under the lock, but while the server is busy taking in
  rows (`_copy`), so the Python work overlaps the database's instead of adding to it.

The NOTIFY is sent in the same transaction and so delivered only after commit
(https://www.postgresql.org/docs/current/sql-notify.html).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from itertools import starmap
from operator import itemgetter
from typing import Any, TypeVar

import asyncpg

from event_store.base import (
    Assignment, EventRecorder, LogHead, NewRow, Prepared, assign, chain, prefetched, prepare,
)
from event_store.events import Appended, AppendRequest, NewEvent, RecordedEvent
from event_store.exceptions import (
    AppendForbidden, ConcurrencyConflict, EventStoreError, MigrationError, StoreUnavailable,
)
from event_store.integrity import StoredFields, StoredRow, micros

__all__ = ["PostgresRecorder", "NOTIFY_CHANNEL", "migrate"]

NOTIFY_CHANNEL = "vigil_events"
_MIGRATE_LOCK = 0x5649_4D47  # advisory lock: one migrator at a time

# Errors worth retrying: the connection broke or the server is starting/overloaded.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError, asyncpg.InterfaceError,
)
T = TypeVar("T")

_COPY_FROM = 128
"""Batches of at least this many events are written with COPY (see the module docstring)."""
_SLICE = 256
"""Events encoded between two yields to the event loop while the ``event_ids`` COPY runs."""
_SUBSCRIBE_PAGE = 1000
"""Events per read while a subscriber catches up (the next page is fetched meanwhile)."""

_LOCK = "SELECT position, chain_hash FROM log_head FOR UPDATE"

# A separate statement, on purpose: under READ COMMITTED a statement reads with the
# snapshot taken when it started, so versions read in the same statement that waited
# for the lock could predate the writer that held it. Two writers expecting a new
# stream (version 0) would then both pass the check. Read after the lock, they see
# every append that committed before it.
_VERSIONS = """
SELECT coalesce(json_object_agg(stream_id, version), '{}')::text FROM streams WHERE stream_id = ANY($1::text[])
"""

_LOOK_UP = "SELECT event_id, stream_id, position FROM event_ids WHERE event_id = ANY($1::uuid[])"

_EVENT_COLUMNS = ["position", "event_id", "stream_id", "stream_version", "event_type", "schema_version",
                  "occurred_at", "recorded_at", "payload", "metadata", "chain_hash"]
_ID_COLUMNS = ["event_id", "stream_id", "position"]

_MOVE_HEAD = f"""
st AS (
    INSERT INTO streams (stream_id, version) SELECT * FROM unnest($1::text[], $2::int[])
    ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version
)
UPDATE log_head SET position = $3, chain_hash = $4
RETURNING pg_notify('{NOTIFY_CHANNEL}', position::text)
"""

_FINISH = "WITH " + _MOVE_HEAD

_INSERT = """
WITH rows AS (
    SELECT * FROM unnest($5::bigint[], $6::uuid[], $7::text[], $8::int[], $9::text[], $10::int[],
                         $11::timestamptz[], $12::timestamptz[], $13::json[], $14::json[], $15::bytea[])
           AS r(position, event_id, stream_id, stream_version, event_type, schema_version,
                occurred_at, recorded_at, payload, metadata, chain_hash)
), ids AS (
    INSERT INTO event_ids (event_id, stream_id, position) SELECT event_id, stream_id, position FROM rows
), ev AS (
    INSERT INTO events (position, event_id, stream_id, stream_version, event_type, schema_version,
                        occurred_at, recorded_at, payload, metadata, chain_hash)
    SELECT * FROM rows
), """ + _MOVE_HEAD

# Times in their binary form (timestamptz_send: 8 bytes, see `StoredTime`) and JSON
# as text: `RecordedEvent.stored` converts them only when read, so neither the server
# (numeric arithmetic) nor asyncpg (a datetime, a dict) does per-row work for them.
_SELECT = """
SELECT position, event_id, stream_id, stream_version, event_type, schema_version,
       timestamptz_send(occurred_at), timestamptz_send(recorded_at), payload::text, metadata::text, chain_hash
FROM events
"""

# Payload and metadata exactly as stored (json keeps the text), for verification.
_SELECT_STORED = """
SELECT position, event_id::text, stream_id, stream_version, event_type, schema_version,
       (extract(epoch FROM occurred_at) * 1000000)::bigint,
       (extract(epoch FROM recorded_at) * 1000000)::bigint,
       payload::text, metadata::text, chain_hash
FROM events WHERE position > $1 ORDER BY position LIMIT $2
"""


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PG_EPOCH_US = 946_684_800_000_000
"""2000-01-01 UTC, PostgreSQL's time origin, in Unix microseconds."""
_INFINITY = (1 << 63) - 1


def _encode_time(value: int | datetime) -> tuple[int]:
    """``timestamptz`` as PostgreSQL's binary form counts it: microseconds since 2000.
    Rows of an append carry Unix microseconds (`NewRow`), so COPY writes them without
    building datetimes; asyncpg's own encoder spent about 0.6 us on each datetime, a
    sixth of an appended event's client time. Datetimes (query parameters) still work."""
    if isinstance(value, datetime):
        value = micros(value)
    return (value - _PG_EPOCH_US,)


def _decode_time(value: tuple[int]) -> datetime:
    (us,) = value
    if us in (_INFINITY, -_INFINITY - 1):
        return datetime.max.replace(tzinfo=UTC) if us > 0 else datetime.min.replace(tzinfo=UTC)
    return _UNIX_EPOCH + timedelta(microseconds=us + _PG_EPOCH_US)


async def _set_up_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("timestamptz", schema="pg_catalog", encoder=_encode_time, decoder=_decode_time,
                              format="tuple")


async def _keep_session(_: asyncpg.Connection) -> None:
    """Pool ``reset``: nothing to undo. asyncpg's default runs a reset query (unlock
    advisory locks, close cursors, UNLISTEN, RESET ALL) on every release, a round trip
    per append. This pool's connections never hold session state: every use is one
    transaction (asyncpg still rolls back one left open), advisory locks are
    transaction-scoped, LISTEN has a connection of its own (`subscribe`), and
    settings come as startup parameters."""


class _AlreadyStored(Exception):
    """An event id of the batch is in the log already: append again, looking ids up."""


async def _stored(conn: asyncpg.Connection, events: Sequence[NewEvent]) -> dict[uuid.UUID, tuple[str, int]]:
    """``event_id -> (stream_id, position)`` of the given events already in the log."""
    rows = await conn.fetch(_LOOK_UP, [e.event_id for e in events])
    return {r[0]: (r[1], r[2]) for r in rows}  # asyncpg's UUID is a uuid.UUID


async def _insert(conn: asyncpg.Connection, plan: Assignment, prepared: Sequence[Prepared], now: datetime,
                  previous: bytes) -> None:
    """Write a small batch in one statement (``prepared``: for ``plan.events``, in order)."""
    rows, head_hash = chain(plan, prepared, now, previous)
    await conn.execute(_INSERT, list(plan.streams), list(plan.streams.values()), plan.position, head_hash,
                       *map(list, zip(*rows, strict=True)))


async def _settled(task: asyncio.Task[Any] | asyncio.Future[Any]) -> None:
    """Wait until ``task`` is done without raising its error (retrieved, so asyncio
    does not log it): for cleanup paths that already propagate another error."""
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()


class _Chainer:
    """Encodes, hashes and chains the new events of ``plan``, one slice at a time,
    remembering the last chain hash."""

    def __init__(self, plan: Assignment, now: datetime, previous: bytes) -> None:
        self._plan, self._now, self._done = plan, now, 0
        self.head_hash = previous

    @property
    def finished(self) -> bool:
        return self._done == len(self._plan.events)

    def next_slice(self) -> list[NewRow]:
        start, self._done = self._done, min(self._done + _SLICE, len(self._plan.events))
        prepared = prepare(self._plan.events[start:self._done], self._now)
        rows, self.head_hash = chain(self._plan, prepared, self._now, self.head_hash, start)
        return rows

    def rest(self, ready: list[NewRow]) -> Iterator[NewRow]:
        """``ready``, then the rows of the slices not encoded yet."""
        yield from ready
        while not self.finished:
            yield from self.next_slice()


async def _copy(conn: asyncpg.Connection, plan: Assignment, now: datetime, previous: bytes) -> None:
    """Write a large batch with two COPYs, keeping the server busy while Python works.

    While the server takes in the ``event_ids`` rows, encode, hash and chain slices of
    events (yielding to the event loop in between, so the COPY task can send its data
    and see it finish); then COPY the events, encoding whatever is left as asyncpg
    asks for rows, so the server takes in one chunk while the next is encoded. The
    ``event_ids`` COPY task is always awaited: the connection is never left mid-COPY."""
    chainer = _Chainer(plan, now, previous)
    # A generator: each row is dropped as soon as asyncpg has encoded it.
    ids = ((e.event_id, e.stream_id, position) for position, e in enumerate(plan.events, plan.first))
    copying = asyncio.ensure_future(conn.copy_records_to_table("event_ids", records=ids, columns=_ID_COLUMNS))
    ready: list[NewRow] = []
    try:
        while not chainer.finished:
            await asyncio.sleep(0)
            if copying.done():
                break
            ready += chainer.next_slice()
    finally:
        await _settled(copying)
    await copying  # raises the COPY's error, if any
    await conn.copy_records_to_table("events", records=chainer.rest(ready), columns=_EVENT_COLUMNS)
    await conn.execute(_FINISH, list(plan.streams), list(plan.streams.values()), plan.position, chainer.head_hash)


async def _retrying(what: str, call: Callable[[], Awaitable[T]], attempts: int = 5,
                    transient: tuple[type[BaseException], ...] = _TRANSIENT) -> T:
    """Run ``call``; retry only ``transient`` errors, with back-off; translate the rest."""
    delay = 0.1
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except transient as e:
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
            # Installed is not enough: the extension works only where the server
            # preloads it (shared_preload_libraries), as TimescaleDB's images do.
            timescale = bool(await conn.fetchval(
                "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'timescaledb') AND 'timescaledb' = "
                "ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))"))
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
            return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, server_settings=settings,
                                             init=_set_up_connection, reset=_keep_session)

        # A server that has just started may accept connections a moment before its
        # database is created (vigil.services.postgres, container entry points): wait for it too.
        return cls(await _retrying("connect", open_pool, attempts, (*_TRANSIENT, asyncpg.InvalidCatalogNameError)), dsn)

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> list[str]:
        async with self._pool.acquire() as conn:
            return await migrate(conn)

    async def append_batch(self, requests: Sequence[AppendRequest]) -> Appended:
        if not requests:
            return Appended({}, None)
        now = datetime.now(UTC)
        events = [e for r in requests for e in r.events]
        stream_ids = list({r.stream_id for r in requests})
        small = len(events) < _COPY_FROM
        # A small batch is encoded before the lock; a large one while the database is
        # busy taking in its ids (`_copy`).
        prepared = dict(zip((e.event_id for e in events), prepare(events, now), strict=True)) if small else {}

        async def attempt(look_up: bool) -> Appended:
            async with self._pool.acquire() as conn, conn.transaction():
                position, chain_hash = await conn.fetchrow(_LOCK)
                versions_json = await conn.fetchval(_VERSIONS, stream_ids)
                versions: dict[str, int] = json.loads(versions_json)
                stored = await _stored(conn, events) if look_up else {}
                try:
                    plan = assign(requests, position, versions, stored)
                except ConcurrencyConflict:
                    if look_up:
                        raise
                    plan = assign(requests, position, versions, await _stored(conn, events))
                if plan.events:
                    try:
                        if small:
                            await _insert(conn, plan, [prepared[e.event_id] for e in plan.events], now, chain_hash)
                        else:
                            await _copy(conn, plan, now, chain_hash)
                    except asyncpg.UniqueViolationError as e:
                        if e.constraint_name == "event_ids_pkey" and not look_up:
                            raise _AlreadyStored from e
                        raise
                return Appended(plan.positions, plan.first if plan.events else None)

        async def run() -> Appended:
            try:
                return await attempt(look_up=False)
            except _AlreadyStored:
                return await attempt(look_up=True)

        return await _retrying("append", run)

    async def read_stream(self, stream_id: str, from_version: int = 1, limit: int | None = None) -> list[RecordedEvent]:
        async def read() -> list[RecordedEvent]:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    _SELECT + "WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3",
                    stream_id, from_version, limit)
            return list(starmap(RecordedEvent.stored, rows))

        return await _retrying("read_stream", read)

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return list(starmap(RecordedEvent.stored, await self._read_rows(after, limit)))

    async def read_all_pages(self, after: int = 0, page: int = 10_000) -> AsyncGenerator[Sequence[RecordedEvent], None]:
        # Prefetches rows, not events: the next page's query is out before this page's
        # events are built, so the server reads while the client builds.
        async with contextlib.aclosing(prefetched(lambda position: self._read_rows(position, page), after, page,
                                                  itemgetter(0))) as pages:
            async for rows in pages:
                yield list(starmap(RecordedEvent.stored, rows))

    async def _read_rows(self, after: int, limit: int) -> list[asyncpg.Record]:
        async def read() -> list[asyncpg.Record]:
            async with self._pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(
                    _SELECT + "WHERE position > $1 ORDER BY position LIMIT $2", after, limit)
            return rows

        return await _retrying("read_all", read)

    async def read_stored(self, after: int = 0, limit: int = 10_000) -> list[StoredRow]:
        return list(map(StoredRow._make, await self._read_stored_fields(after, limit)))

    async def _read_stored_fields(self, after: int, limit: int) -> Sequence[StoredFields]:
        async def read() -> Sequence[StoredFields]:
            async with self._pool.acquire() as conn:
                rows: Sequence[StoredFields] = await conn.fetch(_SELECT_STORED, after, limit)
            return rows

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

        def fetch(position: int) -> asyncio.Task[list[RecordedEvent]]:
            # Cleared as the read starts: a commit notified after this point makes the
            # wait below return at once, even if this read missed that commit.
            wake.clear()
            return asyncio.create_task(self.read_all(position, _SUBSCRIBE_PAGE))

        pending: asyncio.Task[list[RecordedEvent]] | None = None
        try:  # from here on the connection is closed however the generator ends (even cancelled early)
            await conn.add_listener(NOTIFY_CHANNEL, on_notify)
            pending = fetch(after)
            position = after
            while pending is not None:
                batch = await pending
                # Catching up (a full page): fetch the next page while this one is consumed.
                pending = fetch(batch[-1].position) if len(batch) == _SUBSCRIBE_PAGE else None
                for event in batch:
                    position = event.position
                    yield event
                if pending is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), poll_interval)
                    pending = fetch(position)
        finally:
            if pending is not None:
                pending.cancel()
                await _settled(pending)
            # Closing a broken connection must not mask the error that ended the loop.
            with contextlib.suppress(Exception):
                await conn.close()
