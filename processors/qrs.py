"""Streaming QRS (R-peak) detection, Pan-Tompkins class, chunk-invariant.

Chain, per sample (all causal): band-pass 5-15 Hz (Butterworth, second-order
sections) -> five-point derivative -> square -> 150 ms moving-window integral
(MWI). A *candidate* is a local maximum of the MWI, declared once the MWI has fallen
to half of it or 200 ms have passed without a larger value. Candidates are classified with the adaptive signal/noise levels and
thresholds of Pan & Tompkins (1985): a 200 ms refractory period, a T-wave test
(a candidate within 360 ms of the last beat whose steepest slope is under 0.4 of
that beat's is a T wave), and search-back (when no beat came for 1.5 mean RR, the
largest candidate above the lower threshold since the last beat is taken). The
R peak is placed at the largest absolute band-passed value in the 250 ms before
the candidate, moved back by the filter's group delay at 10 Hz. (Refining it
further on the raw signal was tried and dropped: on paced beats it picks a later
lobe of the wide complex, 150 ms off.) On synthetic ECG the peak lands 7-9 ms
after the true R on average, a constant lag, so RR intervals are exact to one sample.

All state (filter memory, ring buffers, levels, RR history) lives in explicit
arrays carried from one `feed()` to the next, so the beats found do not depend on
how the record is cut into chunks. `_detect` is plain Python; `_detect_jit` is the
same function compiled by numba, and the tests run both.

References: Pan J, Tompkins WJ. A real-time QRS detection algorithm. IEEE Trans
Biomed Eng 32(3):230-236 (1985).
"""

from __future__ import annotations

import functools
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from numba.extending import register_jitable

__all__ = ["QrsDetector", "ecg_findpeaks"]

# Indices into the float64 state vector.
_N = 0            # samples consumed so far (absolute index of the next sample)
_SPKI = 1         # running signal level of the MWI
_NPKI = 2         # running noise level of the MWI
_LAST_QRS = 3     # absolute MWI index of the last beat (-1e18: none)
_LAST_SLOPE = 4   # steepest derivative of the last beat
_RISING = 5       # 1 while the MWI climbs towards a candidate
_CAND_VAL = 6     # value of the current MWI maximum
_CAND_IDX = 7     # its index
_CAND_SLOPE = 8   # steepest |derivative| since the candidate started
_SB_VAL = 9       # best search-back candidate since the last beat: value
_SB_IDX = 10      # ... index
_SB_SLOPE = 11    # ... slope
_RR_COUNT = 12    # RR intervals in the history (max 8)
_RR_POS = 13      # next slot in the RR ring
_LEARN_MAX = 14   # MWI maximum during the learning period
_LEARN_SUM = 15   # MWI sum during the learning period
_MWI_SUM = 16     # running sum of the squared-derivative window
_LEARN_RAW2 = 17  # sum of squared raw samples during the learning period
_FLOOR = 18       # candidates at or below this MWI value are ignored (flat line, rounding dust)
_K_THR = 19       # threshold position between noise and signal level (Pan-Tompkins: 0.25)
_K_TWAVE = 20     # T-wave test: slope ratio below which a close candidate is a T wave (0.5)
_K_SEARCH = 21    # search-back after this many mean RR intervals without a beat (1.66)
_LAST_BP = 22     # band-passed index of the last beat's peak (-1: none)
_STATE_SIZE = 23

# Indices into the int64 parameter vector (samples, converted from seconds once).
_P_WIN = 0        # MWI window
_P_REFRACT = 1    # refractory period
_P_TWAVE = 2      # T-wave test horizon
_P_LEARN = 3      # learning period
_P_SEARCH = 4     # R search window before the candidate, on the band-passed signal
_P_DELAY = 5      # band-pass group delay
_P_HIST = 6       # ring-buffer length (power of two)
_P_INIT_RR = 7    # RR assumed before any is measured
_PARAM_SIZE = 8


