"""The event store's TimescaleDB schema on a real TimescaleDB (the Apache-2 edition
that `scripts/install-timescaledb.sh` builds): hypertables, the per-minute vitals
view, and what guards the chunks, which TimescaleDB makes and removes on its own.

The flavour-neutral behaviour (the recorder contract, both append paths, waveforms,
tamper-evidence, the triggers and the application role) runs on this schema too, in
the tests that take ``store_url`` or run the recorder contract."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from event_store.events import NewEvent
from event_store.postgres import PostgresRecorder
from event_store.waveforms import WaveformChunk, WaveformStore
from tests.conftest import REPO

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 8, 0, 0, tzinfo=UTC)


def _fill(url: str, events: int = 12) -> None:
    """``events`` VitalsObserved of one patient, one every 20 s of device time from T0,
    and two days of ECG chunks (one a day, so the waveforms have two chunks)."""
    async def fill() -> None:
        rec = await PostgresRecorder.connect(url)
        await rec.migrate()
        for i in range(events):
            await rec.append("patient-p1", [NewEvent(uuid.uuid4(), "patient-p1", "VitalsObserved",
                                                     T0 + timedelta(seconds=20 * i), {"hr": 60 + i, "spo2": 97})])
        await rec.close()
        store = await WaveformStore.connect(url)
        try:
            await store.write([WaveformChunk("p1", "II", T0 + timedelta(days=d), 250.0, bytes(500), 0.005, {})
                               for d in (0, 1)])
        finally:
            await store.close()

    asyncio.run(fill())


def _chunks(conn: psycopg.Connection, table: str) -> list[str]:
    return [name for (name,) in conn.execute(
        "SELECT format('%%I.%%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks "
        "WHERE hypertable_name = %s ORDER BY range_start", (table,)).fetchall()]


def test_the_migrations_make_hypertables_and_say_so(timescale_url: str) -> None:
    _fill(timescale_url)
    with psycopg.connect(timescale_url) as conn:
        tables = {name for (name,) in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
        assert tables == {"events", "waveforms"}
        assert {f for (f,) in conn.execute("SELECT DISTINCT flavour FROM schema_migrations")} <= {"timescaledb", "any"}
        assert ("timescaledb",) in conn.execute("SELECT DISTINCT flavour FROM schema_migrations").fetchall()
        assert len(_chunks(conn, "waveforms")) == 2


def test_installed_but_not_preloaded_gives_the_native_schema(database_url: str) -> None:
    """TimescaleDB installed on the machine is not enough (the native server here does
    not preload it): the migrations must not try CREATE EXTENSION and fail."""
    with psycopg.connect(database_url) as conn:
        installed = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    assert installed == (1,), "the test machine should have TimescaleDB installed (scripts/install-timescaledb.sh)"
    _fill(database_url)
    with psycopg.connect(database_url) as conn:
        assert ("native",) in conn.execute("SELECT DISTINCT flavour FROM schema_migrations").fetchall()
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone() == (0,)


def test_vitals_per_minute_without_the_timescale_license_is_the_native_view(timescale_url: str) -> None:
    _fill(timescale_url)
    with psycopg.connect(timescale_url) as conn:
        assert conn.execute("SHOW timescaledb.license").fetchone() == ("apache",)
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'vitals_per_minute'").fetchone() == ("v",)
        rows = conn.execute("SELECT minute, hr, spo2, samples FROM vitals_per_minute ORDER BY minute").fetchall()
    # 12 readings 20 s apart from 08:00:00: three per minute, hr 60..71.
    assert [(m, hr, n) for m, hr, _, n in rows] == [(T0 + timedelta(minutes=k), 61.0 + 3 * k, 3) for k in range(4)]
    assert all(spo2 == 97.0 for _, _, spo2, _ in rows)


@pytest.mark.parametrize("table", ["events", "waveforms"])
def test_chunk_rows_refuse_changes_even_for_the_owner(timescale_url: str, table: str) -> None:
    _fill(timescale_url)
    with psycopg.connect(timescale_url) as conn:
        chunk = _chunks(conn, table)[0]
        column = "event_type = 'x'" if table == "events" else "lead = 'x'"
        for sql in (f"UPDATE {chunk} SET {column}", f"DELETE FROM {chunk}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(sql)  # type: ignore[arg-type]
            conn.rollback()


def test_the_application_role_cannot_remove_chunks(timescale_url: str) -> None:
    _fill(timescale_url)
    with psycopg.connect(timescale_url) as conn:
        chunk = _chunks(conn, "events")[0]
        for sql in (f"TRUNCATE {chunk}", f"DELETE FROM {chunk}",
                    "SELECT drop_chunks('events', older_than => now() + interval '1 day')"):
            conn.execute("SET ROLE vigil_app")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)  # type: ignore[arg-type]
            conn.rollback()
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (12,)


@pytest.mark.parametrize("removal", ["TRUNCATE {chunk}", "SELECT drop_chunks('events', older_than => now() + interval '1 day')"])
def test_a_chunk_the_owner_removes_is_found_by_audit_verify(timescale_url: str, removal: str) -> None:
    """TimescaleDB copies row triggers to its chunks, not TRUNCATE triggers, and
    drop_chunks fires no trigger at all: the owner (not the application role) can
    remove a whole chunk. The hash chain still tells."""
    _fill(timescale_url)
    with psycopg.connect(timescale_url, autocommit=True) as conn:
        conn.execute(removal.format(chunk=_chunks(conn, "events")[0]))  # type: ignore[arg-type]
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
    env = dict(os.environ) | {"VIGIL_DATABASE_URL": timescale_url}
    done = subprocess.run([sys.executable, "-m", "vigil", "audit", "verify"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("TAMPERED"), done.stdout
