"""The streaming ECG chain the worker runs per patient and lead: R peaks, signal
quality, RR/HR/HRV, fed in chunks of any size.

Each beat is released together with the quality of the signal window it lies in,
so it waits until that window (``window_s``, 2 s by default) is complete. Beats in
windows that are not ``ok`` (noise, flat, saturated, leads-off) are still reported,
marked with that label, but are not *usable*: they do not enter RR/HR/HRV, and the
alarm logic must not count them. This is how a monitor keeps noise from becoming
false beats and false alarms; the technical condition (noise, leads-off) is raised
from the quality windows instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from processors.qrs import QrsDetector
from processors.rr import HrvMetrics, RrAnalyzer
from processors.sqi import QualityWindow, SignalQuality

__all__ = ["Beat", "EcgUpdate", "EcgAnalyzer", "warm_up"]


@dataclass(frozen=True, slots=True)
class Beat:
    sample: int
    """Absolute 0-based index of the R peak."""
    quality: str
    """Label of the quality window it lies in; only ``ok`` beats are usable."""

    @property
    def usable(self) -> bool:
        return self.quality == "ok"


@dataclass(frozen=True, slots=True)
class EcgUpdate:
    beats: list[Beat]
    windows: list[QualityWindow]
    hrv: HrvMetrics


class EcgAnalyzer:
    """``feed(samples)`` -> `EcgUpdate` with the beats and quality windows completed
    by that chunk. Samples in mV; ``sampling_rate`` in Hz (125-1000)."""

    def __init__(self, sampling_rate: float, *, window_s: float = 2.0, hrv_window_s: float = 300.0,
                 jit: bool = True) -> None:
        self._detector = QrsDetector(sampling_rate, jit=jit)
        self._quality = SignalQuality(sampling_rate, window_s=window_s)
        self._rr = RrAnalyzer(sampling_rate, window_s=hrv_window_s)
        self._size = self._quality.window_size
        self._pending: deque[int] = deque()  # peaks waiting for their window's label
        self._labels: deque[str] = deque()   # labels of windows first_window, first_window + 1, ...
        self._first_window = 0

    def feed(self, samples: npt.ArrayLike) -> EcgUpdate:
        x = np.asarray(samples, dtype=np.float64).ravel()
        self._pending.extend(self._detector.feed(x).tolist())
        windows = self._quality.feed(x)
        self._labels.extend(w.label for w in windows)
        beats: list[Beat] = []
        while self._pending:
            k = self._pending[0] // self._size  # windows sit on absolute multiples of their size
            if k >= self._first_window + len(self._labels):
                break  # its window is not complete yet
            beats.append(Beat(self._pending.popleft(), self._labels[k - self._first_window]))
            # Peaks only increase, so windows before this one are never needed again.
            while self._first_window < k:
                self._labels.popleft()
                self._first_window += 1
        usable = [b.sample for b in beats if b.usable]
        if usable:
            self._rr.add_peaks(usable)
        return EcgUpdate(beats, windows, self._rr.metrics())


def warm_up() -> None:
    """Compile (or load from the numba cache) the kernels now, so a worker's first
    real chunk is not paying for it. Call once at process start."""
    rng = np.random.default_rng(0)
    EcgAnalyzer(250).feed(rng.normal(0, 0.1, 1000))
