"""Per-beat features for the AAMI beat classifier, computed causally as beats stream in.

Training (`detectors.training.train_beats`) and inference (the worker, ``vigil beats``)
both build their rows with `BeatFeatureStream`, so the model never sees a feature
computed differently from the one it was trained on.

Why these features. Inter-patient beat classification (train on some patients, run on
others) fails when features carry the patient: absolute amplitudes, absolute heart
rate, lead placement, the raw waveform. So every feature here is *relative to the
same patient's recent past* (de Chazal et al. 2004; Llamedo & Martinez 2011). Raw
waveform samples were tried as inputs and dropped: on DS1 cross-validation by record
they cut S +P from 44 % to 20-34 %.

- Rhythm: pre-RR and post-RR (the post-RR costs a one-beat delay: a beat is released
  only when the next one is known), each over the median of the previous 16 RR (local
  rhythm) and of the previous 256 (the patient's baseline); their ratio and the
  pause after the beat; the pre-RR over the previous RR (sinus arrhythmia shortens RR
  gradually, an ectopic beat abruptly); prematurity as a z-score against the spread
  of the recent RR; irregularity (median |successive difference| over the last 16 RR,
  mean over the last 64) and the share of premature intervals among the last 64. A
  short RR in sinus rhythm marks an S or V candidate; the same RR in atrial
  fibrillation does not, and these are how the model can tell the two apart.
- Morphology against a template: the beat on a fixed time grid (-250 to +450 ms, box
  averages of 5 ms, so any sampling rate gives the same points), baseline (median)
  removed, aligned within +-60 ms to the template, the sample-wise median of the last
  16 *on-time* beats (premature ones stay out, so a run of ectopic beats does not
  become the reference). Then, in units of the template's QRS amplitude: the
  template's P-wave amplitude (flat in atrial fibrillation), correlations and RMS
  differences over the P, QRS and T regions, the alignment shift, amplitude, area and
  slope ratios, QRS width (how long the slope stays above a fifth of its maximum) and
  how concentrated the slope energy is around the peak.

- Rhythm context (feature set 2), from the patient's recent *on-time* beats only and
  without labels: the median P-region correlation with the template over the last 16
  and 64 beats (in sinus rhythm every P wave matches the template; in atrial
  fibrillation or flutter it does not, so a short RR there means little), the median
  P-region RMS difference and QRS correlation over the last 16 (the patient's own noise
  level, against which one beat's difference is judged), and the median RR change
  between consecutive on-time beats over the last 32 pairs (an irregularity that
  isolated premature beats and their pauses do not inflate). On DS1 cross-validation
  by record these raised S +P at matched S sensitivity by about 10 points, and the
  classifier rules S out where ``p_consistency`` is low (see beats-v2.md).

Every row is computed from a window of raw samples cut around the beat, with no filter
state, so the rows do not depend on how the signal was cut into chunks. The
arithmetic is one compiled call per beat (`detectors.beat_kernels`, about 25-50 us
against 0.8 ms in numpy), adding in numpy's order so that the rows are bit for bit
those the models were trained on.

References: de Chazal P, O'Dwyer M, Reilly RB. Automatic classification of heartbeats
using ECG morphology and heartbeat interval features. IEEE Trans Biomed Eng
51(7):1196-1206 (2004). Llamedo M, Martinez JP. Heartbeat classification using feature
selection driven by database generalization criteria. IEEE Trans Biomed Eng
58(3):616-625 (2011).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.beat_kernels import (
    ALIGN_MS, CONTEXT, CONTEXT_LONG, LONG, PAIRS, POST_MS, PRE_MS, STEP_MS, TEMPLATE_BEATS, beat_row,
)
from processors.state import StateError, pack, unpack

__all__ = ["FEATURE_SET", "FEATURE_NAMES", "BeatRows", "BeatFeatureStream", "beat_features"]

FEATURE_SET = "vigil-beat-features-2"
"""Stored in every model's metadata; the classifier refuses a model built on another set."""

