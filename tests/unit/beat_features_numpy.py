"""The beat features as first written, in plain numpy: the specification that
`detectors.beat_features` (compiled, `detectors.beat_kernels`) must reproduce bit for
bit. The committed models were trained on rows computed this way; this copy is kept
only to test against and is not imported by the package.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from detectors import beat_features
from detectors.beat_features import FEATURE_NAMES

__all__ = ["BeatFeatureStream"]

_PRE_MS, _POST_MS = 250, 450      # window around the peak
_STEP_MS = 5                      # grid step (box averages of this width)
_LOCAL, _LONG = 16, 256           # RR history lengths (beats)
_IRREGULAR_LONG = 64
_CONTEXT, _CONTEXT_LONG = 16, 64  # beats over which the rhythm context (P-wave consistency...) is summarised
_PAIRS = 32                       # successive on-time RR pairs for the on-time irregularity
_TEMPLATE_BEATS = 16
_REGIONS_MS = {"p": (-250, -70), "qrs": (-100, 100), "t": (100, 450)}
_MIN_RR_S = 0.05                  # guards the ratios against a zero interval

_ALIGN_MS = 60                    # a beat may be moved this far to line up with the template
_PREMATURE = 0.9                  # beats with a pre-RR under this share of the local RR stay out of the template
_TIMES_MS = np.arange(-_PRE_MS - _ALIGN_MS, _POST_MS + _ALIGN_MS + 1, _STEP_MS)  # extended grid
_M = _ALIGN_MS // _STEP_MS                                                       # extension, grid steps
_LEN = (_PRE_MS + _POST_MS) // _STEP_MS + 1                                      # the aligned grid


def _region(name: str) -> slice:
    a, b = _REGIONS_MS[name]
    return slice((a + _PRE_MS) // _STEP_MS, (b + _PRE_MS) // _STEP_MS + 1)


_P, _QRS, _T = _region("p"), _region("qrs"), _region("t")
_CENTRE = _PRE_MS // _STEP_MS


def _corr(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def _width(grid: npt.NDArray[np.float64]) -> tuple[float, float]:
    """(ms during which |slope| exceeds a fifth of its maximum within +-150 ms of the
    peak, share of the slope energy within +-40 ms of it)."""
    k150, k40 = 150 // _STEP_MS, 40 // _STEP_MS
    slope = np.abs(np.diff(grid[_CENTRE - k150:_CENTRE + k150 + 1]))
    top = float(slope.max())
    if top <= 1e-12:
        return 0.0, 0.0
    above = np.flatnonzero(slope > 0.2 * top)
    energy = slope * slope
    near = float(energy[k150 - k40:k150 + k40].sum())
    return float((above[-1] - above[0] + 1) * _STEP_MS), near / float(energy.sum())


class BeatFeatureStream(beat_features.BeatFeatureStream):
    """The package's stream (feeding, buffering, release), with the numpy arithmetic
    of the first version for each row and that version's deques for the patient's past."""

    def __init__(self, sampling_rate: float) -> None:
        super().__init__(sampling_rate)
        self._rr: deque[float] = deque(maxlen=_LONG)  # type: ignore[assignment]
        self._grids: deque[npt.NDArray[np.float64]] = deque(maxlen=_TEMPLATE_BEATS)  # type: ignore[assignment]
        self._prev_pre_local = 1.0
        self._local = 1.0                # the last beat's local RR (median of the 16 before it)
        # Per-beat values of the recent beats, NaN for premature ones (they would drag
        # an ectopic P wave or a compensatory pause into the patient's baseline).
        self._corr_p: deque[float] = deque(maxlen=_CONTEXT_LONG)  # type: ignore[assignment]
        self._rms_p: deque[float] = deque(maxlen=_CONTEXT)  # type: ignore[assignment]
        self._corr_qrs: deque[float] = deque(maxlen=_CONTEXT)  # type: ignore[assignment]
        self._pairs: deque[float] = deque(maxlen=_PAIRS)  # type: ignore[assignment]

    def _grid(self, b: int) -> npt.NDArray[np.float64]:
        """Box averages on the extended 5 ms grid; the window is padded with the
        first/last sample at the ends of the record."""
        if self._seen == 0:
            return np.zeros(_TIMES_MS.shape[0])
        idx = np.clip(np.arange(b - self._pre, b - self._pre + self._span), 0, self._seen - 1) - self._base
        w = self._buf[np.clip(idx, 0, self._buf.shape[0] - 1)]
        cs = np.concatenate([[0.0], np.cumsum(w)])
        g: npt.NDArray[np.float64] = (cs[self._hi] - cs[self._lo]) / (self._hi - self._lo)
        return g

    def _rhythm(self, b: int, nxt: int | None) -> list[float]:
        fs = self._fs
        pre = (b - self._prev) / fs if self._prev >= 0 else None  # (-1: no beat yet)
        post = (nxt - b) / fs if nxt is not None else None
        rr_pre = pre if pre is not None else (post if post is not None else 0.8)
        rr_post = post if post is not None else rr_pre
        hist = np.asarray(self._rr)
        recent = hist[-_LOCAL:]
        local = max(float(np.median(recent)) if hist.shape[0] else rr_pre, _MIN_RR_S)
        long = max(float(np.median(hist)) if hist.shape[0] else rr_pre, _MIN_RR_S)
        # Spread of the recent rhythm (MAD as a standard deviation, floored at 3 % of
        # the RR): a short RR is premature only if it is short for *this* rhythm.
        spread = max(1.4826 * float(np.median(np.abs(recent - local))) if recent.shape[0] else 0.0, 0.03 * local)
        irregular = float(np.median(np.abs(np.diff(recent)))) / local if recent.shape[0] > 2 else 0.0
        older = hist[-_IRREGULAR_LONG:]
        irregular_long = float(np.mean(np.abs(np.diff(older)))) / long if older.shape[0] > 2 else 0.0
        prev_pre = self._prev_pre_local
        self._prev_pre_local = rr_pre / local
        self._local = local
        # Sinus arrhythmia shortens RR gradually, a premature beat abruptly: compare
        # with the previous interval too.
        pre_prev = rr_pre / max(float(hist[-1]), _MIN_RR_S) if hist.shape[0] else 1.0
        # How often the recent rhythm has had premature beats: high in atrial fibrillation.
        premature = float(np.mean(older[1:] < _PREMATURE * local)) if older.shape[0] > 1 else 0.0
        self._rr.append(rr_pre)
        return [rr_pre / local, rr_post / local, rr_pre / long, rr_post / long, local / long,
                rr_post / max(rr_pre, _MIN_RR_S), (rr_post - rr_pre) / local, irregular, irregular_long,
                (local - rr_pre) / spread, (rr_post - local) / spread, prev_pre, pre_prev, premature]

    def _morphology(self, ext: npt.NDArray[np.float64], *, premature: bool) -> list[float]:
        if self._grids:
            template = np.median(np.stack(self._grids), axis=0)
            # Line the beat up with the template (the detector's peak may sit on the R or
            # the S wave, and moves with the QRS shape), then compare.
            t_qrs = template[_QRS]
            shift = max(range(-_M, _M + 1), key=lambda d: (_corr(ext[_M + d:][_QRS], t_qrs), -abs(d)))
            grid = ext[_M + shift:_M + shift + _LEN]
        else:
            shift = 0
            grid = ext[_M:_M + _LEN]
            template = grid - np.median(grid)
        grid = grid - np.median(grid)
        # The template follows the patient's dominant, on-time beats: premature beats
        # (most S and V) are left out, so a run of them does not become "normal".
        if not premature or len(self._grids) < 4:
            self._grids.append(grid)
        amp = float(np.ptp(template[_QRS]))
        own = float(np.ptp(grid[_QRS]))
        scale = amp if amp > 1e-6 else (own if own > 1e-6 else 1.0)
        beat, tmpl = grid / scale, template / scale
        diff = beat - tmpl
        width, spread = _width(beat)
        t_width, _ = _width(tmpl)
        area, t_area = float(np.abs(beat[_QRS]).sum()), float(np.abs(tmpl[_QRS]).sum())
        slope, t_slope = float(np.abs(np.diff(beat[_QRS])).max()), float(np.abs(np.diff(tmpl[_QRS])).max())
        dt = _STEP_MS / 1000.0
        return [
            # A clear P wave in the template means sinus rhythm; in atrial fibrillation
            # the f waves are not locked to the QRS and the median flattens them.
            float(np.ptp(tmpl[_P])),
            *(_corr(beat[r], tmpl[r]) for r in (_P, _QRS, _T)), _corr(beat, tmpl),
            float(shift * _STEP_MS),
            *(float(np.sqrt(np.mean(diff[r] ** 2))) for r in (_P, _QRS, _T)),
            own / scale, float(beat[_QRS].max()), float(-beat[_QRS].min()),
            area / t_area if t_area > 1e-9 else 1.0, area * dt,
            slope / t_slope if t_slope > 1e-9 else 1.0,
            width, width / t_width if t_width > 0 else 1.0, spread,
            float(np.sign(beat[_CENTRE]) * np.sign(tmpl[_CENTRE])),
        ]

    def _context(self, rr_pre: float, rr_prev: float | None, local: float, morphology: list[float],
                 *, premature: bool) -> list[float]:
        """Summaries of the patient's recent on-time beats, then this beat joins them.

        In sinus rhythm every P wave looks like the template's, so the median P-region
        correlation of the recent on-time beats is high; in atrial fibrillation the f
        waves are not locked to the QRS and it drops (0.1-0.4 in DS1 records 201 and
        203 against 0.8-0.98 elsewhere). Together with the on-time irregularity (the RR
        changes between consecutive on-time beats, so isolated premature beats and their
        pauses do not count), it tells the model when prematurity means little.
        """
        context = [_nanmedian(self._corr_p, _CONTEXT, 0.0), _nanmedian(self._corr_p, _CONTEXT_LONG, 0.0),
                   _nanmedian(self._rms_p, _CONTEXT, 0.0), _nanmedian(self._corr_qrs, _CONTEXT, 1.0),
                   _nanmedian(self._pairs, _PAIRS, 0.0)]
        nan = float("nan")
        on_pair = rr_prev is not None and min(rr_pre, rr_prev) >= _PREMATURE * local
        self._pairs.append(abs(rr_pre - rr_prev) / local if on_pair and rr_prev is not None else nan)
        for q, name in ((self._corr_p, "corr_p"), (self._rms_p, "rms_diff_p"), (self._corr_qrs, "corr_qrs")):
            q.append(nan if premature else morphology[_MORPHOLOGY_INDEX[name]])
        return context

    def _row(self, b: int, nxt: int | None) -> npt.NDArray[np.float64]:
        rr_prev = self._rr[-1] if self._rr else None
        rhythm = self._rhythm(b, nxt)
        self._prev = b
        premature = rhythm[0] < _PREMATURE
        morphology = self._morphology(self._grid(b), premature=premature)
        return np.array(rhythm + morphology + self._context(self._rr[-1], rr_prev, self._local, morphology,
                                                            premature=premature))


_MORPHOLOGY_INDEX = {n: i - FEATURE_NAMES.index("template_p") for i, n in enumerate(FEATURE_NAMES)}


def _nanmedian(values: deque[float], last: int, default: float) -> float:
    """Median of the last ``last`` values that are not NaN, or ``default`` if there are none."""
    kept = [v for v in list(values)[-last:] if v == v]
    return float(np.median(kept)) if kept else default
