from __future__ import annotations

import pytest

from detectors.threshold import AlarmCleared, AlarmRaised, ThresholdRule, ThresholdState

RULE = ThresholdRule("hr_high", "Heart rate", "bpm", limit=130, hysteresis=5)


def run(values: list[float | None]) -> list[object]:
    state, out = ThresholdState(), []
    for i, v in enumerate(values):
        state, decisions = RULE.evaluate(state, v, f"a{i}")
        out.extend(decisions)
    return out


def test_raises_once_while_above() -> None:
    out = run([100, 131, 140, 150])
    assert out == [AlarmRaised("a1", "hr_high", "high", 131, 130, "Heart rate 131 bpm above limit 130")]


def test_at_the_limit_is_not_above() -> None:
    assert run([130, 130]) == []


def test_hysteresis_keeps_alarm_until_clearly_below() -> None:
    out = run([140, 128, 126, 125])
    assert [type(d) for d in out] == [AlarmRaised, AlarmCleared]
    assert out[1] == AlarmCleared("a0", "hr_high", 125)


def test_missing_value_changes_nothing() -> None:
    assert [type(d) for d in run([None, 140, None])] == [AlarmRaised]


def test_reraise_after_clear_gets_new_id() -> None:
    out = run([140, 100, 141])
    assert [d.alert_id for d in out] == ["a0", "a0", "a2"]


@pytest.mark.parametrize("kwargs", [{"hysteresis": -1}, {"priority": "urgent"}])
def test_bad_rule_settings(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"condition": "c", "label": "l", "unit": "u", "limit": 1, "hysteresis": 0} | kwargs
    with pytest.raises(ValueError):
        ThresholdRule(**args)  # type: ignore[arg-type]