def _detect(
    x: npt.NDArray[np.float64],
    sos: npt.NDArray[np.float64],
    zi: npt.NDArray[np.float64],
    zi_step: npt.NDArray[np.float64],
    p: npt.NDArray[np.int64],
    st: npt.NDArray[np.float64],
    bp_ring: npt.NDArray[np.float64],
    sq_ring: npt.NDArray[np.float64],
    rr: npt.NDArray[np.float64],
    learn: npt.NDArray[np.float64],
    out: npt.NDArray[np.int64],
) -> int:
    """Consume ``x``; write absolute R-peak indices to ``out``; return how many.

    ``learn`` holds candidates seen during the learning period as (index, value,
    slope) triples, classified once the levels are known; its first cell counts them.
    """
    # Hot state lives in locals for the whole chunk (numba keeps them in registers)
    # and goes back into `st`/`zi` at the end; the helpers, called about once per
    # beat, read and write `st` directly, so the search-back deadline is refreshed
    # after each call.
    mask = p[_P_HIST] - 1
    win = p[_P_WIN]
    learn_end = p[_P_LEARN]
    refract = p[_P_REFRACT]
    n_out = 0
    b00, b01, b02, a01, a02 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    b10, b11, b12, a11, a12 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
    z00, z01, z10, z11 = zi[0, 0], zi[0, 1], zi[1, 0], zi[1, 1]
    n = int(st[_N])
    mwi_sum = st[_MWI_SUM]
    rising = st[_RISING]
    cand_val = st[_CAND_VAL]
    cand_idx = st[_CAND_IDX]
    cand_slope = st[_CAND_SLOPE]
    y1 = bp_ring[(n - 1) & mask]
    y2 = bp_ring[(n - 2) & mask]
    y3 = bp_ring[(n - 3) & mask]
    y4 = bp_ring[(n - 4) & mask]
    sb_on = st[_SB_IDX] >= 0.0
    deadline = st[_LAST_QRS] + st[_K_SEARCH] * _mean_rr(rr, st, p)
    for i in range(x.shape[0]):
        v = x[i]
        if v != v:  # NaN: treat as zero signal rather than poison every filter
            v = 0.0
        if n == 0:
            # Start the filter as if the first value had always been there, so a DC
            # offset does not ring through as a fake first beat (scipy's sosfilt_zi).
            z00, z01 = zi_step[0, 0] * v, zi_step[0, 1] * v
            z10, z11 = zi_step[1, 0] * v, zi_step[1, 1] * v
        # Band-pass: two biquads, direct form II transposed.
        u = b00 * v + z00
        z00 = b01 * v - a01 * u + z01
        z01 = b02 * v - a02 * u
        y = b10 * u + z10
        z10 = b11 * u - a11 * y + z11
        z11 = b12 * u - a12 * y
        bp_ring[n & mask] = y
        # Five-point derivative (Pan-Tompkins), then square and integrate.
        d = (2.0 * y + y1 - y3 - 2.0 * y4) / 8.0 if n >= 4 else 0.0
        y4, y3, y2, y1 = y3, y2, y1, y
        sq = d * d
        if n >= win:
            mwi_sum += sq - sq_ring[(n - win) & mask]
        else:
            mwi_sum += sq
        sq_ring[n & mask] = sq
        mwi = mwi_sum / win
        ad = abs(d)

        if n < learn_end:
            st[_LEARN_RAW2] += v * v
            st[_LEARN_SUM] += mwi
            if mwi > st[_LEARN_MAX]:
                st[_LEARN_MAX] = mwi
        elif n == learn_end:
            st[_SPKI] = st[_LEARN_MAX] / 3.0
            st[_NPKI] = st[_LEARN_SUM] / learn_end / 2.0
            # Unit-free floor: negligible next to any real QRS whether samples are mV or
            # ADC counts, yet far above the rounding residue of a constant input.
            st[_FLOOR] = 1e-10 * st[_LEARN_RAW2] / learn_end
            for k in range(int(learn[0])):
                n_out = _classify(int(learn[1 + 3 * k]), learn[2 + 3 * k], learn[3 + 3 * k], n,
                                  p, st, bp_ring, rr, out, n_out)
            sb_on = st[_SB_IDX] >= 0.0
            deadline = st[_LAST_QRS] + st[_K_SEARCH] * _mean_rr(rr, st, p)

        # Candidate tracking: follow the MWI down to a valley, then up to a maximum;
        # the maximum is a candidate once the MWI has halved or it has not been
        # exceeded for a refractory period (noise can keep the MWI from halving).
        if rising == 0.0:
            if mwi <= cand_val:
                cand_val = mwi
                cand_idx = n
                cand_slope = ad
            else:
                rising = 1.0
        if rising == 1.0:
            if mwi > cand_val:
                cand_val = mwi
                cand_idx = n
            if ad > cand_slope:
                cand_slope = ad
            if mwi < 0.5 * cand_val or n - cand_idx >= refract:
                idx = int(cand_idx)
                if n < learn_end:
                    k = int(learn[0])
                    if 3 * k + 3 < learn.shape[0]:
                        learn[1 + 3 * k] = idx
                        learn[2 + 3 * k] = cand_val
                        learn[3 + 3 * k] = cand_slope
                        learn[0] = k + 1
                else:
                    n_out = _classify(idx, cand_val, cand_slope, n, p, st, bp_ring, rr, out, n_out)
                    sb_on = st[_SB_IDX] >= 0.0
                    deadline = st[_LAST_QRS] + st[_K_SEARCH] * _mean_rr(rr, st, p)
                rising = 0.0
                cand_val = mwi
                cand_idx = n
                cand_slope = ad

        # Search-back: no beat for K_SEARCH mean RR -> take the best candidate since the last one.
        if sb_on and n > learn_end and n > deadline:
            thr2 = 0.5 * (st[_NPKI] + st[_K_THR] * (st[_SPKI] - st[_NPKI]))
            if st[_SB_VAL] > thr2:
                st[_SPKI] = 0.25 * st[_SB_VAL] + 0.75 * st[_SPKI]
                n_out = _accept(int(st[_SB_IDX]), st[_SB_SLOPE], n, p, st, bp_ring, rr, out, n_out)
            else:
                st[_SB_IDX] = -1.0
                st[_SB_VAL] = 0.0
            sb_on = st[_SB_IDX] >= 0.0
            deadline = st[_LAST_QRS] + st[_K_SEARCH] * _mean_rr(rr, st, p)
        n += 1
    st[_N] = n
    zi[0, 0], zi[0, 1], zi[1, 0], zi[1, 1] = z00, z01, z10, z11
    st[_MWI_SUM] = mwi_sum
    st[_RISING] = rising
    st[_CAND_VAL] = cand_val
    st[_CAND_IDX] = cand_idx
    st[_CAND_SLOPE] = cand_slope
    return n_out


