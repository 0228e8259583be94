"""RR intervals, heart rate and heart-rate variability from a stream of R peaks.

Feed R-peak sample indices as the detector confirms them (`add_peaks`); read the
current figures with `metrics()`. Only normal-to-normal (NN) intervals enter the
statistics: an RR interval outside 300-2000 ms, or differing from the median of
the previous five accepted intervals by more than 20 %, is taken for an ectopic or
missed beat and left out (a common editing rule; Task Force of the ESC/NASPE,
Circulation 93:1043-1065, 1996, asks for NN intervals only).

HRV over the last ``window_s`` seconds of NN intervals (5 minutes by default, the
Task Force's short-term recording):

- SDNN: standard deviation of NN intervals, ms;
- RMSSD: root mean square of successive NN differences, ms;
- pNN50: share of successive NN differences above 50 ms, %.

Heart rate is 60 000 / median of the last 8 NN intervals (robust to one outlier).
Pure: no I/O; the result depends only on the peaks, not on how they arrived.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["RrAnalyzer", "HrvMetrics"]


@dataclass(frozen=True, slots=True)
class HrvMetrics:
    heart_rate: float | None
    """bpm, or None before two NN intervals."""
    sdnn_ms: float | None
    rmssd_ms: float | None
    pnn50: float | None
    """%, or None before three NN intervals in the window."""
    nn_count: int
    rejected_count: int


class RrAnalyzer:
    def __init__(self, sampling_rate: float, *, window_s: float = 300.0) -> None:
        if sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be > 0, got {sampling_rate}")
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._fs = float(sampling_rate)
        self._window_ms = window_s * 1000.0
        self._last_peak: int | None = None
        self._recent: deque[float] = deque(maxlen=5)   # accepted RR, for the ectopic rule
        # Per NN interval, in three parallel deques (numpy reads each at once, where a
        # deque of tuples had to be unzipped first): the time of its end in ms, its
        # length in ms, and whether it directly follows the previous NN interval.
        self._nn_at: deque[float] = deque()
        self._nn: deque[float] = deque()
        self._nn_adjacent: deque[bool] = deque()
        self._rejected = 0
        self._previous_was_nn = False
        self._metrics: HrvMetrics | None = None  # cached until the next interval arrives

    def get_state(self) -> dict[str, Any]:
        return {
            "last_peak": self._last_peak, "rejected": self._rejected, "previous_was_nn": self._previous_was_nn,
            "recent": np.array(self._recent, dtype=np.float64), "nn_at": np.array(self._nn_at, dtype=np.float64),
            "nn": np.array(self._nn, dtype=np.float64), "nn_adjacent": np.array(self._nn_adjacent, dtype=bool),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._last_peak = None if state["last_peak"] is None else int(state["last_peak"])
        self._rejected = int(state["rejected"])
        self._previous_was_nn = bool(state["previous_was_nn"])
        self._recent = deque(state["recent"].tolist(), maxlen=self._recent.maxlen)
        self._metrics = None
        at, nn, adjacent = state["nn_at"].tolist(), state["nn"].tolist(), state["nn_adjacent"].tolist()
        if not len(at) == len(nn) == len(adjacent):
            raise ValueError(f"RR state: {len(at)} times, {len(nn)} intervals, {len(adjacent)} adjacency flags")
        self._nn_at, self._nn, self._nn_adjacent = deque(at), deque(nn), deque(adjacent)

    def add_peaks(self, peaks: npt.ArrayLike) -> None:
        """Add R-peak sample indices (increasing, as `QrsDetector.feed` returns them)."""
        for peak in np.asarray(peaks, dtype=np.int64).ravel().tolist():
            if self._last_peak is not None:
                if peak <= self._last_peak:
                    raise ValueError(f"peaks must increase: {peak} after {self._last_peak}")
                self._add_interval((peak - self._last_peak) / self._fs * 1000.0, peak / self._fs * 1000.0)
            self._last_peak = peak

    def _add_interval(self, rr_ms: float, at_ms: float) -> None:
        self._metrics = None
        in_range = 300.0 <= rr_ms <= 2000.0
        normal = in_range
        if in_range and len(self._recent) >= 3:
            # np.median of 3-5 numbers, without numpy's overhead (same value: the middle
            # one, or the mean of the middle two).
            ordered = sorted(self._recent)
            half = len(ordered) // 2
            median = ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2.0
            normal = abs(rr_ms - median) <= 0.2 * median
        if in_range:
            # Even a rejected interval moves the reference, so that a lasting change of
            # rhythm is not rejected forever.
            self._recent.append(rr_ms)
        if normal:
            self._nn_at.append(at_ms)
            self._nn.append(rr_ms)
            self._nn_adjacent.append(self._previous_was_nn)
        else:
            self._rejected += 1
        self._previous_was_nn = normal
        while self._nn_at and at_ms - self._nn_at[0] > self._window_ms:
            self._nn_at.popleft()
            self._nn.popleft()
            self._nn_adjacent.popleft()

    def metrics(self) -> HrvMetrics:
        if self._metrics is None:
            self._metrics = self._compute()
        return self._metrics

    def _compute(self) -> HrvMetrics:
        nn = np.array(self._nn, dtype=np.float64)
        adjacent = np.array(self._nn_adjacent, dtype=bool)
        hr = None
        if nn.size >= 2:
            # np.median of the last 8, without numpy's overhead (the same value).
            last = sorted(nn[-8:].tolist())
            half = len(last) // 2
            hr = 60_000.0 / (last[half] if len(last) % 2 else (last[half - 1] + last[half]) / 2.0)
        # Successive differences only between NN intervals that really follow each other.
        diffs = np.diff(nn)[adjacent[1:]]
        if nn.size < 3 or diffs.size < 2:
            return HrvMetrics(hr, None, None, None, int(nn.size), self._rejected)
        return HrvMetrics(
            heart_rate=hr,
            sdnn_ms=float(np.std(nn, ddof=1)),
            rmssd_ms=float(np.sqrt(np.mean(diffs * diffs))),
            pnn50=float(np.mean(np.abs(diffs) > 50.0) * 100.0),
            nn_count=int(nn.size),
            rejected_count=self._rejected,
        )
