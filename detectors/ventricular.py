"""Evidence for and against ventricular tachycardia in the seconds before an alarm.

A bedside monitor's VT alarm comes with a snapshot of the waveforms that led to it.
This module turns each waveform into evidence; `detectors.vt_triage` weighs it.

ECG, per lead (`ecg_ventricular_evidence`): VT is a run of beats that do not look
like the patient's own conducted beats and that look like each other (one ectopic
focus gives one morphology). So:

1. a *template* is the median of the beats in a reference stretch just before the
   alarm window (the patient's baseline, learnt from their own record, not from a
   population); a lead whose reference beats do not agree with each other has no
   template and gives no evidence either way;
2. each beat in the alarm window is *normal* when it correlates with the template
   (allowing a small shift, because the R-peak fiducial may move between R and S)
   at `same_morphology` or more with an amplitude within a factor of two;
3. the other beats are *abnormal*; the largest group of abnormal beats that all
   correlate with one of them at `same_morphology_ectopic` or more is the
   *ectopic cluster*. Noise and movement artefact make abnormal beats too, but they
   do not repeat one shape, so the cluster stays a small share of them.

The R peaks come from Vigil's own streaming detector (`processors.qrs.ecg_findpeaks`)
run over the whole snapshot, so its thresholds have settled before the window.

Pulse, per pressure or pleth channel (`pulse_evidence`): the pulse amplitude in the
alarm window relative to the reference stretch. VT with a pulse is still VT, so the
triage only uses this when no ECG lead can be read.

The snapshot is analysed as a whole (zero-phase filtering), not as a stream: the
question is asked once, about samples that have all arrived.

References: Clifford GD et al. The PhysioNet/Computing in Cardiology Challenge 2015:
reducing false arrhythmia alarms in the ICU. Computing in Cardiology 42:273-276 (2015).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal as sps

from processors.qrs import ecg_findpeaks

__all__ = ["EvidenceConfig", "LeadEvidence", "PulseEvidence", "ecg_ventricular_evidence", "pulse_evidence"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    """Fixed, physiologically chosen settings (seconds, Hz, correlation).

    None of these was fitted to alarm records; the triage thresholds that were are
    in `detectors.vt_triage.TriageParams`.
    """

    window_s: float = 16.0
    """The 2015 challenge: the event behind a VT alarm lies in the 16 s before it."""
    reference_s: float = 84.0
    """Baseline beats are taken from this long a stretch just before the window."""
    before_r_s: float = 0.12
    after_r_s: float = 0.18
    """A beat is compared over R - 120 ms .. R + 180 ms: the QRS, wide or not, and the ST onset."""
    max_shift_s: float = 0.04
    """Fiducial tolerance when two beats are compared."""
    band_hz: tuple[float, float] = (0.5, 40.0)
    """Baseline wander and mains/muscle noise out, QRS shape kept."""
    same_morphology: float = 0.85
    """Correlation with the template above which a beat is the patient's normal beat."""
    same_morphology_ectopic: float = 0.8
    """Correlation above which two abnormal beats share one (ectopic) shape."""
    min_template_beats: int = 10

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.reference_s <= 0:
            raise ValueError(f"window_s and reference_s must be > 0, got {self.window_s}, {self.reference_s}")
        lo, hi = self.band_hz
        if not 0 < lo < hi:
            raise ValueError(f"band_hz must be 0 < low < high, got {self.band_hz}")
        for name in ("same_morphology", "same_morphology_ectopic"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"{name} is a correlation, -1..1, got {value}")


@dataclass(frozen=True, slots=True)
class LeadEvidence:
    """What one ECG lead says about the alarm window."""

    lead: str
    usable: bool
    reason: str
    """Why the lead is not usable, or a one-line summary when it is."""
    beats: int = 0
    """Beats detected in the window."""
    abnormal: int = 0
    """... of which do not match the patient's template."""
    cluster: int = 0
    """Size of the largest group of abnormal beats with one shape."""
    fastest_bpm: float = 0.0
    """Highest rate over 4 consecutive RR intervals in the window (5 beats, as in the VT definition)."""

    @property
    def consistency(self) -> float:
        """Share of the abnormal beats in the ectopic cluster (0 when there are none)."""
        return self.cluster / self.abnormal if self.abnormal else 0.0