@register_jitable
def _mean_rr(rr: npt.NDArray[np.float64], st: npt.NDArray[np.float64], p: npt.NDArray[np.int64]) -> float:
    count = int(st[_RR_COUNT])
    if count == 0:
        return float(p[_P_INIT_RR])
    total = 0.0
    for k in range(count):
        total += rr[k]
    return total / count


@register_jitable
def _classify(
    idx: int, val: float, slope: float, n: int, p: npt.NDArray[np.int64], st: npt.NDArray[np.float64],
    bp_ring: npt.NDArray[np.float64], rr: npt.NDArray[np.float64], out: npt.NDArray[np.int64], n_out: int,
) -> int:
    since = idx - st[_LAST_QRS]
    if since < p[_P_REFRACT] or val <= st[_FLOOR]:
        return n_out
    thr1 = st[_NPKI] + st[_K_THR] * (st[_SPKI] - st[_NPKI])
    if val > thr1:
        if since < p[_P_TWAVE] and slope < st[_K_TWAVE] * st[_LAST_SLOPE]:
            st[_NPKI] = 0.125 * val + 0.875 * st[_NPKI]  # a T wave
            return n_out
        st[_SPKI] = 0.125 * val + 0.875 * st[_SPKI]
        return _accept(idx, slope, n, p, st, bp_ring, rr, out, n_out)
    st[_NPKI] = 0.125 * val + 0.875 * st[_NPKI]
    if val > st[_SB_VAL]:
        st[_SB_VAL] = val
        st[_SB_IDX] = idx
        st[_SB_SLOPE] = slope
    return n_out


