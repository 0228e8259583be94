from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from detectors.beat_classifier import AAMI_CLASSES
from detectors.training.mitdb import Confusion, class_intervals, pooled
from detectors.training.resample import bootstrap_interval


def share_true(sample: Sequence[bool]) -> float:
    return sum(sample) / len(sample)


def test_the_interval_brackets_the_figure_and_is_the_same_every_run() -> None:
    units = [True] * 30 + [False] * 10
    low, high = bootstrap_interval(units, share_true)
    assert low < 0.75 < high
    assert (low, high) == bootstrap_interval(units, share_true)
    assert (low, high) != bootstrap_interval(units, share_true, seed=1)


def test_more_records_narrow_it() -> None:
    few = bootstrap_interval([True] * 6 + [False] * 2, share_true)
    many = bootstrap_interval([True] * 600 + [False] * 200, share_true)
    assert many[1] - many[0] < (few[1] - few[0]) / 5


def test_identical_records_give_no_spread() -> None:
    assert bootstrap_interval([True] * 5, share_true) == (1.0, 1.0)


def test_a_wider_level_gives_a_wider_interval() -> None:
    units = [True] * 20 + [False] * 20
    low90, high90 = bootstrap_interval(units, share_true, level=0.90)
    low99, high99 = bootstrap_interval(units, share_true, level=0.99)
    assert low99 < low90 and high90 < high99


def test_resamples_where_the_figure_is_undefined_are_left_out() -> None:
    def sensitivity(sample: Sequence[tuple[int, int]]) -> float:
        found, present = sum(f for f, _ in sample), sum(p for _, p in sample)
        return found / present if present else float("nan")

    # One record holds all the positives (9 of 10 found); the others hold none, so
    # most resamples that miss it have no sensitivity at all.
    units = [(9, 10)] + [(0, 0)] * 9
    assert bootstrap_interval(units, sensitivity) == (0.9, 0.9)
    with pytest.raises(ValueError, match="undefined in all 50 resamples"):
        bootstrap_interval([(0, 0)] * 3, sensitivity, rounds=50)


@pytest.mark.parametrize(("units", "kwargs", "message"), [
    ([], {}, "no units"),
    ([True], {"rounds": 0}, "rounds must be >= 1"),
    ([True], {"level": 1.0}, "level is a share"),
])
def test_bad_arguments_are_refused(units: list[bool], kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_interval(units, share_true, **kwargs)  # type: ignore[arg-type]


def test_class_intervals_pool_whole_records() -> None:
    v = AAMI_CLASSES.index("V")
    n = AAMI_CLASSES.index("N")

    def record(v_found: int, v_called_n: int) -> Confusion:
        c = Confusion.empty()
        labels = np.array([v] * (v_found + v_called_n) + [n] * 50)
        predicted = np.array([v] * v_found + [n] * (v_called_n + 50))
        c.add(labels, predicted)
        return c

    good, poor = record(90, 10), record(1, 9)
    assert pooled([good, poor]).sensitivity("V") == pytest.approx(91 / 110)
    (se_low, se_high), (pp_low, pp_high) = class_intervals([good, poor], ("V",), rounds=500)["V"]
    # Records are drawn whole: the pooled Se runs from all-poor (0.1) to all-good (0.9);
    # nothing but V is ever called V, so +P stays 1.
    assert se_low == pytest.approx(0.1) and se_high == pytest.approx(0.9)
    assert pp_low == pp_high == 1.0
