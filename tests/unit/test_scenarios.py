"""Scripted vitals scenarios (streams/scenarios.py): random-access determinism, the
message contract, and each scenario's promise checked with Vigil's own NEWS2."""

from __future__ import annotations

import random
from typing import get_args

import pytest

from detectors.news2 import News2Result, parse_observation, score_news2
from streams.scenarios import SCRIPTS, ScenarioName, ScenarioPatient, ScenarioVitals, codec_values, scenario_vitals
from streams.vitals_codec import decode_vitals, encode_vitals

PATIENTS = [f"p{i:04d}" for i in range(1, 7)]


def news2(v: ScenarioVitals) -> News2Result:
    return score_news2(parse_observation(dict(v)))


def test_vitals_depend_only_on_seed_patient_and_second() -> None:
    a = ScenarioPatient("sepsis", seed=1, patient="p0001")
    in_order = [a.vitals(t) for t in range(0, 1200, 7)]
    b = ScenarioPatient("sepsis", seed=1, patient="p0001")
    times = list(range(0, 1200, 7))
    random.Random(0).shuffle(times)
    shuffled = {t: b.vitals(t) for t in times}
    assert in_order == [shuffled[t] for t in range(0, 1200, 7)]
    assert scenario_vitals("sepsis", seed=1, patient="p0001", t=700) == a.vitals(700)
    other_seed = ScenarioPatient("sepsis", seed=2, patient="p0001")
    other_patient = ScenarioPatient("sepsis", seed=1, patient="p0002")
    assert [other_seed.vitals(t) for t in range(0, 1200, 7)] != in_order
    assert [other_patient.vitals(t) for t in range(0, 1200, 7)] != in_order


@pytest.mark.parametrize("scenario", get_args(ScenarioName))
def test_every_second_is_a_valid_vitals_message_and_news2_observation(scenario: ScenarioName) -> None:
    p = ScenarioPatient(scenario, seed=3, patient="p0003")
    for t in range(0, 1800, 5):
        v = p.vitals(t)
        assert set(v) == {"hr", "spo2", "rr", "sbp", "dbp", "temp", "oxygen", "acvpu"}
        decoded = decode_vitals(encode_vitals("p0003", 1764122400000 + t * 1000, codec_values(v)))
        assert decoded.values == {"hr": v["hr"], "spo2": v["spo2"], "rr": v["rr"], "sbp": v["sbp"],
                                  "dbp": v["dbp"], "temp": v["temp"]}
        assert v["dbp"] < v["sbp"]
        assert isinstance(v["oxygen"], bool) and v["acvpu"] in {"A", "C"}
        news2(v)  # accepted by the scorer as it is


def test_stable_patients_stay_at_news2_zero_for_an_hour() -> None:
    for pid in PATIENTS:
        p = ScenarioPatient("stable", seed=11, patient=pid)
        scores = [news2(p.vitals(t)) for t in range(0, 3600, 3)]
        assert {s.risk for s in scores} == {"low"}
        assert max(s.score for s in scores) == 0


def first_second(p: ScenarioPatient, risk: set[str], until: int) -> int | None:
    return next((t for t in range(until) if news2(p.vitals(t)).risk in risk), None)


def test_sepsis_reaches_high_news2_by_its_deadline_and_stays_there() -> None:
    script = SCRIPTS["sepsis"]
    for pid in PATIENTS:
        p = ScenarioPatient("sepsis", seed=5, patient=pid)
        assert all(news2(p.vitals(t)).risk == "low" for t in range(0, int(script.onset_s)))
        first_high = first_second(p, {"high"}, int(script.deadline_s) + 1)
        assert first_high is not None and script.onset_s < first_high <= script.deadline_s
        assert all(news2(p.vitals(t)).risk == "high" for t in range(int(script.deadline_s), 2400, 5))
        start, end = p.vitals(0), p.vitals(int(script.deadline_s))
        assert end["hr"] > start["hr"] + 25 and end["rr"] > start["rr"] + 6
        assert end["temp"] >= 38.5 and end["sbp"] < start["sbp"] - 20
        assert (start["acvpu"], end["acvpu"]) == ("A", "C")


def test_sepsis_deteriorates_gradually_over_minutes() -> None:
    p = ScenarioPatient("sepsis", seed=5, patient="p0001")
    minute_mean_hr = [sum(p.vitals(t)["hr"] for t in range(m * 60, m * 60 + 60)) / 60 for m in range(2, 18)]
    assert all(b >= a - 3 for a, b in zip(minute_mean_hr, minute_mean_hr[1:], strict=False))  # rises, with noise
    assert minute_mean_hr[-1] - minute_mean_hr[0] > 30
    scores = [news2(p.vitals(t)).score for t in range(0, 1021, 60)]
    assert len(set(scores)) >= 5  # passes through intermediate scores, not a step


def test_hypoxia_desaturates_raises_rr_and_starts_oxygen_by_its_deadline() -> None:
    script = SCRIPTS["hypoxia"]
    for pid in PATIENTS:
        p = ScenarioPatient("hypoxia", seed=8, patient=pid)
        before, after = p.vitals(int(script.onset_s) - 1), p.vitals(int(script.deadline_s))
        assert before["spo2"] >= 96 and not before["oxygen"]
        assert after["spo2"] <= 87 and after["rr"] >= 25 and after["oxygen"]
        first_high = first_second(p, {"high"}, int(script.deadline_s) + 1)
        assert first_high is not None and first_high <= script.deadline_s


def test_bradycardia_brings_the_pulse_to_40_or_below() -> None:
    script = SCRIPTS["bradycardia"]
    for pid in PATIENTS:
        p = ScenarioPatient("bradycardia", seed=9, patient=pid)
        assert p.vitals(0)["hr"] > 55
        for t in range(int(script.deadline_s), 1800, 7):
            v = p.vitals(t)
            assert v["hr"] <= 40
            assert news2(v).risk in {"low-medium", "medium", "high"}
            assert news2(v).components["hr"] == 3


def test_onset_and_ramp_can_be_overridden() -> None:
    p = ScenarioPatient("sepsis", seed=5, patient="p0001", onset_s=10, ramp_s=60)
    assert p.deadline_s == 70
    assert news2(p.vitals(70)).risk == "high"
    assert p.progress(10) == 0.0 and p.progress(70) == 1.0 and 0 < p.progress(40) < 1


def test_unknown_scenario_and_negative_time_are_refused() -> None:
    with pytest.raises(ValueError, match="stable, sepsis, hypoxia, bradycardia"):
        ScenarioPatient("flu", seed=1, patient="p1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ScenarioPatient("sepsis", seed=1, patient="p1").vitals(-1)
    with pytest.raises(ValueError):
        ScenarioPatient("sepsis", seed=1, patient="p1", ramp_s=0)
