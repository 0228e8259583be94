"""`vigil audit replay` and `vigil db rebuild-projections` as an auditor runs them."""

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
from tests.conftest import REPO

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def _vigil(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ) | {"VIGIL_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "vigil", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _fill(database_url: str) -> None:
    async def fill() -> None:
        rec = await PostgresRecorder.connect(database_url)
        await rec.migrate()
        for minute, hr in enumerate([80, 150, 100]):
            at = T0 + timedelta(minutes=minute)
            for pid in ("p1", "p2"):
                events = [NewEvent(uuid.uuid4(), f"patient-{pid}", "VitalsObserved", at, {"patient_id": pid, "hr": hr})]
                if pid == "p1" and hr == 150:
                    events.append(NewEvent(uuid.uuid4(), "patient-p1", "AlertRaised", at, {
                        "alert_id": "a1", "patient_id": "p1", "priority": "high", "condition": "hr_high",
                        "value": 150, "limit": 130, "message": "Heart rate 150 bpm above limit 130"}))
                await rec.append(f"patient-{pid}", events)
        await rec.close()

    asyncio.run(fill())


def test_replay_prints_one_patients_window_and_audits_the_read(database_url: str) -> None:
    _fill(database_url)
    done = _vigil(database_url, "audit", "replay", "--patient", "p1", "--from", "2026-11-26T08:01:00+00:00",
                  "--actor", "auditor-anna")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "3 events"
    assert "VitalsObserved" in lines[0] and "hr=150" in lines[0]
    assert "AlertRaised" in lines[1] and "HIGH" in lines[1]
    assert all("patient-p1" in line for line in lines[:-1])
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT stream_id, payload FROM events WHERE event_type = 'RecordAccessed'").fetchall()
    assert len(rows) == 1
    stream, payload = rows[0]
    assert stream == "access-auditor-anna"
    assert payload["subject"] == "patient-p1" and payload["events"] == 3 and payload["actor"] == "auditor-anna"
    assert _vigil(database_url, "audit", "verify").returncode == 0


def test_bad_replay_arguments_are_one_line_errors(database_url: str) -> None:
    done = _vigil(database_url, "audit", "replay", "--patient", "p1", "--from", "yesterday")
    assert done.returncode == 2 and "not an ISO 8601 time" in done.stderr


def test_rebuild_projections(database_url: str) -> None:
    _fill(database_url)
    done = _vigil(database_url, "db", "rebuild-projections")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "projections rebuilt up to position 7"
    with psycopg.connect(database_url) as conn:
        statuses = dict(conn.execute("SELECT patient_id, open_alerts FROM patient_status").fetchall())
        alerts = conn.execute("SELECT alert_id, patient_id FROM open_alerts").fetchall()
    assert statuses == {"p1": 1, "p2": 0}
    assert alerts == [("a1", "p1")]
