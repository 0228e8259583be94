"""Ventricular fibrillation / flutter from the ECG waveform, over 4-s windows.

The PhysioNet/CinC Challenge 2015 defines VF/flutter as a "fibrillatory, flutter, or
oscillatory waveform for at least 4 seconds". Such a waveform has no QRS complexes
to count, so it is told apart from the signal itself. Flutter and coarse VF are
close to a sine wave at 3-6 Hz (180-360 /min); a normal ECG, even at a fast rate,
spreads its power over many harmonics of the heart rate and rests on an
isoelectric line between beats. Each window gets three numbers:

- *dominant frequency*: the largest peak of the power spectrum in 0.5-30 Hz;
- *concentration*: the share of that 0.5-30 Hz power within 1 Hz of the peak (the
  spectral idea of Barro S et al., Algorithmic sequential decision-making in the
  frequency domain for life threatening ventricular arrhythmias and imitative
  artefacts: a diagnostic system. J Biomed Eng 11:320-328, 1989);
- *occupancy*: the share of samples farther from the median than 20 % of the
  window's 99th-percentile excursion (the threshold-crossing idea of Arafat MA,
  Chowdhury AW, Hasan MK, A simple time domain algorithm for the detection of
  ventricular fibrillation in electrocardiogram, Signal Image Video Process
  5:1-10, 2011): high for an oscillation, low for narrow QRS complexes;

plus a 5-95 % amplitude floor, so a near-flat line cannot pass. A window is
*fibrillatory* when the dominant frequency lies in 2.75-9 Hz (165-540 /min), the
concentration is at least 0.5, the occupancy at least 0.4 over the window and
0.2 in each of its four 1-s quarters (so the oscillation must last the window: on
synthetic ECG, 3 s of flutter never passes, 5 s always does), the amplitude is
at least 0.1 mV, and each half of the window keeps at least 0.25 of its own power
within 1 Hz of the window's dominant frequency (*half concentration*).

On MIT-BIH record 207 (channel MLII, a window every 1 s) 91 % of
the windows lying wholly inside its six ventricular-flutter episodes are
fibrillatory, and none of the 1638 lying wholly outside them. Over the other 36
records of the database 13 of 64872 windows (0.02 %) are: 9 in record 203
(atrial fibrillation with runs of fast ventricular tachycardia, most of them next to
a run), one in a run of VT in 205, two in noise in 105, one in the paced record 107
(14, 10 of them in 203, before the half concentration; 207 is unchanged by it).
The thresholds were chosen on these records, so the figures are not an
independent test.

The half concentration is there for movement artefact. A burst of electrode motion
of a second or so, at a few hertz and larger than the ECG, can own a 4-s window's
spectrum while the ECG beside it keeps every quarter's occupancy up. The synthetic
bursts of `streams.ecg_synth` (sums of 0.5-8 Hz sinusoids, 0.5-1.5 s, 0.5-1.5 mV, 6
a minute) on sinus rhythm at 110 bpm made 29 fibrillatory windows in 10 records of
300 s without it (the worker raised a false VF alarm in 5 of 5 such records), with half concentrations of
0.06-0.19 (one 0.35); with it, that one window is left. The 110 fibrillatory windows
lying wholly inside record 207's flutter have 0.30 or more (5th percentile 0.42);
0.25 was chosen between.

Windows are ``window_s`` long and start every ``hop_s`` on absolute sample
boundaries, so the result does not depend on how the signal is cut into chunks.
A window with any missing (NaN) sample is not assessed. Samples in mV.

`VfDetector` tests the amplitude and the occupancies first, in the time domain, and
computes the spectrum only for a window that passes them (``screen``): nearly every
window of an organised rhythm fails the occupancy (narrow QRS complexes), so most
windows cost no FFT. The decision is the same. Such a *screened* window reports no
dominant frequency or concentration, and neither does its VF observation. A 4-s
window at 250 Hz of synthetic sinus rhythm took 18 us screened against 33 us
assessed in full, and the VF detector's share of the worker's CPU fell from
0.115-0.125 to 0.085-0.088 ms per patient-second (`bench/worker_cpu.py --patients 300
--seconds 30 --stages`, runs alternated).
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from processors.kernels import pairwise_sum, quantile

__all__ = ["VfSettings", "VfWindow", "VfState", "VfDetector", "vf_window"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class VfSettings:
    window_s: float = 4.0
    hop_s: float = 1.0
    min_dominant_hz: float = 2.75
    max_dominant_hz: float = 9.0
    band_hz: float = 1.0
    """Half-width of the band around the dominant frequency whose power share is the concentration."""
    min_concentration: float = 0.5
    occupancy_level: float = 0.2
    min_occupancy: float = 0.4
    parts: int = 4
    min_part_occupancy: float = 0.2
    """Each of ``parts`` equal stretches of the window must reach this occupancy: the
    oscillation has to last the whole window, not just dominate it."""
    min_amplitude_mv: float = 0.1
    min_half_concentration: float = 0.25
    """Each half of the window must keep this share of its 0.5-30 Hz power within
    ``band_hz`` of the window's dominant frequency: the oscillation fills the window."""