@dataclass(frozen=True, slots=True)
class PulseEvidence:
    """Pulse amplitude in the alarm window, as a fraction of the reference stretch's."""

    channel: str
    usable: bool
    min_ratio: float = 0.0
    max_ratio: float = 0.0


def _fill_nan(x: FloatArray) -> tuple[FloatArray, float]:
    """Interpolate over missing samples; return the signal and the share that was missing."""
    missing = np.isnan(x)
    share = float(missing.mean()) if x.size else 1.0
    if share in (0.0, 1.0):
        return (np.zeros_like(x) if share == 1.0 else x), share
    out = x.copy()
    out[missing] = np.interp(np.flatnonzero(missing), np.flatnonzero(~missing), x[~missing])
    return out, share


def _normalised_segments(y: FloatArray, peaks: npt.NDArray[np.int64], before: int, after: int,
                         shift: int) -> tuple[FloatArray, FloatArray]:
    """Beats cut at every shift in -shift..shift: (zero-mean unit-norm, raw), shape (beats, shifts, samples)."""
    windows = sliding_window_view(y, before + after)
    starts = peaks[:, None] - before + np.arange(-shift, shift + 1)[None, :]
    raw = windows[starts]
    centred = raw - raw.mean(axis=2, keepdims=True)
    norm = np.linalg.norm(centred, axis=2, keepdims=True)
    return centred / np.maximum(norm, 1e-12), raw


def _template(y: FloatArray, peaks: npt.NDArray[np.int64], before: int, after: int, shift: int,
              cfg: EvidenceConfig) -> FloatArray | None:
    """Median beat of the reference stretch, re-aligned on itself; None when the beats disagree."""
    if peaks.size < cfg.min_template_beats:
        return None
    z, raw = _normalised_segments(y, peaks, before, after, shift)
    first = np.median(raw[:, shift], axis=0)
    first = first - first.mean()
    first /= max(float(np.linalg.norm(first)), 1e-12)
    corr = z @ first                                   # (beats, shifts)
    best = corr.argmax(axis=1)
    agree = corr.max(axis=1) >= cfg.same_morphology_ectopic
    if agree.sum() < max(cfg.min_template_beats, 0.3 * peaks.size):
        return None
    aligned = raw[np.arange(peaks.size), best][agree]
    tmpl: FloatArray = np.median(aligned, axis=0)
    centred: FloatArray = tmpl - tmpl.mean()
    return centred


