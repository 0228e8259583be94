"""How far an evaluation figure could move with other patients: a bootstrap by record.

The figures we report pool a few dozen records (11 DS2 records of MIT-BIH, 59
held-out challenge alarms), and beats of one record are not independent draws:
most of DS2's S beats sit in three records, most of its false S in two. So the
interval resamples *records* with replacement, pools each resample the way the
figure itself is pooled, and takes the middle ``level`` of the results (the
percentile bootstrap; Efron & Tibshirani 1993, ch. 13). Read it as how much the
figure depends on which records happened to be present, not as an exact
confidence level: with so few records the percentile interval is only rough.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

__all__ = ["DEFAULT_ROUNDS", "bootstrap_interval"]

T = TypeVar("T")

DEFAULT_ROUNDS = 2000
_SEED = 20150901  # fixed: the printed intervals do not move between runs


def bootstrap_interval(units: Sequence[T], statistic: Callable[[Sequence[T]], float], *,
                       rounds: int = DEFAULT_ROUNDS, level: float = 0.95, seed: int = _SEED) -> tuple[float, float]:
    """(low, high): the central ``level`` of ``statistic`` over ``rounds`` resamples of
    ``units`` (each as many units as given, drawn with replacement).

    A resample where the statistic is undefined (NaN: say no beat of the class was
    drawn) is left out; ValueError if every one is, or if ``units`` is empty.
    """
    if not units:
        raise ValueError("no units to resample")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level is a share, 0..1 exclusive, got {level}")
    rng = np.random.default_rng(seed)
    n = len(units)
    values = [statistic([units[i] for i in rng.integers(0, n, n)]) for _ in range(rounds)]
    defined = np.array([v for v in values if v == v], dtype=np.float64)
    if defined.shape[0] == 0:
        raise ValueError(f"the statistic was undefined in all {rounds} resamples")
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return float(low), float(high)