@register_jitable
def _accept(
    idx: int, slope: float, n: int, p: npt.NDArray[np.int64], st: npt.NDArray[np.float64],
    bp_ring: npt.NDArray[np.float64], rr: npt.NDArray[np.float64], out: npt.NDArray[np.int64], n_out: int,
) -> int:
    mask = p[_P_HIST] - 1
    oldest = n - p[_P_HIST] + 1  # earliest index still in the rings
    # The band-passed R is the largest |value| in the search window before the MWI peak.
    # Start after the previous beat's peak: two candidates 200-250 ms apart must not
    # pick the same sample (and the output stays strictly increasing).
    lo = max(idx - p[_P_SEARCH], oldest, 0, int(st[_LAST_BP]) + 1)
    if lo > idx:
        lo = idx
    best = idx
    best_v = -1.0
    for j in range(lo, idx + 1):
        a = abs(bp_ring[j & mask])
        if a > best_v:
            best_v = a
            best = j
    st[_LAST_BP] = best
    # Undo the filter's delay: the band-passed peak comes that much after the R wave.
    peak = max(best - p[_P_DELAY], 0)
    last = st[_LAST_QRS]
    if last > -1e17:
        interval = idx - last
        pos = int(st[_RR_POS])
        rr[pos] = interval
        st[_RR_POS] = (pos + 1) % rr.shape[0]
        if st[_RR_COUNT] < rr.shape[0]:
            st[_RR_COUNT] += 1
    st[_LAST_QRS] = idx
    st[_LAST_SLOPE] = slope
    st[_SB_IDX] = -1.0
    st[_SB_VAL] = 0.0
    if n_out < out.shape[0]:
        out[n_out] = peak
    return n_out + 1


# The helpers are register_jitable: plain Python when `_detect` runs as Python (the
# reference twin), compiled inline when numba compiles `_detect`.
_detect_jit = numba.njit(cache=True)(_detect)


