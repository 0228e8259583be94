"""NEWS2 against RCP 2017 Chart 1, at every band edge on both sides."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from detectors.news2 import Acvpu, News2InputError, News2Observation, parse_observation, score_news2
from tests.conftest import REPO
from vigil.news2_batch import score_lines

NORMAL = {"rr": 16, "spo2": 97, "spo2_scale": 1, "oxygen": False, "sbp": 120, "hr": 70, "acvpu": "A", "temp": 37.0}


def points(field: str, **changes: object) -> int:
    return score_news2(parse_observation(NORMAL | changes)).components[field]


@pytest.mark.parametrize(("rr", "expected"), [
    (0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)])
def test_respiration_rate(rr: int, expected: int) -> None:
    assert points("rr", rr=rr) == expected


@pytest.mark.parametrize(("spo2", "expected"), [(80, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)])
def test_spo2_scale_1(spo2: int, expected: int) -> None:
    assert points("spo2", spo2=spo2) == expected
    assert points("spo2", spo2=spo2, oxygen=True) == expected  # scale 1 ignores the oxygen flag


@pytest.mark.parametrize(("spo2", "on_air", "on_oxygen"), [
    (80, 3, 3), (83, 3, 3), (84, 2, 2), (85, 2, 2), (86, 1, 1), (87, 1, 1), (88, 0, 0), (92, 0, 0),
    (93, 0, 1), (94, 0, 1), (95, 0, 2), (96, 0, 2), (97, 0, 3), (100, 0, 3),
])
def test_spo2_scale_2(spo2: int, on_air: int, on_oxygen: int) -> None:
    assert points("spo2", spo2=spo2, spo2_scale=2, oxygen=False) == on_air
    assert points("spo2", spo2=spo2, spo2_scale=2, oxygen=True) == on_oxygen


def test_air_or_oxygen() -> None:
    assert points("oxygen", oxygen=False) == 0
    assert points("oxygen", oxygen=True) == 2


@pytest.mark.parametrize(("sbp", "expected"), [
    (60, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (260, 3)])
def test_systolic_pressure(sbp: int, expected: int) -> None:
    assert points("sbp", sbp=sbp) == expected


@pytest.mark.parametrize(("hr", "expected"), [
    (30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3), (180, 3)])
def test_pulse(hr: int, expected: int) -> None:
    assert points("hr", hr=hr) == expected


@pytest.mark.parametrize(("level", "expected"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness(level: str, expected: int) -> None:
    assert points("acvpu", acvpu=level) == expected


@pytest.mark.parametrize(("temp", "expected"), [
    (33.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2), (41.0, 2)])
def test_temperature(temp: float, expected: int) -> None:
    assert points("temp", temp=temp) == expected


@pytest.mark.parametrize(("value", "field", "expected"), [
    (35.05, "temp", 1),   # charted as 35.1, half-up (Python's round() would give 35.0)
    (35.04, "temp", 3),
    (90.5, "hr", 1),      # charted as 91
    (20.4, "rr", 0),
])
def test_values_are_rounded_as_charted(value: float, field: str, expected: int) -> None:
    assert points(field, **{field: value}) == expected


@pytest.mark.parametrize(("changes", "score", "risk"), [
    ({}, 0, "low"),
    ({"rr": 21, "hr": 91, "temp": 38.1}, 4, "low"),               # 2 + 1 + 1
    ({"rr": 25}, 3, "low-medium"),                                 # a single parameter scoring 3
    ({"acvpu": "C", "hr": 91}, 4, "low-medium"),
    ({"rr": 25, "hr": 91, "temp": 38.1}, 5, "medium"),             # 5 with a 3 is medium, not low-medium
    ({"rr": 21, "sbp": 100, "hr": 111}, 6, "medium"),
    ({"rr": 25, "oxygen": True, "hr": 111}, 7, "high"),
    ({"rr": 8, "spo2": 91, "oxygen": True, "sbp": 90, "hr": 131, "acvpu": "U", "temp": 35.0}, 20, "high"),
])
def test_total_and_risk_band(changes: dict[str, object], score: int, risk: str) -> None:
    result = score_news2(parse_observation(NORMAL | changes))
    assert (result.score, result.risk) == (score, risk)
    assert result.score == sum(result.components.values())


@pytest.mark.parametrize(("changes", "field"), [
    ({"rr": None}, "rr"), ({"spo2": "97"}, "spo2"), ({"sbp": True}, "sbp"), ({"hr": -5}, "hr"),
    ({"temp": 60}, "temp"), ({"acvpu": "X"}, "acvpu"), ({"acvpu": None}, "acvpu"), ({"oxygen": "no"}, "oxygen"),
    ({"spo2_scale": 3}, "spo2_scale"), ({"rr": float("nan")}, "rr"),
])
def test_bad_input_names_the_field(changes: dict[str, object], field: str) -> None:
    doc = {k: v for k, v in (NORMAL | changes).items() if v is not None}
    with pytest.raises(News2InputError) as err:
        parse_observation(doc)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_missing_field() -> None:
    doc = dict(NORMAL)
    del doc["temp"]
    with pytest.raises(News2InputError, match="temp: missing"):
        parse_observation(doc)


def test_observation_object() -> None:
    obs = parse_observation(NORMAL)
    assert obs == News2Observation(16, 97, 1, False, 120, 70, Acvpu.ALERT, 37.0)


def test_batch_scores_every_good_line_and_names_bad_ones() -> None:
    lines = [json.dumps(NORMAL), json.dumps(NORMAL | {"sbp": "high"}), "", "{oops", json.dumps(NORMAL | {"rr": 25})]
    out = io.StringIO()
    assert score_lines(lines, out) == 2
    results = [json.loads(line) for line in out.getvalue().splitlines()]
    assert results[0] == {"score": 0, "risk": "low", "components": {
        "rr": 0, "spo2": 0, "oxygen": 0, "sbp": 0, "hr": 0, "acvpu": 0, "temp": 0}}
    assert results[1] == {"line": 2, "field": "sbp", "error": "sbp: must be a number, got 'high'"}
    assert results[2]["line"] == 4 and results[2]["error"].startswith("invalid JSON")
    assert (results[3]["score"], results[3]["risk"]) == (3, "low-medium")


def test_cli(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "obs.jsonl"
    path.write_text(json.dumps(NORMAL | {"hr": 131}) + "\n" + json.dumps({"rr": 1}) + "\n")
    done = subprocess.run([sys.executable, "-m", "vigil", "news2", "--input", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    first, second = (json.loads(x) for x in done.stdout.splitlines())
    assert (first["score"], first["risk"]) == (3, "low-medium")
    assert second["line"] == 2 and second["field"] == "oxygen"
    missing = subprocess.run([sys.executable, "-m", "vigil", "news2", "--input", str(path) + ".nope"], cwd=REPO,
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
