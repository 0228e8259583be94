from __future__ import annotations

import math

import numpy as np
import pytest

from processors.vitals import LIMITS, VitalSignFilter


def run(parameter: str, values: list[float | None], **kw: int) -> list[tuple[bool, str | None]]:
    f = VitalSignFilter(parameter, **kw)
    return [(s.accepted, s.reason) for s in (f.feed(float(t), v) for t, v in enumerate(values, start=1))]


def test_dropouts_and_impossible_values_are_rejected_with_a_reason() -> None:
    assert run("hr", [80, None, float("nan"), 400, 10, 81]) == [
        (True, None), (False, "dropout"), (False, "dropout"), (False, "impossible"), (False, "impossible"), (True, None)]


def test_a_motion_spike_is_rejected_and_the_level_kept() -> None:
    f = VitalSignFilter("spo2")
    for t in range(1, 11):
        f.feed(t, 97)
    spike = f.feed(11, 72)  # a probe moved
    assert (spike.accepted, spike.reason, spike.smoothed) == (False, "jump", 97.0)
    assert f.feed(12, 96).accepted


def test_a_sustained_change_is_accepted_after_confirmation() -> None:
    out = run("hr", [80, 80, 80, 130, 131, 130, 132])
    assert out[3:] == [(False, "jump"), (False, "jump"), (True, None), (True, None)]


def test_an_erratic_artifact_is_never_confirmed() -> None:
    out = run("spo2", [97, 97, 60, 80, 62, 80, 97])  # never two alike, always far from 97
    assert [a for a, _ in out] == [True, True, False, False, False, False, True]


def test_smoothing_is_a_median() -> None:
    f = VitalSignFilter("rr", window=5)
    values = [16, 16, 17, 23, 16]  # 23 is within the step limit but an outlier
    smoothed = [f.feed(float(t), v).smoothed for t, v in enumerate(values, start=1)]
    assert smoothed[-1] == 16.0


def test_trends_over_5_and_15_minutes() -> None:
    f = VitalSignFilter("hr")
    rng = np.random.default_rng(2)
    for t in range(1, 901):  # 15 minutes at 1 Hz: flat for 10, then +2 bpm per minute
        level = 70.0 + (2.0 * (t - 600) / 60 if t > 600 else 0.0)
        f.feed(float(t), level + rng.normal(0, 0.5))
    five, fifteen = f.trend(5), f.trend(15)
    assert five is not None and fifteen is not None
    assert five == pytest.approx(2.0, abs=0.1)
    assert 0.2 < fifteen < five


def test_trend_needs_enough_data() -> None:
    f = VitalSignFilter("temp")
    for t in range(1, 6):
        f.feed(float(t), 37.0)
    assert f.trend(5) is None


@pytest.mark.parametrize("parameter", sorted(LIMITS))
def test_every_parameter_accepts_its_normal_range(parameter: str) -> None:
    lo, hi, _ = LIMITS[parameter]
    mid = (lo + hi) / 2
    assert all(a for a, _ in run(parameter, [mid] * 5))
    assert not math.isnan(mid)


def test_bad_use_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        VitalSignFilter("glucose")
    f = VitalSignFilter("hr")
    f.feed(5.0, 80)
    with pytest.raises(ValueError, match="time must increase"):
        f.feed(5.0, 81)
