"""ECG signal quality, per window: real ECG told apart from flat line, clipping,
leads-off and noise.

Samples are buffered into windows of ``window_s`` seconds on absolute sample
boundaries, so the labels do not depend on chunking. Each full window gets one
`QualityWindow`:

- ``leads_off``: over half the samples missing (NaN), or a flat signal parked far
  from zero (an open input drifting to a rail);
- ``flat``: peak-to-peak below ``flat_mv``;
- ``saturated``: at least ``clip_fraction`` of the samples sit at the window's
  extreme values in runs of 3 or more (the amplifier or ADC clipping);
- ``noise``: the indices below say it is not ECG;
- ``ok``.

Indices (Li Q, Mark RG, Clifford GD. Robust heart rate estimation from multiple
asynchronous noisy sources using signal quality indices and a Kalman filter.
Physiol Meas 29(1):15-32, 2008; Clifford GD et al. Physiol Meas 33:1419-1433, 2012):

- kSQI, kurtosis: ECG is peaky (> 5); Gaussian noise is about 3;
- pSQI, power in 5-15 Hz over 5-40 Hz: the QRS band's share, 0.5-0.8 for clean
  narrow-complex ECG; muscle noise pulls it down. Only the lower bound is used: wide
  complexes (bundle-branch block, paced beats) push it towards 1, and an upper bound
  rejected whole MIT-BIH records of them (109, 207: 70-98 % of windows);
- basSQI, 1 - power below 1 Hz over power below 40 Hz: low under baseline wander.

A window is ``noise`` when kSQI < ``min_kurtosis``, or pSQI < ``min_psqi``, or
basSQI < ``min_bassqi``. With the defaults, 94.8 % of the MIT-BIH Arrhythmia
Database's 2-s windows are ``ok``; in the noisy segments of nstdb 118e12 / 118e00 /
118e_6 (electrode motion at 12, 0, -6 dB) 41 / 62 / 63 % are flagged, in their clean
segments 1 %. Paced rhythms often fall below the kurtosis bound. Samples are in mV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from processors.kernels import pairwise_sum

__all__ = ["QualityWindow", "SignalQuality"]


@dataclass(frozen=True, slots=True)
class QualityWindow:
    start: int
    """Absolute index of the window's first sample."""
    label: str
    kurtosis: float
    psqi: float
    bassqi: float


def _moments(w: npt.NDArray[np.float64], taper: npt.NDArray[np.float64], tapered: npt.NDArray[np.float64]
             ) -> tuple[int, float, float, float, float]:
    """Everything about a window but its spectrum, in one pass or two: ``(NaN count,
    peak-to-peak, clipped fraction, variance, mean fourth power)`` of ``w - w.mean()``,
    filling ``tapered`` with ``(w - w.mean()) * taper``. With any NaN only the count is
    meaningful.

    The same numbers as the numpy expressions this replaced, to the bit, except the
    fourth powers: ``(c * c) * (c * c)``, where numpy's ``c**4`` goes through a
    ``pow`` whose last bit depends on the SIMD loop numpy picks for the CPU, and which
    took most of the quality index's time. The kurtosis moves by a unit or two in the
    last place (relative 1e-16 on MIT-BIH and nstdb windows); a label could only
    change for a window within about 1e-15 of ``min_kurtosis``."""
    n = w.shape[0]
    missing = 0
    for i in range(n):
        if w[i] != w[i]:
            missing += 1
    if missing:
        return missing, 0.0, 0.0, 0.0, 0.0
    top = w[0]
    bottom = w[0]
    for i in range(1, n):
        if w[i] > top:
            top = w[i]
        if w[i] < bottom:
            bottom = w[i]
    # Share of samples at the window's max or min in runs of at least 3.
    tolerance = 1e-9 * max(abs(top), abs(bottom), 1.0)
    high, low = top - tolerance, bottom + tolerance
    clipped = 0
    run = 0
    for i in range(n):
        if w[i] >= high or w[i] <= low:
            run += 1
        else:
            if run >= 3:
                clipped += run
            run = 0
    if run >= 3:
        clipped += run
    mean = pairwise_sum(w, 0, n) / n
    squares = np.empty(n)
    fourth = np.empty(n)
    for i in range(n):
        c = w[i] - mean
        tapered[i] = c * taper[i]
        squares[i] = c * c
        fourth[i] = squares[i] * squares[i]
    return 0, top - bottom, clipped / n, pairwise_sum(squares, 0, n) / n, pairwise_sum(fourth, 0, n) / n


