"""The auditor's timeline: one line per event, and filtering by stream, patient and
device time, on the in-memory recorder."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from event_store.events import JsonObject, NewEvent, RecordedEvent
from event_store.memory import MemoryRecorder
from event_store.replay import format_event, timeline

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def recorded(event_type: str, payload: JsonObject, *, position: int = 7, schema_version: int = 1,
             stream_id: str = "patient-p1") -> RecordedEvent:
    return RecordedEvent(position, uuid.uuid4(), stream_id, 3, event_type, schema_version, T0, T0, payload, {})


def test_vitals_line_lists_the_vitals_in_monitor_order() -> None:
    e = recorded("VitalsObserved", {"spo2": 97.0, "patient_id": "p1", "hr": 150, "bp_mean": 85.5})
    assert format_event(e) == "2026-03-01T08:00:00+00:00 #7 patient-p1 VitalsObserved hr=150 spo2=97 bp_mean=85.5"


def test_raised_alert_line_states_priority_rule_value_limit_and_message() -> None:
    e = recorded("AlertRaised", {"alert_id": "a-1", "patient_id": "p1", "priority": "high", "condition": "hr_high",
                                 "value": 150.0, "limit": 130.0, "message": "Heart rate 150 bpm above limit 130"})
    assert format_event(e) == ("2026-03-01T08:00:00+00:00 #7 patient-p1 AlertRaised "
                               "HIGH hr_high 150 > 130: Heart rate 150 bpm above limit 130 [alert a-1]")


def test_resolved_alert_line_names_the_alert() -> None:
    e = recorded("AlertResolved", {"alert_id": "a-1", "patient_id": "p1", "condition": "hr_high", "value": 112.5})
    assert format_event(e).endswith("AlertResolved resolved alert a-1 hr_high at 112.5")
    assert format_event(recorded("AlertResolved", {"alert_id": "a-2"})).endswith("resolved alert a-2")


def test_record_accessed_line_says_who_read_what() -> None:
    e = recorded("RecordAccessed", {"actor": "auditor1", "subject": "patient-p1", "action": "audit replay",
                                    "events": 12, "from": None, "to": None}, stream_id="access-auditor1")
    assert format_event(e).endswith("access-auditor1 RecordAccessed auditor1 audit replay patient-p1 (12 events)")


@pytest.mark.parametrize(("event", "facts"), [
    (recorded("AlertAcknowledged", {"by": "nurse-2", "alert_id": "a-1", "note": None, "ok": True,
                                    "limits": {"hr": [40, 130]}}),
     'AlertAcknowledged alert_id=a-1 by=nurse-2 limits={"hr":[40,130]} note=null ok=true'),
    # A known type missing a field is still shown, field by field, never an error.
    (recorded("AlertRaised", {"alert_id": "a-1", "value": 150}), "AlertRaised alert_id=a-1 value=150"),
    # Another schema version may mean another payload shape: shown generically.
    (recorded("VitalsObserved", {"heart_rate": 88}, schema_version=2), "VitalsObserved v2 heart_rate=88"),
    (recorded("PatientAdmitted", {}), "PatientAdmitted"),
])
def test_other_events_are_rendered_generically(event: RecordedEvent, facts: str) -> None:
    assert format_event(event) == f"2026-03-01T08:00:00+00:00 #7 patient-p1 {facts}"


async def filled() -> MemoryRecorder:
    """p1 and p2 alternate, one event a minute from T0; p1's fourth reading arrives
    late (device time T0 - 1 min) and an access stream follows."""
    rec = MemoryRecorder()
    for i in range(10):
        patient = f"p{i % 2 + 1}"
        at = T0 - timedelta(minutes=1) if i == 6 else T0 + timedelta(minutes=i)
        await rec.append(f"patient-{patient}", [NewEvent(uuid.uuid4(), f"patient-{patient}", "VitalsObserved", at,
                                                         {"patient_id": patient, "n": i})])
    await rec.append("access-a1", [NewEvent(uuid.uuid4(), "access-a1", "RecordAccessed", T0, {"actor": "a1"})])
    return rec


async def ns(rec: MemoryRecorder, **filters: object) -> list[object]:
    return [e.payload.get("n", e.event_type) async for e in timeline(rec, **filters)]  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_timeline_without_filters_is_the_whole_log_in_position_order() -> None:
    rec = await filled()
    assert await ns(rec) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, "RecordAccessed"]
    assert await ns(rec, page_size=3) == await ns(rec)


@pytest.mark.asyncio
async def test_timeline_of_a_patient_or_stream() -> None:
    rec = await filled()
    assert await ns(rec, patient_id="p1") == [0, 2, 4, 6, 8]
    assert await ns(rec, patient_id="p1", page_size=2) == [0, 2, 4, 6, 8]
    assert await ns(rec, stream_id="patient-p2", page_size=5) == [1, 3, 5, 7, 9]
    assert await ns(rec, stream_id="patient-p2", patient_id="p2") == [1, 3, 5, 7, 9]
    assert await ns(rec, patient_id="nobody") == []


@pytest.mark.asyncio
async def test_time_range_is_start_inclusive_end_exclusive_on_device_time() -> None:
    rec = await filled()
    start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=8)
    assert await ns(rec, start=start, end=end) == [2, 3, 4, 5, 7]
    assert await ns(rec, patient_id="p1", start=start, end=end, page_size=1) == [2, 4]
    # The late reading is found by its device time although it was stored after later ones.
    assert await ns(rec, patient_id="p1", end=T0) == [6]
    assert await ns(rec, start=T0 + timedelta(minutes=9)) == [9]
    assert await ns(rec, start=end, end=start) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(("filters", "message"), [
    ({"stream_id": "patient-p2", "patient_id": "p1"}, "is not patient 'p1'"),
    ({"start": datetime(2026, 3, 1, 8, 0)}, "start: .* timezone-aware"),
    ({"end": datetime(2026, 3, 1, 8, 0)}, "end: .* timezone-aware"),
    ({"page_size": 0}, "page_size"),
])
async def test_contradictory_or_naive_filters_are_refused(filters: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await ns(MemoryRecorder(), **filters)
