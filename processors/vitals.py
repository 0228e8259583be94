"""Vital-sign numerics (about 1 Hz): artifact rejection, robust smoothing, trends.

One `VitalSignFilter` per patient and parameter. Each sample is either accepted
or rejected with a reason:

- ``dropout``: no value (None or NaN), e.g. a probe off or a missed reading;
- ``impossible``: outside what the body can produce (`LIMITS`);
- ``jump``: further from the last accepted value than the parameter can move in
  the time between them (`LIMITS`, per second), e.g. motion on an SpO2 probe. A
  jump that holds for ``confirm`` consecutive samples is a real change, not an
  artifact: those samples are then accepted, and the level follows.

``smoothed`` is the median of the last ``window`` accepted values (robust to a
single outlier that slipped through). `trend(minutes)` is the least-squares slope,
in units per minute, over the accepted samples of the last 5 or 15 minutes, or None
while fewer than 10 samples cover at least half of that span.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["LIMITS", "VitalSample", "VitalSignFilter"]

# parameter -> (lowest possible, highest possible, largest change per second of a real signal)
LIMITS: dict[str, tuple[float, float, float]] = {
    "hr": (20.0, 300.0, 20.0),      # bpm
    "spo2": (50.0, 100.0, 3.0),     # %
    "rr": (3.0, 70.0, 8.0),         # breaths/min
    "sbp": (40.0, 300.0, 30.0),     # mmHg
    "dbp": (20.0, 200.0, 25.0),     # mmHg
    "temp": (30.0, 43.0, 0.2),      # °C
}


@dataclass(frozen=True, slots=True)
class VitalSample:
    t: float
    """Seconds (device time)."""
    value: float | None
    accepted: bool
    reason: str | None
    """Why it was rejected: ``dropout``, ``impossible`` or ``jump``; None when accepted."""
    smoothed: float | None


class VitalSignFilter:
    def __init__(self, parameter: str, *, window: int = 5, confirm: int = 3) -> None:
        if parameter not in LIMITS:
            raise ValueError(f"unknown parameter {parameter!r}; expected one of {', '.join(LIMITS)}")
        if window < 1 or confirm < 1:
            raise ValueError("window and confirm must be >= 1")
        self.parameter = parameter
        self._lo, self._hi, self._step = LIMITS[parameter]
        self._window = window
        self._confirm = confirm
        self._last: tuple[float, float] | None = None   # last accepted (t, value)
        self._pending: list[tuple[float, float]] = []    # consecutive jump samples
        self._recent: deque[float] = deque(maxlen=window)
        self._history: deque[tuple[float, float]] = deque()  # accepted, last 15 minutes

    def feed(self, t: float, value: float | None) -> VitalSample:
        if self._last is not None and t <= self._last[0]:
            raise ValueError(f"time must increase: {t} after {self._last[0]}")
        if value is None or math.isnan(value):
            return self._reject(t, None, "dropout")
        if not self._lo <= value <= self._hi:
            return self._reject(t, value, "impossible")
        if self._last is not None and abs(value - self._last[1]) > self._step * max(t - self._last[0], 1.0):
            pending = self._pending
            if pending and abs(value - pending[-1][1]) > self._step * max(t - pending[-1][0], 1.0):
                pending.clear()  # the artifact itself is jumping around: start counting again
            pending.append((t, value))
            if len(pending) < self._confirm:
                return self._reject(t, value, "jump", keep_pending=True)
            for pt, pv in pending[:-1]:
                self._accept(pt, pv)
            pending.clear()
        return self._accept(t, value)

    def _reject(self, t: float, value: float | None, reason: str, keep_pending: bool = False) -> VitalSample:
        if not keep_pending:
            self._pending.clear()
        return VitalSample(t, value, False, reason, self.smoothed)

    def _accept(self, t: float, value: float) -> VitalSample:
        self._pending.clear()
        self._last = (t, value)
        self._recent.append(value)
        self._history.append((t, value))
        while self._history and t - self._history[0][0] > 15 * 60:
            self._history.popleft()
        return VitalSample(t, value, True, None, self.smoothed)

    @property
    def smoothed(self) -> float | None:
        return float(np.median(self._recent)) if self._recent else None

    def trend(self, minutes: float) -> float | None:
        """Slope in units per minute over the last ``minutes`` (5 or 15 typically)."""
        if not self._history:
            return None
        end = self._history[-1][0]
        points = [(t, v) for t, v in self._history if end - t <= minutes * 60]
        if len(points) < 10 or points[-1][0] - points[0][0] < minutes * 30:
            return None
        ts = np.array([p[0] for p in points]) / 60.0
        vs = np.array([p[1] for p in points])
        ts -= ts.mean()
        return float((ts * (vs - vs.mean())).sum() / (ts * ts).sum())
