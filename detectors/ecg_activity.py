"""QRS-like activity per signal-quality window: the largest change of the ECG over
50 ms, in mV.

Why: the signal-quality index (processors/sqi.py) calls a window ``noise`` when its
kurtosis is low, and an isoelectric line with a little baseline wander or amplifier
noise has a low kurtosis. So the quiet baseline of a real asystole is labelled
noise, and noise suppresses the asystole alarm. (On synthetic ECG with an 8-s pause
made of 0.3-Hz wander and 0.02 mV noise, all four pause windows are ``noise``;
only an exactly flat pause is ``flat``.) A QRS complex changes the ECG by the
best part of its amplitude within 50 ms (about 1 mV, rarely under 0.3 mV), wander
and low-level noise by far less; a window whose largest 50-ms change stays under
``quiet_mv`` (0.15 mV in `detectors.arrhythmia`) cannot be hiding a QRS, and the
arrhythmia detector treats it as observed signal without beats, not as noise.

Windows sit on absolute multiples of ``window_size`` samples, as the quality
windows do, so the measure does not depend on chunking. Samples in mV; NaN samples
are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["ActivityState", "ActivityMeter"]


@dataclass(frozen=True, slots=True)
class ActivityState:
    position: int = 0
    """Absolute index of the next sample."""
    tail: tuple[float, ...] = ()
    """The last ``lag`` samples (fewer at the very start)."""
    running: float = 0.0
    """Largest 50-ms change so far in the window that ``position`` lies in."""

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "tail": [None if math.isnan(v) else v for v in self.tail],
                "running": self.running}

    @classmethod
    def from_dict(cls, doc: Any) -> ActivityState:
        if not isinstance(doc, dict) or not isinstance(doc.get("position"), int) or not isinstance(
                doc.get("tail"), list) or not isinstance(doc.get("running"), (int, float)):
            raise ValueError("activity state must be an object with position, tail and running")
        return cls(doc["position"], tuple(math.nan if v is None else float(v) for v in doc["tail"]),
                   float(doc["running"]))


def _largest_change(y: npt.NDArray[np.float64], lag: int, lo: int, hi: int) -> float:
    """Largest ``|y[j + lag] - y[j]|`` for ``j`` in ``[lo, hi)``, a NaN difference
    counting as 0 (``hi > lo``)."""
    best = -1.0
    for j in range(lo, hi):
        d = abs(y[j + lag] - y[j])
        if d != d:
            d = 0.0
        if d > best:
            best = d
    return best


_largest_change_jit = numba.njit(cache=True)(_largest_change)


class ActivityMeter:
    """``feed(state, samples) -> (state, {window start: largest 50-ms change})`` for the
    windows the chunk completes."""

    def __init__(self, sampling_rate: float, window_size: int, lag_s: float = 0.05, *, jit: bool = True) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        self.window_size = window_size
        self.lag = max(1, round(lag_s * sampling_rate))
        self._largest = _largest_change_jit if jit else _largest_change

    def feed(self, state: ActivityState, samples: npt.ArrayLike) -> tuple[ActivityState, dict[int, float]]:
        x = np.asarray(samples, dtype=np.float64).ravel()
        if x.shape[0] == 0:
            return state, {}
        y = np.concatenate([np.asarray(state.tail, dtype=np.float64), x])
        lag = self.lag
        # The change at y[j + lag] - y[j] belongs to the sample at absolute index first + j.
        count = max(y.shape[0] - lag, 0)
        first = state.position + x.shape[0] - count
        end = state.position + x.shape[0]
        out: dict[int, float] = {}
        running = state.running
        window = state.position // self.window_size
        while True:
            w_start, w_end = window * self.window_size, (window + 1) * self.window_size
            lo, hi = max(w_start, first, state.position), min(w_end, end)
            if hi > lo:
                running = max(running, float(self._largest(y, lag, lo - first, hi - first)))
            if w_end > end:
                break
            out[w_start] = running
            running = 0.0
            window += 1
            if w_end == end:
                break
        tail = tuple(y[-self.lag:].tolist())
        return ActivityState(end, tail, running), out