def ecg_ventricular_evidence(ecg: npt.ArrayLike, *, sampling_rate: float, lead: str = "ECG",
                             config: EvidenceConfig | None = None) -> LeadEvidence:
    """Ectopic-beat evidence in the last ``config.window_s`` seconds of one ECG lead.

    Parameters
    ----------
    ecg : array_like
        One lead, any units, ending at the alarm; NaN marks missing samples. It must
        reach back ``window_s + reference_s`` seconds (100 s by default) to learn
        the patient's normal beat.
    sampling_rate : float
        Hz.
    lead : str
        Name carried into the result.
    """
    cfg = config or EvidenceConfig()
    fs = float(sampling_rate)
    x, missing = _fill_nan(np.asarray(ecg, dtype=np.float64).ravel())
    n = x.shape[0]
    w0 = n - round(cfg.window_s * fs)
    r0 = w0 - round(cfg.reference_s * fs)
    if r0 < 0:
        return LeadEvidence(lead, False, f"snapshot shorter than {cfg.window_s + cfg.reference_s:g} s")
    window_missing = float(np.isnan(np.asarray(ecg, dtype=np.float64).ravel()[w0:]).mean())
    if missing == 1.0 or window_missing > 0.5:
        return LeadEvidence(lead, False, f"{window_missing:.0%} of the window missing")
    if float(np.ptp(x[w0:])) == 0.0:
        return LeadEvidence(lead, False, "flat line in the window")
    sos = sps.butter(2, cfg.band_hz, btype="bandpass", fs=fs, output="sos")
    y: FloatArray = sps.sosfiltfilt(sos, x)
    before, after = round(cfg.before_r_s * fs), round(cfg.after_r_s * fs)
    shift = round(cfg.max_shift_s * fs)
    peaks = ecg_findpeaks(x, sampling_rate=fs)
    peaks = peaks[(peaks - before - shift >= 0) & (peaks + after + shift <= n)]
    tmpl = _template(y, peaks[(peaks >= r0) & (peaks < w0)], before, after, shift, cfg)
    if tmpl is None:
        return LeadEvidence(lead, False, "no stable baseline beat in the reference stretch")
    in_window = peaks[peaks >= w0]
    fastest = 0.0
    if in_window.size >= 5:
        span = (in_window[4:] - in_window[:-4]) / fs
        fastest = float(240.0 / span.min())
    if in_window.size == 0:
        return LeadEvidence(lead, True, "no beats in the window", fastest_bpm=fastest)
    z, raw = _normalised_segments(y, in_window, before, after, shift)
    t_norm = tmpl / max(float(np.linalg.norm(tmpl)), 1e-12)
    corr = z @ t_norm
    best = corr.argmax(axis=1)
    amplitude = np.ptp(raw[np.arange(in_window.size), best], axis=1) / max(float(np.ptp(tmpl)), 1e-12)
    normal = (corr.max(axis=1) >= cfg.same_morphology) & (amplitude > 0.5) & (amplitude < 2.0)
    ab = np.flatnonzero(~normal)
    cluster = 0
    if ab.size:
        zc = z[ab]
        # Beat i unshifted against beat j at every shift; symmetric by taking both directions.
        pair = np.einsum("im,jsm->ijs", zc[:, shift], zc).max(axis=2)
        pair = np.maximum(pair, pair.T)
        cluster = int((pair >= cfg.same_morphology_ectopic).sum(axis=1).max())
    summary = f"{in_window.size} beats, {ab.size} abnormal, {cluster} of one shape"
    return LeadEvidence(lead, True, summary, int(in_window.size), int(ab.size), cluster, fastest)


def pulse_evidence(pulse: npt.ArrayLike, *, sampling_rate: float, channel: str = "PULSE",
                   config: EvidenceConfig | None = None) -> PulseEvidence:
    """Pulse amplitude (5th-95th percentile span over 2.5 s, stepped by 0.5 s) in the window
    relative to its median over the reference stretch; ABP or pleth, any units."""
    cfg = config or EvidenceConfig()
    fs = float(sampling_rate)
    raw = np.asarray(pulse, dtype=np.float64).ravel()
    n = raw.shape[0]
    w0 = n - round(cfg.window_s * fs)
    r0 = w0 - round(cfg.reference_s * fs)
    if r0 < 0 or float(np.isnan(raw[r0:]).mean()) > 0.1:
        return PulseEvidence(channel, False)
    x, _ = _fill_nan(raw)
    sos = sps.butter(2, [0.5, 8.0], btype="bandpass", fs=fs, output="sos")
    y = sps.sosfiltfilt(sos, x)
    span, step = round(2.5 * fs), round(0.5 * fs)

    def amplitudes(a: int, b: int) -> FloatArray:
        w = sliding_window_view(y[a:b], span)[::step]
        hi, lo = np.percentile(w, [95.0, 5.0], axis=1)
        return np.asarray(hi - lo, dtype=np.float64)

    ref = float(np.median(amplitudes(r0, w0)))
    if not ref > 0.0:
        return PulseEvidence(channel, False)
    ratio = amplitudes(w0, n) / ref
    return PulseEvidence(channel, True, float(ratio.min()), float(ratio.max()))