@dataclass(frozen=True, slots=True)
class VfWindow:
    start: int
    """Absolute index of the window's first sample; it ends (exclusive) at ``end``."""
    end: int
    assessed: bool
    """False when samples were missing: the window says nothing either way."""
    fibrillatory: bool
    dominant_hz: float
    concentration: float
    occupancy: float
    part_occupancy: float
    """The lowest occupancy of the window's parts."""
    amplitude_mv: float
    half_concentration: float = 0.0
    """The lower of the two halves' (see the module docstring); computed only for a
    window that passes every other test, 0.0 otherwise."""
    screened: bool = False
    """True when the time-domain tests (amplitude, occupancy) ruled the window out, so
    its spectrum was not computed: ``dominant_hz`` and ``concentration`` are then 0.0."""


@dataclass(frozen=True, slots=True)
class VfState:
    next_start: int = 0
    """Absolute index of the first sample of the next window to assess."""
    buffer: bytes = b""
    """The samples received from ``next_start`` on, as little-endian float64 (NaN kept):
    a worker stores this state for every patient every second, so it stays compact."""

    def samples(self) -> FloatArray:
        return np.frombuffer(self.buffer, dtype="<f8").astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"next_start": self.next_start, "buffer": base64.b64encode(self.buffer).decode()}

    @classmethod
    def from_dict(cls, doc: Any) -> VfState:
        if not isinstance(doc, dict) or not isinstance(doc.get("next_start"), int) or not isinstance(
                doc.get("buffer"), str):
            raise ValueError("VF state must be an object with next_start (int) and buffer (base64 string)")
        try:
            raw = base64.b64decode(doc["buffer"], validate=True)
        except ValueError as e:
            raise ValueError(f"VF state buffer is not base64: {e}") from e
        if len(raw) % 8:
            raise ValueError("VF state buffer is not a whole number of float64 samples")
        return cls(doc["next_start"], raw)


@functools.lru_cache(maxsize=8)
def _grid(n: int, fs: float) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_], float, int, int]:
    """Per window length: centred time axis, Hann taper, FFT frequencies, the 0.5-30 Hz
    band (as a mask and as the index range it is), and ``t @ t``."""
    freqs = np.fft.rfftfreq(n, 1.0 / fs).astype(np.float64)
    t = (np.arange(n) - (n - 1) / 2.0).astype(np.float64)
    band = (freqs >= 0.5) & (freqs <= 30.0)
    where = np.flatnonzero(band)
    b0, b1 = (int(where[0]), int(where[-1]) + 1) if where.size else (0, 0)
    return t, np.hanning(n).astype(np.float64), freqs, band, float(t @ t), b0, b1


def _centre(x: FloatArray, work: FloatArray) -> bool:
    """``work[:n] = x - x.mean()``; False (and nothing written) if ``x`` holds a NaN."""
    n = x.shape[0]
    for i in range(n):
        if x[i] != x[i]:
            return False
    mean = pairwise_sum(x, 0, n) / n
    for i in range(n):
        work[i] = x[i] - mean
    return True