_TIMES_MS = np.arange(-PRE_MS - ALIGN_MS, POST_MS + ALIGN_MS + 1, STEP_MS)  # the extended 5 ms grid
FEATURE_NAMES: tuple[str, ...] = (
    # rhythm
    "pre_local", "post_local", "pre_long", "post_long", "local_long", "post_pre", "pause_local",
    "irregularity", "irregularity_long", "pre_z", "post_z", "prev_pre_local", "pre_prev", "premature_share",
    # morphology against the template
    "template_p", "corr_p", "corr_qrs", "corr_t", "corr_all", "shift_ms", "rms_diff_p", "rms_diff_qrs", "rms_diff_t",
    "amp_ratio", "pos_ratio", "neg_ratio", "area_ratio", "area_qrs", "slope_ratio", "width_ms", "width_ratio",
    "slope_spread", "polarity",
    # rhythm context: the patient's recent on-time beats
    "p_consistency", "p_consistency_long", "p_noise", "qrs_consistency", "irregularity_on_time",
)
"""Column names, in order; ``len(FEATURE_NAMES)`` is the model's input width."""


@dataclass(frozen=True, slots=True)
class BeatRows:
    """Feature rows released by one call, in beat order."""

    samples: npt.NDArray[np.int64]
    """Absolute 0-based sample of each beat, as it was given."""
    features: npt.NDArray[np.float32]
    """One row per beat, columns as `FEATURE_NAMES`."""

    def __len__(self) -> int:
        return int(self.samples.shape[0])


