"""From a vitals reading to its events, with the real alarm engine."""

from __future__ import annotations

import json

from datetime import UTC, datetime, timedelta

from detectors.alarm_limits import default_limits
from detectors.alarm_state import AlarmState
from detectors.alarms import AlarmEngine
from streams.vitals_codec import Vitals
from streams.vitals_pipeline import SourceRef, VitalsPatient, event_id_for, news2_of, vitals_to_events

ENGINE = AlarmEngine()
T0 = datetime(2026, 11, 26, tzinfo=UTC)
LIMITS = default_limits("ward").changed({"hr": {"high": 130, "delay_s": 0}})


def fresh() -> AlarmState:
    return ENGINE.new_state("p7", "ward", LIMITS)


def vitals(hr: float, t: int = 0, **extra: object) -> Vitals:
    return Vitals("p7", "bed-7", T0 + timedelta(seconds=t), {"hr": hr, "spo2": 96}, **extra)  # type: ignore[arg-type]


def test_every_message_is_observed() -> None:
    _, events = vitals_to_events(vitals(80), SourceRef("v", 0, 5), fresh(), ENGINE)
    assert [e.event_type for e in events] == ["VitalsObserved"]
    e = events[0]
    assert e.stream_id == "patient-p7"
    assert e.payload == {"patient_id": "p7", "hr": 80, "spo2": 96}
    assert e.metadata["source"] == {"topic": "v", "partition": 0, "offset": 5}


def test_ids_are_deterministic_per_source_and_index() -> None:
    src = SourceRef("v", 1, 9)
    _, a = vitals_to_events(vitals(150), src, fresh(), ENGINE)
    _, b = vitals_to_events(vitals(150), src, fresh(), ENGINE)
    assert [e.event_id for e in a] == [e.event_id for e in b] == [event_id_for(src, 0), event_id_for(src, 1)]
    assert a == b
    _, c = vitals_to_events(vitals(150), SourceRef("v", 1, 10), fresh(), ENGINE)
    assert {e.event_id for e in a}.isdisjoint(e.event_id for e in c)


def test_alarm_raised_then_resolved_with_hysteresis() -> None:
    state, raised = vitals_to_events(vitals(150), SourceRef("v", 0, 1), fresh(), ENGINE)
    assert [e.event_type for e in raised] == ["VitalsObserved", "AlertRaised"]
    alert = raised[1].payload
    assert (alert["condition"], alert["priority"], alert["value"], alert["limit"]) == ("hr_high", "medium", 150, 130)
    assert alert["patient_id"] == "p7" and "150" in alert["message"]
    # 128 is back under the limit but not by the 5 bpm hysteresis: still active.
    state, held = vitals_to_events(vitals(128, 1), SourceRef("v", 0, 2), state, ENGINE)
    assert [e.event_type for e in held] == ["VitalsObserved"]
    state, resolved = vitals_to_events(vitals(100, 2), SourceRef("v", 0, 3), state, ENGINE)
    assert [e.event_type for e in resolved] == ["VitalsObserved", "AlertResolved"]
    assert resolved[1].payload["alert_id"] == alert["alert_id"]


def test_complete_readings_are_scored_and_high_risk_alarms() -> None:
    sick = Vitals("p7", "bed-7", T0, {"hr": 135, "spo2": 90, "rr": 26, "sbp": 95, "temp": 39.2}, oxygen=True,
                  acvpu="A")
    result = news2_of(sick)
    assert result is not None and result.risk == "high"
    _, events = vitals_to_events(sick, SourceRef("v", 0, 1), fresh(), ENGINE)
    scored = [e for e in events if e.event_type == "News2Scored"]
    assert len(scored) == 1 and scored[0].payload["score"] == result.score
    raised = {e.payload["condition"]: e.payload["priority"] for e in events if e.event_type == "AlertRaised"}
    assert raised.get("news2_high") == "high"
    assert news2_of(vitals(80)) is None  # incomplete: no score, no NEWS2 alarm


def test_a_probe_off_reading_is_not_scored_as_a_desaturation() -> None:
    """SpO2 0 means no reading: scored, it would give 3 points and a NEWS2 alarm at the
    first second, ten seconds before the probe-off technical alarm says what happened."""
    well = {"hr": 72, "rr": 16, "sbp": 120, "temp": 37.0}
    state = fresh()
    kinds: list[str] = []
    for t in range(12):
        reading = Vitals("p7", "bed-7", T0 + timedelta(seconds=t), well | {"spo2": 0}, oxygen=False, acvpu="A")
        assert news2_of(reading) is None
        state, events = vitals_to_events(reading, SourceRef("v", 0, t), state, ENGINE)
        kinds += [e.event_type if e.event_type != "AlertRaised" else e.payload["condition"] for e in events]
    assert "News2Scored" not in kinds
    assert [k for k in kinds if k != "VitalsObserved"] == ["spo2_probe_off"]
    on = Vitals("p7", "bed-7", T0, well | {"spo2": 97}, oxygen=False, acvpu="A")
    scored = news2_of(on)
    assert scored is not None and scored.score == 0


def test_news2_scores_spo2_on_the_scale_set_in_the_patients_limits() -> None:
    """Scale 2 (hypercapnic respiratory failure): on oxygen, 97 % scores 3 (RCP 2017)."""
    reading = Vitals("p7", "bed-7", T0, {"hr": 72, "rr": 16, "sbp": 120, "temp": 37.0, "spo2": 97}, oxygen=True,
                     acvpu="A")
    scores = {}
    for scale in (1, 2):
        state = ENGINE.new_state("p7", "ward", LIMITS.changed({"spo2_scale": scale}))
        _, events = vitals_to_events(reading, SourceRef("v", 0, 1), state, ENGINE)
        (scored,) = [e.payload for e in events if e.event_type == "News2Scored"]
        scores[scale] = (scored["score"], scored["components"]["spo2"])
    assert scores == {1: (2, 0), 2: (5, 3)}  # oxygen scores 2 on either scale


def test_patient_state_round_trips() -> None:
    state, _ = vitals_to_events(vitals(150), SourceRef("v", 0, 1), fresh(), ENGINE)
    p = VitalsPatient(state, 1, 1000, 4321)
    back = VitalsPatient.decode(p.encode())
    assert (back.offset, back.last_ts_ms, back.alarms, back.commands_through) == (1, 1000, state, 4321)
    older = json.loads(p.encode())
    del older["commands_through"]  # a checkpoint from before commands were tracked
    assert VitalsPatient.decode(json.dumps(older).encode()).commands_through == 0


def test_ids_are_uuid5_of_the_source_and_index() -> None:
    import uuid

    from streams.vitals_pipeline import EVENT_NAMESPACE

    for src, index in ((SourceRef("v", 1, 9), 0), (SourceRef("ecg-ü", 0, 2**40), 7), (SourceRef("t", 12, 0), 31)):
        expected = uuid.uuid5(EVENT_NAMESPACE, f"{src.topic}:{src.partition}:{src.offset}:{index}")
        got = event_id_for(src, index)
        assert got == expected and str(got) == str(expected) and got.version == 5