def _shape(work: FloatArray, t: FloatArray, slope: float, taper: FloatArray) -> tuple[float, float]:
    """Remove the trend ``t * slope`` from ``y = work[:n]`` in place and put the tapered
    ``y`` in ``work[2n:3n]``; return the 5-95 % amplitude and the median of ``y``."""
    n = t.shape[0]
    scratch = work[n:2 * n]
    for i in range(n):
        y = work[i] - t[i] * slope
        work[i] = y
        scratch[i] = y
        work[2 * n + i] = y * taper[i]
    amplitude = quantile(scratch, 0.95) - quantile(scratch, 0.05)
    return amplitude, quantile(scratch, 0.5)


def _spectrum(magnitude: FloatArray, freqs: FloatArray, b0: int, b1: int, band_hz: float,
              work: FloatArray) -> tuple[float, float, float]:
    """From ``|rfft|``: total power in the band ``[b0, b1)``, the dominant frequency,
    and the share of the power within ``band_hz`` of it (``work[n:2n]`` as scratch)."""
    n = work.shape[0] // 4
    scratch = work[n:2 * n]
    best = b0
    for i in range(b0, b1):
        p = magnitude[i] * magnitude[i]
        scratch[i - b0] = p
        if p > scratch[best - b0]:
            best = i
    total = pairwise_sum(scratch, 0, b1 - b0)
    if total <= 0.0:
        return total, 0.0, 0.0
    dominant = freqs[best]
    m = 0
    for i in range(b0, b1):
        if abs(freqs[i] - dominant) <= band_hz:
            scratch[m] = magnitude[i] * magnitude[i]
            m += 1
    return total, dominant, pairwise_sum(scratch, 0, m) / total


def _occupancy(work: FloatArray, median: float, level: float, parts: int) -> tuple[float, float]:
    """The share of samples of the detrended ``y = work[:n]`` farther from ``median``
    than ``level`` times the 99th percentile of those distances, over the window and
    (the least) over ``parts`` stretches (the first ``n % parts`` one sample longer,
    as ``np.array_split`` cuts them); ``work[n:2n]`` and ``work[3n:4n]`` as scratch."""
    n = work.shape[0] // 4
    scratch = work[n:2 * n]
    distance = work[3 * n:4 * n]
    for i in range(n):
        distance[i] = abs(work[i] - median)
        scratch[i] = distance[i]
    top = quantile(scratch, 0.99)
    bound = level * top
    size, extra = n // parts, n % parts
    start = 0
    count = 0
    lowest = 2.0
    for k in range(parts):
        length = size + 1 if k < extra else size
        c = 0
        if top > 0:
            for i in range(start, start + length):
                if distance[i] > bound:
                    c += 1
        lowest = min(lowest, c / length)
        count += c
        start += length
    return count / n, lowest


_centre_jit = numba.njit(cache=True)(_centre)
_shape_jit = numba.njit(cache=True)(_shape)
_spectrum_jit = numba.njit(cache=True)(_spectrum)
_occupancy_jit = numba.njit(cache=True)(_occupancy)


