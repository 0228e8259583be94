from __future__ import annotations

from datetime import UTC, datetime

from detectors.threshold import ThresholdRule, ThresholdState
from streams.vitals_codec import Vitals
from streams.vitals_pipeline import SourceRef, event_id_for, vitals_to_events

RULE = ThresholdRule("hr_high", "Heart rate", "bpm", limit=130, hysteresis=5)
T0 = datetime(2026, 11, 26, tzinfo=UTC)


def vitals(hr: float) -> Vitals:
    return Vitals("p7", "bed-7", T0, {"hr": hr, "spo2": 96})


def test_every_message_is_observed() -> None:
    state, events = vitals_to_events(vitals(80), SourceRef("v", 0, 5), ThresholdState(), RULE)
    assert state == ThresholdState()
    assert [e.event_type for e in events] == ["VitalsObserved"]
    e = events[0]
    assert e.stream_id == "patient-p7"
    assert e.payload == {"patient_id": "p7", "hr": 80, "spo2": 96}
    assert e.metadata["source"] == {"topic": "v", "partition": 0, "offset": 5}


def test_ids_are_deterministic_per_source_and_index() -> None:
    src = SourceRef("v", 1, 9)
    _, a = vitals_to_events(vitals(150), src, ThresholdState(), RULE)
    _, b = vitals_to_events(vitals(150), src, ThresholdState(), RULE)
    assert [e.event_id for e in a] == [e.event_id for e in b] == [event_id_for(src, 0), event_id_for(src, 1)]
    _, c = vitals_to_events(vitals(150), SourceRef("v", 1, 10), ThresholdState(), RULE)
    assert {e.event_id for e in a}.isdisjoint(e.event_id for e in c)


def test_alarm_raised_then_resolved() -> None:
    state, raised = vitals_to_events(vitals(150), SourceRef("v", 0, 1), ThresholdState(), RULE)
    assert [e.event_type for e in raised] == ["VitalsObserved", "AlertRaised"]
    alert = raised[1].payload
    assert alert["alert_id"] == state.active_alert_id
    assert alert["priority"] == "high" and alert["value"] == 150 and alert["limit"] == 130
    state, resolved = vitals_to_events(vitals(100), SourceRef("v", 0, 2), state, RULE)
    assert [e.event_type for e in resolved] == ["VitalsObserved", "AlertResolved"]
    assert resolved[1].payload["alert_id"] == alert["alert_id"]
    assert state.active_alert_id is None
