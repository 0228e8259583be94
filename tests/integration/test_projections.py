"""Ward-status projections on a real PostgreSQL: live catch-up while writers append,
a rebuild from position 0 that matches the live tables row for row, exact open
alerts, and pages applied twice counted once."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from event_store.events import AppendRequest, NewEvent
from event_store.postgres import PostgresRecorder
from event_store.projections import CHECKPOINT_NAME, OpenAlert, PatientStatus, PostgresProjector

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
HR_LIMIT = 130


@pytest.fixture
def recorder(pg_recorder: PostgresRecorder) -> PostgresRecorder:
    return pg_recorder


def vitals(patient: str, at: datetime, **values: float) -> NewEvent:
    return NewEvent(uuid.uuid4(), f"patient-{patient}", "VitalsObserved", at, {"patient_id": patient, **values})


def raised(patient: str, at: datetime, alert_id: str, hr: float, priority: str = "high") -> NewEvent:
    return NewEvent(uuid.uuid4(), f"patient-{patient}", "AlertRaised", at, {
        "alert_id": alert_id, "patient_id": patient, "priority": priority, "condition": "hr_high",
        "value": hr, "limit": HR_LIMIT, "message": f"Heart rate {hr:g} bpm above limit {HR_LIMIT}"})


def resolved(patient: str, at: datetime, alert_id: str, hr: float) -> NewEvent:
    return NewEvent(uuid.uuid4(), f"patient-{patient}", "AlertResolved", at,
                    {"alert_id": alert_id, "patient_id": patient, "condition": "hr_high", "value": hr})


class Ward:
    """Generates a realistic ward: each patient's heart rate wanders, and alerts are
    raised above the limit and resolved below it with 5 bpm of hysteresis, as the
    vitals pipeline does. Keeps the expected projection alongside."""

    def __init__(self, patients: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.hr = {f"p{i}": 120.0 for i in range(patients)}
        self.active: dict[str, str | None] = dict.fromkeys(self.hr)
        self.open: dict[str, str] = {}  # alert id -> patient
        self.tick = 0

    def next(self, patient: str) -> list[NewEvent]:
        self.tick += 1
        at = T0 + timedelta(seconds=self.tick)
        hr = self.hr[patient] = min(max(self.hr[patient] + self.rng.choice([-9, -4, 0, 4, 9]), 60), 190)
        events = [vitals(patient, at, hr=hr, spo2=float(self.rng.randint(90, 99)))]
        alert = self.active[patient]
        if alert is None and hr > HR_LIMIT:
            alert = self.active[patient] = str(uuid.uuid4())
            self.open[alert] = patient
            events.append(raised(patient, at, alert, hr))
        elif alert is not None and hr <= HR_LIMIT - 5:
            self.active[patient] = None
            del self.open[alert]
            events.append(resolved(patient, at, alert, hr))
        return events

    def round(self) -> list[AppendRequest]:
        return [AppendRequest(f"patient-{p}", tuple(self.next(p))) for p in self.hr]


async def table(conn: asyncpg.Connection, schema: str, name: str, key: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(f"SELECT * FROM {schema}.{name} ORDER BY {key}")]


async def test_live_projection_matches_a_rebuild_from_scratch(recorder: PostgresRecorder, database_url: str) -> None:
    ward = Ward(patients=5, seed=7)
    for _ in range(20):
        await recorder.append_batch(ward.round())
    live = await PostgresProjector.connect(database_url, recorder, page_size=17)
    rebuilt = await PostgresProjector.connect(database_url, recorder, schema="rebuilt", page_size=50)
    try:
        follower = asyncio.create_task(live.run(poll_interval=0.01))
        try:
            seen_mid_write: list[int] = []
            for r in range(60):
                # Appends per stream here (batches above), so pages also end mid-round.
                for request in ward.round():
                    await recorder.append(request.stream_id, list(request.events))
                if r == 30:
                    async with asyncio.timeout(30):
                        while (p := await live.position()) == 0:
                            await asyncio.sleep(0.01)
                    seen_mid_write.append(p)
            head = await recorder.last_position()
            async with asyncio.timeout(30):
                while await live.position() < head:
                    await asyncio.sleep(0.02)
        finally:
            follower.cancel()
            with pytest.raises(asyncio.CancelledError):
                await follower
        assert 0 < seen_mid_write[0] < head, "the projector should have been applying pages while writers appended"
        assert await live.position() == head

        await rebuilt.create_tables()
        assert await rebuilt.rebuild() == head
        conn = await asyncpg.connect(database_url)
        try:
            for name, key in (("patient_status", "patient_id"), ("open_alerts", "alert_id"),
                              ("projection_checkpoints", "name")):
                live_rows = await table(conn, "public", name, key)
                assert live_rows == await table(conn, "rebuilt", name, key), name
            assert len(live_rows) == 1 and live_rows[0] == {"name": CHECKPOINT_NAME, "position": head}
        finally:
            await conn.close()

        alerts = await live.alerts()
        assert {a.alert_id: a.patient_id for a in alerts} == ward.open
        assert ward.open, "the scenario should leave some alerts open"
        statuses = {s.patient_id: s for s in await live.statuses()}
        assert set(statuses) == set(ward.hr)
        for patient, status in statuses.items():
            stream = await recorder.read_stream(f"patient-{patient}")
            last = [e for e in stream if e.event_type == "VitalsObserved"][-1]
            assert status.last_vitals == {"hr": ward.hr[patient], "spo2": last.payload["spo2"]}
            assert status.last_observed_at == last.occurred_at
            assert status.open_alerts == sum(1 for p in ward.open.values() if p == patient)
            assert status.updated_position == stream[-1].position

        # Rebuilding the live schema in place gives the same rows again.
        before = await live.statuses(), await live.alerts()
        assert await live.rebuild() == head
        assert (await live.statuses(), await live.alerts()) == before
    finally:
        await live.close()
        await rebuilt.close()


async def test_open_alerts_hold_exactly_the_unresolved_ones(recorder: PostgresRecorder, database_url: str) -> None:
    t = [T0 + timedelta(seconds=i) for i in range(10)]
    await recorder.append("patient-a", [vitals("a", t[0], hr=120, spo2=97), raised("a", t[1], "A1", 150),
                                        raised("a", t[2], "A2", 152, priority="medium")])
    await recorder.append("patient-b", [raised("b", t[3], "B1", 140)])
    await recorder.append("patient-a", [resolved("a", t[4], "A1", 110), resolved("a", t[5], "A1", 108),
                                        resolved("a", t[6], "NOPE", 100), raised("a", t[7], "A2", 155),
                                        vitals("a", t[0] - timedelta(minutes=5), hr=99)])  # late reading
    await recorder.append("alert-x", [NewEvent(uuid.uuid4(), "alert-x", "AlertAcknowledged", t[8], {"by": "n1"})])
    projector = await PostgresProjector.connect(database_url, recorder, role="vigil_app")
    try:
        assert await projector.catch_up() == 10
        assert await projector.alerts() == [
            OpenAlert("A2", "a", "medium", "hr_high", "Heart rate 152 bpm above limit 130", 152.0, t[2], 3),
            OpenAlert("B1", "b", "high", "hr_high", "Heart rate 140 bpm above limit 130", 140.0, t[3], 4),
        ]
        assert await projector.statuses() == [
            PatientStatus("a", {"hr": 120, "spo2": 97}, t[0], 1, 5),
            PatientStatus("b", None, None, 1, 4),
        ]
        assert await projector.alerts("b") == [(await projector.alerts())[1]]
    finally:
        await projector.close()


async def test_a_page_applied_twice_counts_once(recorder: PostgresRecorder, database_url: str) -> None:
    ward = Ward(patients=3, seed=12)
    for _ in range(40):
        await recorder.append_batch(ward.round())
    head = await recorder.last_position()
    events = await recorder.read_all(0, head)
    assert any(e.event_type == "AlertResolved" for e in events) and ward.open

    once = await PostgresProjector.connect(database_url, recorder, schema="once")
    twice = await PostgresProjector.connect(database_url, recorder, schema="twice")
    try:
        for p in (once, twice):
            await p.create_tables()
        assert await once.apply_page(events) == head

        half = len(events) // 2
        assert await twice.apply_page(events[:half]) == events[half - 1].position
        # A crash after commit, before the caller noticed: the same page comes again,
        # then an overlapping one, from a fresh projector instance.
        assert await twice.apply_page(events[:half]) == events[half - 1].position
        again = await PostgresProjector.connect(database_url, recorder, schema="twice")
        try:
            assert await again.apply_page(events[half // 2:]) == head
            assert await again.apply_page(events) == head
        finally:
            await again.close()

        assert await twice.statuses() == await once.statuses()
        assert await twice.alerts() == await once.alerts()
        assert {a.alert_id for a in await once.alerts()} == set(ward.open)
        assert sum(s.open_alerts for s in await once.statuses()) == len(ward.open)
    finally:
        await once.close()
        await twice.close()


async def test_a_page_that_skips_ahead_is_not_applied(recorder: PostgresRecorder, database_url: str) -> None:
    await recorder.append("patient-a", [vitals("a", T0, hr=80), vitals("a", T0 + timedelta(seconds=1), hr=81)])
    projector = await PostgresProjector.connect(database_url, recorder)
    try:
        assert await projector.apply_page(await recorder.read_all(1)) == 0
        assert await projector.statuses() == []
        assert await projector.catch_up() == 2
        assert [s.last_vitals for s in await projector.statuses()] == [{"hr": 81}]
    finally:
        await projector.close()
