"""Ward-status read models derived from the log: ``patient_status`` and ``open_alerts``.

Two layers, as in the rest of event_store. `project()` is pure: given a page of
events and the current rows they touch, it returns the rows to write. The
`PostgresProjector` does the I/O: it reads pages after its checkpoint, loads the
touched rows, and writes the new rows *and* the new checkpoint in one transaction
(STYLE practice 7), so a crash at any point leaves rows and checkpoint consistent,
and applying a page again changes nothing.

Rules (tables in ``event_store/migrations/0005_projections.sql``):

- ``VitalsObserved``: the patient's ``last_vitals`` (payload without ``patient_id``)
  and ``last_observed_at`` become this observation's, unless the row already holds
  a later ``occurred_at`` (a late, older reading does not hide a newer one).
- ``AlertRaised``: inserts an open alert and adds one to ``open_alerts``; raising an
  alert id that is already open changes nothing.
- ``AlertResolved``: deletes the open alert and subtracts one; resolving an alert
  that is not open changes nothing.
- A row's ``updated_position`` is the position of the last event that changed it.
  Other event types, and events whose payload lacks a required field, change no
  rows but the checkpoint still moves past them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import TypeVar

import asyncpg

from event_store.base import EventRecorder
from event_store.events import JsonObject, RecordedEvent
from event_store.exceptions import EventStoreError, StoreUnavailable

__all__ = ["PatientStatus", "OpenAlert", "StatusChanges", "keys_needed", "project", "PostgresProjector",
           "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "ward_status"
"""Key of this projection's row in ``projection_checkpoints``."""

_log = logging.getLogger(__name__)
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PatientStatus:
    patient_id: str
    last_vitals: JsonObject | None
    last_observed_at: datetime | None
    open_alerts: int
    updated_position: int


@dataclass(frozen=True, slots=True)
class OpenAlert:
    alert_id: str
    patient_id: str
    priority: str
    condition: str
    message: str
    value: float | None
    raised_at: datetime
    raised_position: int


@dataclass(frozen=True, slots=True)
class StatusChanges:
    """Rows to write for one page: upsert ``patients``, delete ``resolved`` alert ids,
    then insert ``raised`` (an id may be in both if it was resolved and raised again),
    and move the checkpoint to ``position``. ``skipped``: positions of malformed events."""

    patients: list[PatientStatus]
    raised: list[OpenAlert]
    resolved: list[str]
    position: int
    skipped: list[int]


_PATIENT_COLS = [f.name for f in fields(PatientStatus)]
_ALERT_COLS = [f.name for f in fields(OpenAlert)]
_PATIENT_SELECT = f"SELECT {', '.join(_PATIENT_COLS)} FROM "
_ALERT_SELECT = f"SELECT {', '.join(_ALERT_COLS)} FROM "


def _patient_of(e: RecordedEvent) -> str | None:
    pid = e.payload.get("patient_id")
    if isinstance(pid, str) and pid:
        return pid
    kind, _, rest = e.stream_id.partition("-")
    return rest if kind == "patient" and rest else None


def _alert_id(e: RecordedEvent) -> str | None:
    aid = e.payload.get("alert_id")
    return aid if isinstance(aid, str) and aid else None


def _alert_from(e: RecordedEvent) -> OpenAlert | None:
    p = e.payload
    aid, pid = _alert_id(e), _patient_of(e)
    if aid is None or pid is None or not isinstance(p.get("priority"), str) or not isinstance(p.get("condition"), str):
        return None
    value = p.get("value")
    return OpenAlert(aid, pid, p["priority"], p["condition"], str(p.get("message", "")),
                     float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None,
                     e.occurred_at, e.position)


def keys_needed(events: Sequence[RecordedEvent]) -> tuple[set[str], set[str]]:
    """(patient ids, alert ids) whose current rows `project()` needs for ``events``.
    Also load the patients of the open alerts found, since resolving one changes them."""
    alerts = {a for e in events if e.event_type in ("AlertRaised", "AlertResolved") and (a := _alert_id(e))}
    patients = {p for e in events if e.event_type in ("VitalsObserved", "AlertRaised") and (p := _patient_of(e))}
    return patients, alerts