def vf_window(x: FloatArray, sampling_rate: float, settings: VfSettings = VfSettings(), start: int = 0, *,
              jit: bool = True, screen: bool = False) -> VfWindow:
    """Assess one window of samples (any length of at least 1 s) on its own.

    ``jit``: the numba kernels (default) or their pure-Python twins. Both give the
    numbers of the numpy formulation they replaced bit for bit (`processors.kernels`):
    mean and linear trend out, then a Hann taper before the FFT; only the FFT, its
    magnitude and the trend's dot product are still numpy's own calls.

    ``screen``: skip the spectrum of a window that the time-domain tests (amplitude,
    occupancy over the window and its parts) already rule out, as `VfDetector` does
    (see `VfWindow.screened`). The decision is the same either way."""
    n = x.shape[0]
    x = np.ascontiguousarray(x, dtype=np.float64)
    work = np.empty(4 * n)
    centre, shape, occupancy, spectrum = ((_centre_jit, _shape_jit, _occupancy_jit, _spectrum_jit) if jit
                                          else (_centre, _shape, _occupancy, _spectrum))
    if n == 0 or not centre(x, work):
        return VfWindow(start, start + n, False, False, 0.0, 0.0, 0.0, 0.0, 0.0)
    t, taper, freqs, _, tt, b0, b1 = _grid(n, float(sampling_rate))
    # Remove the mean and a linear trend (baseline wander), then taper before the FFT.
    slope = float(t @ work[:n]) / tt if n > 1 else 0.0
    amplitude, median = (float(v) for v in shape(work, t, slope, taper))
    occupied, part_occupied = (float(v) for v in occupancy(work, median, settings.occupancy_level,
                                                           max(1, min(settings.parts, n))))
    in_time = (occupied >= settings.min_occupancy and part_occupied >= settings.min_part_occupancy
               and amplitude >= settings.min_amplitude_mv)
    if screen and not in_time:
        return VfWindow(start, start + n, True, False, 0.0, 0.0, occupied, part_occupied, amplitude, screened=True)
    magnitude = np.abs(np.fft.rfft(work[2 * n:3 * n]))
    total, dominant, concentration = (float(v) for v in spectrum(magnitude, freqs, b0, b1, settings.band_hz, work))
    if total <= 0.0:
        return VfWindow(start, start + n, True, False, 0.0, 0.0, 0.0, 0.0, amplitude)
    fibrillatory = (in_time and settings.min_dominant_hz <= dominant <= settings.max_dominant_hz
                    and concentration >= settings.min_concentration)
    half = 0.0
    if fibrillatory:  # (rare: the halves' spectra cost two more FFTs)
        half = min(_band_share(part, float(sampling_rate), dominant, settings.band_hz)
                   for part in np.array_split(x, 2))
        fibrillatory = half >= settings.min_half_concentration
    return VfWindow(start, start + n, True, fibrillatory, dominant, concentration, occupied, part_occupied,
                    amplitude, half)


def _band_share(x: FloatArray, fs: float, centre_hz: float, band_hz: float) -> float:
    """Share of the 0.5-30 Hz power of ``x`` (mean and linear trend out, Hann taper, as
    `vf_window` prepares a window) within ``band_hz`` of ``centre_hz``; 0 for a signal
    with no power there."""
    n = x.shape[0]
    t, taper, freqs, band, tt, _, _ = _grid(n, fs)
    y = x - x.mean()
    y = y - t * (float(t @ y) / tt) if n > 1 else y
    power = np.abs(np.fft.rfft(y * taper)) ** 2
    total = float(power[band].sum())
    return float(power[band & (np.abs(freqs - centre_hz) <= band_hz)].sum()) / total if total > 0 else 0.0


class VfDetector:
    """``feed(state, samples) -> (state, windows)``: the windows completed by the chunk, oldest first.

    Pure: the state (at most one window of samples) is returned, not kept, so it
    can be stored with the patient (``VfState.to_dict``).
    """

    def __init__(self, sampling_rate: float, settings: VfSettings | None = None) -> None:
        if not 125 <= sampling_rate <= 1000:
            raise ValueError(f"sampling_rate must be 125-1000 Hz, got {sampling_rate}")
        self.settings = settings or VfSettings()
        if not 0 < self.settings.hop_s <= self.settings.window_s:
            raise ValueError("hop_s must be > 0 and <= window_s")
        self.sampling_rate = float(sampling_rate)
        self.size = round(self.settings.window_s * sampling_rate)
        self.hop = round(self.settings.hop_s * sampling_rate)

    def feed(self, state: VfState, samples: npt.ArrayLike) -> tuple[VfState, list[VfWindow]]:
        # The stored samples are read in place (no copy before the concatenation), and
        # the rest written as they are when the machine is little-endian already.
        x = np.concatenate([np.frombuffer(state.buffer, dtype="<f8"), np.asarray(samples, dtype=np.float64).ravel()])
        start, offset, out = state.next_start, 0, []
        while x.shape[0] - offset >= self.size:
            out.append(vf_window(x[offset:offset + self.size], self.sampling_rate, self.settings, start, screen=True))
            offset += self.hop
            start += self.hop
        return VfState(start, np.ascontiguousarray(x[offset:], dtype="<f8").tobytes()), out
