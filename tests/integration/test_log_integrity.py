"""Tamper-evidence and immutability of the PostgreSQL log, checked the way an attacker
and an auditor would: raw SQL as a superuser that bypasses triggers, then
`vigil audit verify` as a real command. On both schemas (native partitions and
TimescaleDB hypertables) unless a test is about one of them; TimescaleDB's chunks
have their own tests in `test_timescaledb`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from event_store.events import NewEvent
from event_store.exceptions import AppendForbidden
from event_store.postgres import PostgresRecorder
from tests.conftest import REPO

pytestmark = pytest.mark.integration

EVENTS = 20


def _fill(database_url: str) -> None:
    async def fill() -> None:
        rec = await PostgresRecorder.connect(database_url)
        await rec.migrate()
        for i in range(EVENTS):
            stream = f"patient-p{i % 3}"
            await rec.append(stream, [NewEvent(uuid.uuid4(), stream, "VitalsObserved", datetime.now(UTC),
                                               {"patient_id": f"p{i % 3}", "hr": 60 + i})])
        await rec.close()

    asyncio.run(fill())


def _audit_verify(database_url: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ) | {"VIGIL_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "vigil", "audit", "verify"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _as_superuser_bypassing_triggers(database_url: str, *statements: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # what a rogue superuser would do
        for sql in statements:
            conn.execute(sql)  # type: ignore[arg-type]


def test_intact_log_verifies(store_url: str) -> None:
    _fill(store_url)
    done = _audit_verify(store_url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"OK: {EVENTS} events, positions 1-{EVENTS}, head ")


@pytest.mark.parametrize(
    ("tampering", "statements", "first_bad"),
    [
        ("altered payload", ["UPDATE events SET payload = jsonb_set(payload::jsonb, '{hr}', '999')::json WHERE position = 7"], 7),
        ("reformatted payload", ["UPDATE events SET payload = (payload::jsonb)::json WHERE position = 8"], 8),
        ("renumbered stream version", ["UPDATE events SET stream_version = 9 WHERE position = 6"], 6),
        ("altered time", ["UPDATE events SET occurred_at = occurred_at - interval '1 hour' WHERE position = 12"], 12),
        ("removed event", ["DELETE FROM events WHERE position = 5"], 5),
        ("reordered events", [
            "UPDATE events SET position = -3 WHERE position = 3",
            "UPDATE events SET position = 3 WHERE position = 4",
            "UPDATE events SET position = 4 WHERE position = -3",
        ], 3),
        ("inserted event", [
            "INSERT INTO events SELECT position, gen_random_uuid(), stream_id, stream_version, event_type,"
            " schema_version, occurred_at, recorded_at + interval '1 microsecond', payload, metadata, chain_hash"
            " FROM events WHERE position = 9",
        ], 9),
        ("event spliced in", [
            "UPDATE events SET position = position + 1000 WHERE position >= 9",
            "UPDATE events SET position = position - 999 WHERE position >= 1000",
            "INSERT INTO events SELECT 9, gen_random_uuid(), stream_id, stream_version, event_type, schema_version,"
            " occurred_at, recorded_at, '{\"hr\": 200}', metadata, chain_hash FROM events WHERE position = 8",
        ], 9),
        ("cut-off tail", ["DELETE FROM events WHERE position >= 19"], 19),
        ("forged hash", ["UPDATE events SET chain_hash = sha256('x') WHERE position = 15"], 15),
    ],
)
def test_tampering_is_found_and_named(store_url: str, tampering: str, statements: list[str], first_bad: int) -> None:
    _fill(store_url)
    _as_superuser_bypassing_triggers(store_url, *statements)
    done = _audit_verify(store_url)
    assert done.returncode == 1, f"{tampering} not detected: {done.stdout}{done.stderr}"
    assert done.stdout.strip().startswith(f"TAMPERED at position {first_bad}:"), done.stdout


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET payload = '{}' WHERE position = 1",
        "DELETE FROM events WHERE position = 1",
        "TRUNCATE events",
        "TRUNCATE waveforms",
        "UPDATE event_ids SET position = 99",
        "DELETE FROM log_head",
    ],
)
def test_triggers_refuse_changes_even_for_the_owner(store_url: str, sql: str) -> None:
    _fill(store_url)
    with psycopg.connect(store_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute(sql)  # type: ignore[arg-type]


def test_native_partitions_refuse_truncate(database_url: str) -> None:
    _fill(database_url)
    with psycopg.connect(database_url) as conn:
        (partition,) = conn.execute(
            "SELECT relid::text FROM pg_partition_tree('events') WHERE isleaf AND relid::text <> 'events_default'"
            " ORDER BY 1 LIMIT 1").fetchone() or ("",)
        assert partition.startswith("events_2")
        for table in (partition, "events_default", "waveforms_default"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(f"TRUNCATE {table}")  # type: ignore[arg-type]
            conn.rollback()


def test_the_application_role_can_append_but_never_rewrite(store_url: str) -> None:
    _fill(store_url)

    async def as_app() -> None:
        rec = await PostgresRecorder.connect(store_url, role="vigil_app")
        try:
            stream = "patient-app"
            assert await rec.append(stream, [NewEvent(uuid.uuid4(), stream, "VitalsObserved", datetime.now(UTC),
                                                      {"hr": 80})]) == [EVENTS + 1]
            assert (await rec.verify()).ok
        finally:
            await rec.close()

    asyncio.run(as_app())
    with psycopg.connect(store_url) as conn:
        conn.execute("SET ROLE vigil_app")
        for sql in ("UPDATE events SET payload = '{}'", "DELETE FROM events", "TRUNCATE events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(sql)  # type: ignore[arg-type]
            conn.rollback()
            conn.execute("SET ROLE vigil_app")


def test_driver_refusals_are_translated(database_url: str) -> None:
    _fill(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("REVOKE INSERT ON events FROM vigil_app")

    async def append_as_app() -> None:
        rec = await PostgresRecorder.connect(database_url, role="vigil_app")
        try:
            with pytest.raises(AppendForbidden, match="permission denied"):
                await rec.append("patient-app", [NewEvent(uuid.uuid4(), "patient-app", "VitalsObserved",
                                                          datetime.now(UTC), {"hr": 80})])
            assert await rec.last_position() == EVENTS  # nothing half-written
        finally:
            await rec.close()

    asyncio.run(append_as_app())