def project(
    events: Sequence[RecordedEvent], patients: Mapping[str, PatientStatus], alerts: Mapping[str, OpenAlert]
) -> StatusChanges:
    """Apply ``events`` (non-empty, in position order) to the current rows. Pure.

    ``patients`` and ``alerts`` must hold every existing row named by `keys_needed()`
    (absent = no such row); other rows may be present and are ignored.
    """
    if not events:
        raise ValueError("project() needs at least one event")
    rows = dict(patients)
    open_ = dict(alerts)
    touched: set[str] = set()
    raised: set[str] = set()
    resolved: set[str] = set()
    skipped: list[int] = []

    def status(pid: str, position: int) -> PatientStatus:
        return rows.get(pid) or PatientStatus(pid, None, None, 0, position)

    for e in events:
        if e.event_type == "VitalsObserved":
            pid = _patient_of(e)
            if pid is None:
                skipped.append(e.position)
                continue
            cur = status(pid, e.position)
            if cur.last_observed_at is not None and e.occurred_at < cur.last_observed_at:
                continue
            vitals = {k: v for k, v in e.payload.items() if k != "patient_id"}
            rows[pid] = replace(cur, last_vitals=vitals, last_observed_at=e.occurred_at, updated_position=e.position)
            touched.add(pid)
        elif e.event_type == "AlertRaised":
            alert = _alert_from(e)
            if alert is None:
                skipped.append(e.position)
                continue
            if alert.alert_id in open_:
                continue
            open_[alert.alert_id] = alert
            raised.add(alert.alert_id)
            cur = status(alert.patient_id, e.position)
            rows[alert.patient_id] = replace(cur, open_alerts=cur.open_alerts + 1, updated_position=e.position)
            touched.add(alert.patient_id)
        elif e.event_type == "AlertResolved":
            aid = _alert_id(e)
            if aid is None:
                skipped.append(e.position)
                continue
            gone = open_.pop(aid, None)
            if gone is None:
                continue
            if aid in raised:
                raised.discard(aid)
            else:
                resolved.add(aid)
            cur = status(gone.patient_id, e.position)
            rows[gone.patient_id] = replace(cur, open_alerts=max(cur.open_alerts - 1, 0), updated_position=e.position)
            touched.add(gone.patient_id)
    return StatusChanges(
        patients=[rows[p] for p in sorted(touched)], raised=[open_[a] for a in sorted(raised)],
        resolved=sorted(resolved), position=events[-1].position, skipped=skipped,
    )


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class PostgresProjector:
    """Maintains the ward-status tables in ``schema`` from ``recorder``'s log.

    The migration creates the tables in ``public``; for another schema (e.g. a
    rebuild to compare with the live one, or to swap in without downtime)
    `create_tables()` copies their definitions there. Several projectors on one
    schema are safe: each page transaction locks the checkpoint row first, and
    events at or below the checkpoint are dropped from the page.
    """

    def __init__(self, pool: asyncpg.Pool, recorder: EventRecorder, *, schema: str = "public",
                 page_size: int = 500, owns_pool: bool = False) -> None:
        if not _SCHEMA.match(schema):
            raise ValueError(f"schema: {schema!r} is not a lower-case SQL identifier")
        if page_size < 1:
            raise ValueError(f"page_size: {page_size} is not positive")
        self._pool, self._recorder, self._schema = pool, recorder, schema
        self._page_size, self._owns_pool = page_size, owns_pool
        s = f'"{schema}"'
        self._t = {name: f"{s}.{name}" for name in ("patient_status", "open_alerts", "projection_checkpoints")}

    @classmethod
    async def connect(cls, dsn: str, recorder: EventRecorder, *, schema: str = "public", page_size: int = 500,
                      role: str | None = None) -> PostgresProjector:
        """Open a pool of its own (closed by `close()`). ``role``: ``SET ROLE`` per connection."""
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, init=_init_connection,
                                             server_settings={"role": role} if role else None)
        except (TimeoutError, OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as e:
            raise StoreUnavailable(f"projector connect: {e}") from e
        return cls(pool, recorder, schema=schema, page_size=page_size, owns_pool=True)

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()

    async def _transaction(self, what: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return await work(conn)
        except (TimeoutError, OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError) as e:
            raise StoreUnavailable(f"projection {what}: database unreachable: {e}") from e
        except asyncpg.PostgresError as e:
            raise EventStoreError(f"projection {what}: {type(e).__name__}: {e}") from e

    async def create_tables(self) -> None:
        """Create ``schema`` and copies of the public tables in it, if missing."""
        async def work(conn: asyncpg.Connection) -> None:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
            for name, table in self._t.items():
                await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (LIKE public.{name} INCLUDING ALL)")
        await self._transaction("create_tables", work)

    async def _lock_checkpoint(self, conn: asyncpg.Connection) -> int:
        # An upsert that rewrites the row both creates it on first use and takes its
        # row lock, so concurrent page transactions on this schema run one at a time.
        cp = self._t["projection_checkpoints"]
        return int(await conn.fetchval(
            f"INSERT INTO {cp} (name, position) VALUES ($1, 0)"
            f" ON CONFLICT (name) DO UPDATE SET position = {cp}.position RETURNING position", CHECKPOINT_NAME))

    async def position(self) -> int:
        """The last log position applied (0 before the first page)."""
        async with self._pool.acquire() as conn:
            value = await conn.fetchval(f"SELECT position FROM {self._t['projection_checkpoints']} WHERE name = $1",
                                        CHECKPOINT_NAME)
        return int(value or 0)

    async def apply_page(self, events: Sequence[RecordedEvent]) -> int:
        """Apply ``events`` (in position order) in one transaction; return the checkpoint.

        Events at or below the checkpoint are ignored, so a page applied twice counts
        once. A page that does not continue from the checkpoint (it starts beyond
        checkpoint + 1) is not applied: re-read from the returned checkpoint.
        """
        async def work(conn: asyncpg.Connection) -> int:
            checkpoint = await self._lock_checkpoint(conn)
            fresh = [e for e in events if e.position > checkpoint]
            if not fresh or fresh[0].position != checkpoint + 1:
                return checkpoint
            patient_ids, alert_ids = keys_needed(fresh)
            alerts = {r["alert_id"]: OpenAlert(**dict(r)) for r in await conn.fetch(
                _ALERT_SELECT + f"{self._t['open_alerts']} WHERE alert_id = ANY($1::text[])", list(alert_ids))}
            patient_ids |= {a.patient_id for a in alerts.values()}
            patients = {r["patient_id"]: PatientStatus(**dict(r)) for r in await conn.fetch(
                _PATIENT_SELECT + f"{self._t['patient_status']} WHERE patient_id = ANY($1::text[])", list(patient_ids))}
            changes = project(fresh, patients, alerts)
            await self._write(conn, changes)
            if changes.skipped:
                _log.warning("projection %s: skipped malformed events at positions %s", self._schema, changes.skipped)
            return changes.position

        return await self._transaction("apply_page", work)

    async def _write(self, conn: asyncpg.Connection, c: StatusChanges) -> None:
        t = self._t
        if c.resolved:
            await conn.execute(f"DELETE FROM {t['open_alerts']} WHERE alert_id = ANY($1::text[])", c.resolved)
        if c.raised:
            await conn.execute(
                f"INSERT INTO {t['open_alerts']} (alert_id, patient_id, priority, condition, message, value,"
                " raised_at, raised_position) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
                " $5::text[], $6::float8[], $7::timestamptz[], $8::bigint[])",
                *([getattr(a, f) for a in c.raised] for f in _ALERT_COLS))
        if c.patients:
            await conn.execute(
                f"INSERT INTO {t['patient_status']} (patient_id, last_vitals, last_observed_at, open_alerts,"
                " updated_position) SELECT * FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[], $4::int[],"
                " $5::bigint[]) ON CONFLICT (patient_id) DO UPDATE SET last_vitals = EXCLUDED.last_vitals,"
                " last_observed_at = EXCLUDED.last_observed_at, open_alerts = EXCLUDED.open_alerts,"
                " updated_position = EXCLUDED.updated_position",
                *([getattr(p, f) for p in c.patients] for f in _PATIENT_COLS))
        await conn.execute(f"UPDATE {t['projection_checkpoints']} SET position = $2 WHERE name = $1",
                           CHECKPOINT_NAME, c.position)

    async def catch_up(self) -> int:
        """Apply every event stored now, page by page; return the checkpoint reached."""
        checkpoint = await self.position()
        # The next page is read while this one is applied.
        async with contextlib.aclosing(self._recorder.read_all_pages(checkpoint, self._page_size)) as pages:
            async for page in pages:
                reached = await self.apply_page(page)
                if reached == checkpoint:
                    raise EventStoreError(f"projection {self._schema}: the log has a gap after position {checkpoint}")
                checkpoint = reached
        return checkpoint

    async def run_until(self, position: int, poll_interval: float = 0.1) -> int:
        """Catch up, polling, until the checkpoint reaches ``position``; return it.
        Bound the wait with ``asyncio.timeout``."""
        while (reached := await self.catch_up()) < position:
            await asyncio.sleep(poll_interval)
        return reached

    async def run(self, poll_interval: float = 0.5) -> None:
        """Follow the log until cancelled. An unreachable database is waited out (logged);
        any other error propagates, so the task that runs this fails visibly."""
        while True:
            try:
                await self.catch_up()
            except StoreUnavailable as e:
                _log.warning("projection %s: %s; retrying in %.1f s", self._schema, e, poll_interval)
            await asyncio.sleep(poll_interval)

    async def rebuild(self) -> int:
        """Empty this schema's tables and checkpoint in one transaction, then replay the
        whole log. Readers of this schema see partial state until it returns; to avoid
        that, rebuild into another schema and compare or swap."""
        async def work(conn: asyncpg.Connection) -> None:
            await self._lock_checkpoint(conn)
            await conn.execute(f"DELETE FROM {self._t['open_alerts']}")
            await conn.execute(f"DELETE FROM {self._t['patient_status']}")
            await conn.execute(f"UPDATE {self._t['projection_checkpoints']} SET position = 0 WHERE name = $1",
                               CHECKPOINT_NAME)
        await self._transaction("rebuild", work)
        return await self.catch_up()

    async def statuses(self) -> list[PatientStatus]:
        """Every patient's row, by patient id."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_PATIENT_SELECT + f"{self._t['patient_status']} ORDER BY patient_id")
        return [PatientStatus(**dict(r)) for r in rows]

    async def alerts(self, patient_id: str | None = None) -> list[OpenAlert]:
        """Open alerts (of one patient, if given), oldest first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_ALERT_SELECT + f"{self._t['open_alerts']}"
                                    " WHERE $1::text IS NULL OR patient_id = $1 ORDER BY raised_position", patient_id)
        return [OpenAlert(**dict(r)) for r in rows]