def _band_ratios(magnitude: npt.NDArray[np.float64], bands: npt.NDArray[np.int64]) -> tuple[float, float]:
    """pSQI and basSQI from ``|rfft|``; ``bands`` holds the index ranges (start, stop) of
    5-15 Hz, 5-40 Hz, below 1 Hz and up to 40 Hz."""
    power = np.empty(magnitude.shape[0])
    for i in range(magnitude.shape[0]):
        power[i] = magnitude[i] * magnitude[i]
    qrs = pairwise_sum(power, bands[0], bands[1] - bands[0])
    wide = pairwise_sum(power, bands[2], bands[3] - bands[2])
    low = pairwise_sum(power, bands[4], bands[5] - bands[4])
    every = pairwise_sum(power, bands[6], bands[7] - bands[6])
    return qrs / max(wide, 1e-30), 1.0 - low / max(every, 1e-30)


_moments_jit = numba.njit(cache=True)(_moments)
_band_ratios_jit = numba.njit(cache=True)(_band_ratios)


def _index_range(mask: npt.NDArray[np.bool_]) -> tuple[int, int]:
    where = np.flatnonzero(mask)
    if where.size == 0:
        return 0, 0
    if where[-1] - where[0] + 1 != where.size:
        raise ValueError("a frequency band must be contiguous")
    return int(where[0]), int(where[-1]) + 1


class SignalQuality:
    def __init__(
        self,
        sampling_rate: float,
        *,
        window_s: float = 2.0,
        flat_mv: float = 0.05,
        clip_fraction: float = 0.05,
        min_kurtosis: float = 4.0,
        min_psqi: float = 0.3,
        min_bassqi: float = 0.5,
        jit: bool = True,
    ) -> None:
        if not 125 <= sampling_rate <= 1000:
            raise ValueError(f"sampling_rate must be 125-1000 Hz, got {sampling_rate}")
        if window_s < 1.0:
            raise ValueError(f"window_s must be >= 1 s, got {window_s}")
        self._fs = float(sampling_rate)
        self._size = round(window_s * sampling_rate)
        self._flat = flat_mv
        self._clip = clip_fraction
        self._min_kurtosis = min_kurtosis
        self._min_psqi = min_psqi
        self._min_bassqi = min_bassqi
        self._buffer = np.empty(0)
        self._start = 0
        freqs = np.fft.rfftfreq(self._size, 1.0 / self._fs)
        self._bands = np.array([*_index_range((freqs >= 5) & (freqs <= 15)), *_index_range((freqs >= 5) & (freqs <= 40)),
                                *_index_range(freqs < 1), *_index_range(freqs <= 40)], dtype=np.int64)
        self._taper = np.hanning(self._size)
        self._moments = _moments_jit if jit else _moments
        self._band_ratios = _band_ratios_jit if jit else _band_ratios

    @property
    def window_size(self) -> int:
        """Samples per window; window k covers samples [k * size, (k + 1) * size)."""
        return self._size

    def get_state(self) -> dict[str, Any]:
        return {"buffer": self._buffer.copy(), "start": self._start}

    def set_state(self, state: dict[str, Any]) -> None:
        self._buffer = np.asarray(state["buffer"], dtype=np.float64).copy()
        self._start = int(state["start"])

    def feed(self, samples: npt.ArrayLike) -> list[QualityWindow]:
        """Add samples; return the windows they complete, oldest first."""
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, dtype=np.float64).ravel()])
        out = []
        while self._buffer.shape[0] >= self._size:
            window, self._buffer = self._buffer[: self._size], self._buffer[self._size:]
            out.append(self._assess(np.ascontiguousarray(window)))
            self._start += self._size
        return out

    def _assess(self, w: npt.NDArray[np.float64]) -> QualityWindow:
        tapered = np.empty(self._size)
        missing, ptp, clipped, variance, fourth = self._moments(w, self._taper, tapered)
        if missing:
            if missing / w.shape[0] > 0.5:
                return QualityWindow(self._start, "leads_off", 0.0, 0.0, 0.0)
            nan = np.isnan(w)
            w = np.where(nan, np.nanmedian(w), w)
            missing, ptp, clipped, variance, fourth = self._moments(w, self._taper, tapered)
        if ptp < self._flat:
            label = "leads_off" if abs(float(np.median(w))) > 5.0 else "flat"
            return QualityWindow(self._start, label, 0.0, 0.0, 0.0)
        if clipped >= self._clip:
            return QualityWindow(self._start, "saturated", 0.0, 0.0, 0.0)
        kurtosis = float(float(fourth) / float(variance) ** 2)
        psqi, bassqi = self._band_ratios(np.abs(np.fft.rfft(tapered)), self._bands)
        psqi, bassqi = float(psqi), float(bassqi)
        noisy = kurtosis < self._min_kurtosis or psqi < self._min_psqi or bassqi < self._min_bassqi
        return QualityWindow(self._start, "noise" if noisy else "ok", kurtosis, psqi, bassqi)
