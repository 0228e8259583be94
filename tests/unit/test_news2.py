"""NEWS2 against RCP 2017 Chart 1, at every band edge on both sides."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.news2 import Acvpu, News2InputError, News2Observation, parse_observation, score_news2
from tests.conftest import REPO
from vigil.news2_batch import run, score_lines

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
    ({"hr": 10**400}, "hr"), ({"temp": -(10**400)}, "temp"),  # too big for a float: not an OverflowError
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
    assert score_lines(lines, out) == 3
    results = [json.loads(line) for line in out.getvalue().splitlines()]
    assert results[0] == {"score": 0, "risk": "low", "components": {
        "rr": 0, "spo2": 0, "oxygen": 0, "sbp": 0, "hr": 0, "acvpu": 0, "temp": 0}}
    assert results[1] == {"line": 2, "field": "sbp", "error": "sbp: must be a number, got 'high'"}
    assert results[2] == {"line": 3, "error": "empty line"}
    assert results[3]["line"] == 4 and results[3]["error"].startswith("invalid JSON")
    assert (results[4]["score"], results[4]["risk"]) == (3, "low-medium")


@pytest.mark.parametrize(("line", "field", "error"), [
    (json.dumps(NORMAL | {"hr": 10**400}), "hr", "hr: 1000000000"),  # OverflowError in math.isfinite
    ("[" * 100_000, None, "invalid JSON: nested too deeply"),  # RecursionError
    (json.dumps(NORMAL)[:-1] + ', "x": ' + "9" * 5000 + "}", None, "invalid JSON: Exceeds the limit"),
    ('{"rr": 16}\udcff', None, "not valid UTF-8 at column 11"),  # a bad byte, as read by run()
    ("", None, "empty line"),
    (" \t\n", None, "empty line"),
])
def test_a_bad_line_is_one_error_line_and_the_next_is_still_scored(line: str, field: str | None, error: str) -> None:
    good = json.dumps(NORMAL)
    out = io.StringIO()
    assert score_lines([good + "\n", line, good], out) == 1
    results = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(results) == 3 and results[0]["score"] == results[2]["score"] == 0
    assert results[1]["line"] == 2 and results[1].get("field") == field
    assert results[1]["error"].startswith(error)


def test_run_answers_every_line_of_a_file_with_invalid_utf8_and_blank_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = json.dumps(NORMAL).encode()
    path = tmp_path / "obs.jsonl"
    path.write_bytes(good + b"\n" + b'{"rr": "\xff\xfe"}\n' + b"\n" + good + b"\n")  # the final newline ends line 4
    assert run(str(path)) == 1
    results = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r.get("line") for r in results] == [None, 2, 3, None]
    assert results[1]["error"] == "not valid UTF-8 at column 9"
    assert results[2]["error"] == "empty line"
    assert results[0]["score"] == results[3]["score"] == 0


_LINES = st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda doc: json.dumps(NORMAL | doc), st.dictionaries(
        st.sampled_from(sorted(NORMAL)),
        st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from([10**400, "A", "C", 1, 2]),
        max_size=3)),
    st.integers(0, 3000).map(lambda n: "[" * n),
), max_size=6)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(_LINES)
def test_output_line_k_always_answers_input_line_k(lines: list[str]) -> None:
    out = io.StringIO()
    rejected = score_lines(lines, out)
    results = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(results) == len(lines)
    errors = [(k, r) for k, r in enumerate(results, start=1) if "error" in r]
    assert rejected == len(errors) and all(r["line"] == k for k, r in errors)


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
