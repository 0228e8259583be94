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
synthetic ECG, 3 s of flutter never passes, 5 s always does), and the amplitude is
at least 0.1 mV. On MIT-BIH record 207 (channel MLII, a window every 1 s) 91 % of
the windows lying wholly inside its six ventricular-flutter episodes are
fibrillatory, and none of the 1638 lying wholly outside them. Over the other 36
records of the database 14 of 64872 windows (0.02 %) are: 10 in record 203
(atrial fibrillation with runs of fast ventricular tachycardia, 6 of them next to a
run), one in a run of VT in 205, two in noise in 105, one in the paced record 107.
The thresholds were chosen on these records, so the figures are not an
independent test.

Windows are ``window_s`` long and start every ``hop_s`` on absolute sample
boundaries, so the result does not depend on how the signal is cut into chunks.
A window with any missing (NaN) sample is not assessed. Samples in mV.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

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
def _grid(n: int, fs: float) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Per window length: centred time axis, Hann taper, FFT frequencies, the 0.5-30 Hz band."""
    freqs = np.fft.rfftfreq(n, 1.0 / fs).astype(np.float64)
    t = (np.arange(n) - (n - 1) / 2.0).astype(np.float64)
    return t, np.hanning(n).astype(np.float64), freqs, (freqs >= 0.5) & (freqs <= 30.0)


def _quantile(a: FloatArray, q: float) -> float:
    """``np.percentile(a, 100 q)`` (linear interpolation) by partial sorting: the same
    value, a fraction of the cost on the short windows assessed every second."""
    pos = q * (a.shape[0] - 1)
    lo = int(pos)
    hi = min(lo + 1, a.shape[0] - 1)
    part = np.partition(a, (lo, hi))
    return float(part[lo] + (part[hi] - part[lo]) * (pos - lo))


def vf_window(x: FloatArray, sampling_rate: float, settings: VfSettings = VfSettings(), start: int = 0) -> VfWindow:
    """Assess one window of samples (any length of at least 1 s) on its own."""
    n = x.shape[0]
    if n == 0 or np.isnan(x).any():
        return VfWindow(start, start + n, False, False, 0.0, 0.0, 0.0, 0.0, 0.0)
    # Remove the mean and a linear trend (baseline wander), then taper before the FFT.
    t, taper, freqs, band = _grid(n, float(sampling_rate))
    y = x - x.mean()
    y = y - t * (float(t @ y) / float(t @ t)) if n > 1 else y
    amplitude = _quantile(y, 0.95) - _quantile(y, 0.05)
    power = np.abs(np.fft.rfft(y * taper)) ** 2
    total = float(power[band].sum())
    if total <= 0.0:
        return VfWindow(start, start + n, True, False, 0.0, 0.0, 0.0, 0.0, amplitude)
    dominant = float(freqs[band][int(np.argmax(power[band]))])
    concentration = float(power[band & (np.abs(freqs - dominant) <= settings.band_hz)].sum()) / total
    excursion = np.abs(y - _quantile(y, 0.5))
    top = _quantile(excursion, 0.99)
    above = excursion > settings.occupancy_level * top if top > 0 else np.zeros(n, dtype=bool)
    occupancy = float(above.mean())
    parts = max(1, min(settings.parts, n))
    if n % parts == 0:
        part_occupancy = float(above.reshape(parts, -1).mean(axis=1).min())
    else:
        part_occupancy = min(float(part.mean()) for part in np.array_split(above, parts))
    fibrillatory = (settings.min_dominant_hz <= dominant <= settings.max_dominant_hz
                    and concentration >= settings.min_concentration and occupancy >= settings.min_occupancy
                    and part_occupancy >= settings.min_part_occupancy and amplitude >= settings.min_amplitude_mv)
    return VfWindow(start, start + n, True, fibrillatory, dominant, concentration, occupancy, part_occupancy,
                    amplitude)


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
        x = np.concatenate([state.samples(), np.asarray(samples, dtype=np.float64).ravel()])
        start, offset, out = state.next_start, 0, []
        while x.shape[0] - offset >= self.size:
            out.append(vf_window(x[offset:offset + self.size], self.sampling_rate, self.settings, start))
            offset += self.hop
            start += self.hop
        return VfState(start, x[offset:].astype("<f8").tobytes()), out