class BeatFeatureStream:
    """``feed(samples, beats)`` -> `BeatRows` for the beats whose features are complete.

    ``samples`` is the next chunk of the lead (mV; any length, possibly empty);
    ``beats`` are newly found R-peak indices (absolute, 0-based, strictly increasing
    across calls), which may point into samples fed earlier, as `EcgAnalyzer` releases
    them late. A beat's row is released once the next beat is known and the signal
    reaches 450 ms past it; `flush()` releases the rest at the end of a record
    (their post-RR is then taken equal to the pre-RR). Rows are the same however the
    record was cut into chunks.
    """

    def __init__(self, sampling_rate: float, start: int = 0) -> None:
        """``start``: the absolute index of the first sample to be fed (0 unless the
        stream joins a signal already under way; the beats given must count from the
        same origin)."""
        if not 50.0 <= sampling_rate <= 2000.0:
            raise ValueError(f"sampling_rate must be 50-2000 Hz, got {sampling_rate}")
        self._fs = fs = float(sampling_rate)
        half = STEP_MS / 2000.0
        self._pre = int(np.ceil(((PRE_MS + ALIGN_MS) / 1000.0 + half) * fs)) + 1  # window start before the peak
        t = _TIMES_MS / 1000.0
        self._lo = self._pre + np.round((t - half) * fs).astype(np.int64)
        self._hi = np.maximum(self._pre + np.round((t + half) * fs).astype(np.int64), self._lo + 1)
        self._span = int(self._hi[-1])   # window length in samples
        self._buf = np.zeros(0)
        self._base = start               # absolute index of self._buf[0]
        self._seen = start               # absolute index of the next sample
        self._pending: deque[int] = deque()
        self._last_beat = -1             # the last beat given, for the order check
        self._prev = -1                  # the last released beat (-1: none yet)
        # The patient's recent past, oldest first, as `beat_kernels.beat_row` keeps it:
        # RR intervals, the on-time beats the template is the median of, and per-beat
        # values of the recent beats, NaN for premature ones (they would drag an
        # ectopic P wave or a compensatory pause into the patient's baseline).
        self._rr = np.zeros(LONG)
        self._grids = np.zeros((TEMPLATE_BEATS, (PRE_MS + POST_MS) // STEP_MS + 1))
        self._corr_p = np.zeros(CONTEXT_LONG)
        self._rms_p = np.zeros(CONTEXT)
        self._corr_qrs = np.zeros(CONTEXT)
        self._pairs = np.zeros(PAIRS)
        self._counts = np.zeros(6, dtype=np.int64)
        self._scalars = np.ones(2)       # the previous beat's pre-RR / local RR; the local RR

    @property
    def sampling_rate(self) -> float:
        return self._fs

    def feed(self, samples: npt.ArrayLike, beats: Sequence[int] | npt.NDArray[np.int64] = ()) -> BeatRows:
        x = np.asarray(samples, dtype=np.float64).ravel()
        if x.shape[0]:
            if not np.isfinite(x).all():  # (a quick test first: nan_to_num costs ten times more)
                x = np.nan_to_num(x)
            self._buf = np.concatenate([self._buf, x])
            self._seen += x.shape[0]
        for b in np.asarray(beats, dtype=np.int64).ravel().tolist():
            if b <= self._last_beat:
                raise ValueError(f"beats must be strictly increasing: {b} after {self._last_beat}")
            self._pending.append(b)
            self._last_beat = b
        post = self._span - self._pre
        out: list[tuple[int, npt.NDArray[np.float64]]] = []
        while len(self._pending) >= 2 and self._pending[0] + post <= self._seen:
            b = self._pending.popleft()
            out.append((b, self._row(b, self._pending[0])))
        self._trim()
        return _pack(out)

    def flush(self) -> BeatRows:
        """Release every beat still waiting (end of record), windows padded with the last sample."""
        out = []
        while self._pending:
            b = self._pending.popleft()
            out.append((b, self._row(b, self._pending[0] if self._pending else None)))
        return _pack(out)

    def _trim(self) -> None:
        if self._pending:
            # Every beat still to come is at or after the first waiting one, so its
            # window starts at or after this: keep nothing older (the next feed copies
            # the buffer anyway, so trimming every time costs nothing).
            drop = self._pending[0] - self._pre - self._base
            if drop > 0:
                self._buf = self._buf[drop:]
                self._base += drop
            return
        # No beat yet: the first may still be found late, somewhere in the signal seen.
        drop = self._seen - self._pre - self._base
        if drop > 8192:  # amortised
            self._buf = self._buf[drop:]
            self._base += drop

    def snapshot(self) -> bytes:
        """Everything the stream remembers, exactly (`processors.state.pack`): `restore`
        on a new stream gives one that releases the same rows for the same input."""
        return pack({
            "fs": self._fs, "buf": self._buf, "base": self._base, "seen": self._seen,
            "pending": list(self._pending), "last_beat": self._last_beat, "prev": self._prev,
            "rr": self._rr, "grids": self._grids, "corr_p": self._corr_p, "rms_p": self._rms_p,
            "corr_qrs": self._corr_qrs, "pairs": self._pairs, "counts": self._counts, "scalars": self._scalars,
        })

    @classmethod
    def restore(cls, data: bytes) -> BeatFeatureStream:
        v = unpack(data)
        stream = cls(v["fs"])
        for name in ("buf", "rr", "grids", "corr_p", "rms_p", "corr_qrs", "pairs", "counts", "scalars"):
            mine = getattr(stream, f"_{name}")
            if name != "buf" and (v[name].shape != mine.shape or v[name].dtype != mine.dtype):
                raise StateError(f"beat feature snapshot: {name} has shape {v[name].shape}, expected {mine.shape}")
            setattr(stream, f"_{name}", v[name])
        stream._base, stream._seen, stream._last_beat, stream._prev = v["base"], v["seen"], v["last_beat"], v["prev"]
        stream._pending = deque(v["pending"])
        return stream

    def _row(self, b: int, nxt: int | None) -> npt.NDArray[np.float64]:
        row = beat_row(self._buf, self._base, self._seen, self._pre, self._lo, self._hi, self._fs, b,
                       -1 if nxt is None else nxt, self._prev, self._rr, self._grids, self._corr_p, self._rms_p,
                       self._corr_qrs, self._pairs, self._counts, self._scalars)
        self._prev = b
        return row


def _pack(out: list[tuple[int, npt.NDArray[np.float64]]]) -> BeatRows:
    if not out:
        return BeatRows(np.empty(0, dtype=np.int64), np.empty((0, len(FEATURE_NAMES)), dtype=np.float32))
    rows = np.stack([r for _, r in out]).astype(np.float32)
    return BeatRows(np.array([b for b, _ in out], dtype=np.int64), rows)


def beat_features(signal: npt.ArrayLike, beats: npt.ArrayLike, *, sampling_rate: float) -> BeatRows:
    """Rows for every beat of a whole record (one `feed` and a `flush`)."""
    stream = BeatFeatureStream(sampling_rate)
    first = stream.feed(signal, np.asarray(beats, dtype=np.int64))
    rest = stream.flush()
    return BeatRows(np.concatenate([first.samples, rest.samples]),
                    np.concatenate([first.features, rest.features]))