@functools.lru_cache(maxsize=16)
def _band_pass(fs: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """The 5-15 Hz band-pass for ``fs``: second-order sections, their step-response
    initial state (scipy's ``sosfilt_zi``) and the group delay at 10 Hz in samples.
    Designed once per sampling rate (it costs more than a second of ECG does to
    analyse, and a worker builds a detector for every patient it starts or restores);
    callers copy the arrays."""
    from scipy import signal

    # Order 2 band-pass = two second-order sections; the kernel is written for exactly two.
    sos = np.ascontiguousarray(signal.butter(2, [5.0, 15.0], btype="bandpass", fs=fs, output="sos"))
    b, a = signal.sos2tf(sos)
    _, delay = signal.group_delay((b, a), w=[10.0], fs=fs)
    return sos, np.ascontiguousarray(signal.sosfilt_zi(sos)), float(delay[0])


class QrsDetector:
    """Feed ECG samples in chunks of any size; get R-peak sample indices back.

    Parameters
    ----------
    sampling_rate : float
        Hz, 125 to 1000.
    jit : bool
        Use the numba kernel (default) or its pure-Python twin (tests, debugging).

    `feed(samples)` returns the absolute 0-based indices of the R peaks confirmed
    by that chunk. A peak is confirmed about 0.2-0.4 s after it occurs (once the
    integrated energy has halved), later when found by search-back; the indices are
    in increasing order across calls. Units of the samples do not matter (mV or ADC).
    """

    def __init__(self, sampling_rate: float, *, jit: bool = True) -> None:
        if not 125 <= sampling_rate <= 1000:
            raise ValueError(f"sampling_rate must be 125-1000 Hz, got {sampling_rate}")
        fs = float(sampling_rate)
        self.sampling_rate = fs
        sos, zi_step, delay = _band_pass(fs)
        self._sos = sos.copy()
        hist = 1 << int(np.ceil(np.log2(4.0 * fs)))
        self._p = np.zeros(_PARAM_SIZE, dtype=np.int64)
        self._p[_P_WIN] = round(0.150 * fs)
        self._p[_P_REFRACT] = round(0.200 * fs)
        self._p[_P_TWAVE] = round(0.360 * fs)
        self._p[_P_LEARN] = round(2.0 * fs)
        self._p[_P_SEARCH] = round(0.250 * fs)
        self._p[_P_DELAY] = round(delay)
        self._p[_P_HIST] = hist
        self._p[_P_INIT_RR] = round(1.0 * fs)
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._zi_step = zi_step.copy()
        self._st = np.zeros(_STATE_SIZE)
        self._st[_LAST_QRS] = -1e18
        self._st[_SB_IDX] = -1.0
        self._st[_LAST_BP] = -1.0
        # Pan-Tompkins use 0.25, 0.5 and 1.66. A coarse grid (three values each) on the
        # MIT-BIH Arrhythmia Database chose these: lower thresholds and an earlier
        # search-back find more small and early beats. Both halves of the database
        # (de Chazal's DS1 and the rest) improve with them, but they were chosen on it.
        self._st[_K_THR] = 0.2
        self._st[_K_TWAVE] = 0.4
        self._st[_K_SEARCH] = 1.5
        self._rings = (np.zeros(hist), np.zeros(hist))
        self._rr = np.zeros(8)
        self._learn = np.zeros(1 + 3 * 64)
        self._kernel = _detect_jit if jit else _detect

    @property
    def samples_seen(self) -> int:
        return int(self._st[_N])

    @property
    def horizon(self) -> int:
        """No peak reported from now on will lie before this absolute index.

        A future peak comes from the candidate being tracked (index ``_CAND_IDX`` or
        later), the pending search-back candidate, or, during the learning period, any
        candidate so far; it is placed at most the R search window plus the filter
        delay before its candidate. Callers that need every beat of a span (window
        labels that depend on the rhythm) wait until the horizon has passed it.
        """
        st, p = self._st, self._p
        n = int(st[_N])
        if n <= p[_P_LEARN]:
            return 0
        earliest = min(n, int(st[_CAND_IDX]))
        if st[_SB_IDX] >= 0.0:
            earliest = min(earliest, int(st[_SB_IDX]))
        return max(earliest - int(p[_P_SEARCH]) - int(p[_P_DELAY]), 0)

    def get_state(self) -> dict[str, Any]:
        """Everything `feed` will still read, as arrays (see `processors.state`).

        Of the rings only the live part is kept: the last MWI window of squared
        derivatives, and the band-passed samples from the earliest place a future
        peak search can start (`horizon` plus the filter delay; the whole learning
        period before the first classification). A restored detector reads nothing
        else, so it continues exactly, from a snapshot of a few hundred samples.
        """
        bp, sq = self._rings
        n, p = int(self._st[_N]), self._p
        mask = int(p[_P_HIST]) - 1
        keep_bp = max(min(self.horizon + int(p[_P_DELAY]), n - 4), n - mask, 0)
        keep_sq = max(n - int(p[_P_WIN]), 0)
        return {"fs": self.sampling_rate, "st": self._st.copy(), "zi": self._zi.copy(), "rr": self._rr.copy(),
                "learn": self._learn.copy(), "bp_from": keep_bp, "bp": bp[np.arange(keep_bp, n) & mask],
                "sq_from": keep_sq, "sq": sq[np.arange(keep_sq, n) & mask]}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue exactly where the detector that produced ``state`` stopped."""
        if state["fs"] != self.sampling_rate:
            raise ValueError(f"state is for {state['fs']} Hz, this detector runs at {self.sampling_rate} Hz")
        for name, mine in (("st", self._st), ("zi", self._zi), ("rr", self._rr), ("learn", self._learn)):
            if state[name].shape != mine.shape:
                raise ValueError(f"state field {name} has shape {state[name].shape}, expected {mine.shape}")
            mine[...] = state[name]
        mask = int(self._p[_P_HIST]) - 1
        for ring, start, values in ((self._rings[0], state["bp_from"], state["bp"]),
                                    (self._rings[1], state["sq_from"], state["sq"])):
            if values.shape[0] > mask + 1:
                raise ValueError(f"ring snapshot of {values.shape[0]} samples exceeds the ring ({mask + 1})")
            ring[...] = 0.0
            ring[np.arange(start, start + values.shape[0]) & mask] = values

    def feed(self, samples: npt.ArrayLike) -> npt.NDArray[np.int64]:
        x = np.ascontiguousarray(samples, dtype=np.float64).ravel()
        out = np.empty(x.shape[0] // max(int(self._p[_P_REFRACT]), 1) + 70, dtype=np.int64)
        bp, sq = self._rings
        n = self._kernel(x, self._sos, self._zi, self._zi_step, self._p, self._st, bp, sq, self._rr,
                         self._learn, out)
        return out[:n].copy()


def ecg_findpeaks(
    ecg_signal: npt.ArrayLike, *, sampling_rate: float, chunk_size: int | None = None, jit: bool = True
) -> npt.NDArray[np.int64]:
    """R-peak indices of a whole record, through the streaming detector.

    ``chunk_size`` feeds the record in pieces of that many samples (default: one
    piece); the result is the same either way.
    """
    x = np.asarray(ecg_signal, dtype=np.float64).ravel()
    det = QrsDetector(sampling_rate, jit=jit)
    step = chunk_size or max(x.shape[0], 1)
    if step < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    parts = [det.feed(x[i:i + step]) for i in range(0, x.shape[0], step)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
