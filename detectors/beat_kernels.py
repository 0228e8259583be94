"""Compiled inner loops of `detectors.beat_features`, bit-for-bit equal to the numpy
expressions they replace.

The beat features were defined (and the models trained) with numpy. Computed with
plain loops, a sum comes out differently in the last bits, and that can flip which
alignment shift wins or move a feature across a threshold the model learned. So these
kernels add numbers in exactly numpy's order: sums go through
`processors.kernels.pairwise_sum` (numpy's pairwise summation, as the quality index
and the VF detector use it), a mean is that sum divided by the count, and a median
is the middle value, or the two middle values added and halved. The tests compare every
kernel with its numpy expression, and whole feature rows with rows computed the
numpy way.

Why: with numpy each beat took about 0.8 ms, most of it in the overhead of hundreds
of small array calls (25 alignment correlations of 41 points each, medians of 16
values); at a ward's ~1 beat per patient-second that is most of a core.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from processors.kernels import pairwise_sum, select

__all__ = ["beat_row", "corr", "best_shift", "column_medians", "mean", "median", "merge_network"]


@numba.njit(cache=True, nogil=True)
def mean(values: npt.NDArray[np.float64]) -> float:  # pragma: no cover - compiled
    """``np.mean(values)`` of a non-empty 1-D float64 array."""
    return float(pairwise_sum(values, 0, values.shape[0]) / values.shape[0])


@numba.njit(cache=True, nogil=True)
def _corr(a: npt.NDArray[np.float64], a0: int, b: npt.NDArray[np.float64], b0: int, n: int,
          scratch: npt.NDArray[np.float64]) -> float:  # pragma: no cover - compiled
    """`corr`, with room for three times ``n`` values given (no allocation)."""
    mb, sbb = _spread(b, b0, n, scratch)
    return _shifted_corr(a, a0, b, b0, n, mb, sbb, scratch)


@numba.njit(cache=True, nogil=True)
def _spread(b: npt.NDArray[np.float64], b0: int, n: int,
            scratch: npt.NDArray[np.float64]) -> tuple[float, float]:  # pragma: no cover - compiled
    """Mean of ``b[b0:b0 + n]`` and the sum of its squared deviations, in numpy's order."""
    mb = pairwise_sum(b, b0, n) / n
    for i in range(n):
        db = b[b0 + i] - mb
        scratch[n + i] = db * db
    return mb, pairwise_sum(scratch, n, n)


@numba.njit(cache=True, nogil=True)
def corr(a: npt.NDArray[np.float64], a0: int, b: npt.NDArray[np.float64], b0: int,
         n: int) -> float:  # pragma: no cover - compiled
    """Pearson correlation of ``a[a0:a0 + n]`` and ``b[b0:b0 + n]``, 0 when either is flat,
    as numpy computes ``x = a - a.mean(); y = b - b.mean();
    (x * y).sum() / sqrt((x * x).sum() * (y * y).sum())``."""
    return _corr(a, a0, b, b0, n, np.empty(3 * n))


@numba.njit(cache=True, nogil=True)
def _shifted_corr(a: npt.NDArray[np.float64], a0: int, b: npt.NDArray[np.float64], b0: int, n: int, mb: float,
                  sbb: float, scratch: npt.NDArray[np.float64]) -> float:  # pragma: no cover - compiled
    """Pearson correlation as `corr`, given ``b``'s mean ``mb`` and sum of squared
    deviations ``sbb`` (`_spread`); ``scratch[n:2n]`` is left alone."""
    ma = pairwise_sum(a, a0, n) / n
    for i in range(n):
        da = a[a0 + i] - ma
        scratch[i] = da * da
        scratch[2 * n + i] = da * (b[b0 + i] - mb)
    den = np.sqrt(pairwise_sum(scratch, 0, n) * sbb)
    return pairwise_sum(scratch, 2 * n, n) / den if den > 1e-12 else 0.0


@numba.njit(cache=True, nogil=True)
def best_shift(ext: npt.NDArray[np.float64], start: int, template: npt.NDArray[np.float64], t0: int, n: int,
               reach: int) -> int:  # pragma: no cover - compiled
    """The shift ``d`` in ``-reach..reach`` that best lines ``ext[start + d:][:n]`` up with
    ``template[t0:t0 + n]``: highest correlation, then the smallest ``|d|``, then the
    first found, as Python's ``max(range(-reach, reach + 1), key=lambda d: (corr, -abs(d)))``
    picks it (a NaN correlation never wins, and one in first place is never beaten)."""
    # The template's side of every correlation is the same: computed once.
    scratch = np.empty(3 * n)
    mb, sbb = _spread(template, t0, n, scratch)
    best = -reach
    best_c = _shifted_corr(ext, start - reach, template, t0, n, mb, sbb, scratch)
    for d in range(-reach + 1, reach + 1):
        c = _shifted_corr(ext, start + d, template, t0, n, mb, sbb, scratch)
        if c == best_c:
            if abs(d) < abs(best):
                best = d
        elif c > best_c:
            best, best_c = d, c
    return best


@numba.njit(cache=True, nogil=True)
def median(values: npt.NDArray[np.float64]) -> float:  # pragma: no cover - compiled
    """``np.median(values)`` of a non-empty 1-D float64 array: the middle value, or the
    two middle values added and halved, found by selection rather than a full sort
    (the same order statistics, so the same result). Should a NaN slip in, the
    sort's answer is kept (numpy sorts NaN last), which selection would not give."""
    n = values.shape[0]
    for i in range(n):
        if values[i] != values[i]:
            s = np.sort(values)
            if n % 2:
                return float(s[n // 2])
            return float((s[n // 2 - 1] + s[n // 2]) / 2.0)
    s = values.copy()
    if n % 2:
        return select(s, n // 2)
    low = select(s, n // 2 - 1)
    high = s[n // 2]
    for i in range(n // 2 + 1, n):
        if s[i] < high:
            high = s[i]
    return float((low + high) / 2.0)


def merge_network(n: int) -> npt.NDArray[np.int64]:
    """The compare-exchange pairs ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort
    for ``n`` (a power of two) inputs, in the order to apply them: after each pair
    puts the smaller value first, the inputs are sorted (Batcher KE, Sorting networks
    and their applications, AFIPS 1968; 63 pairs for 16)."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"n must be a power of two, got {n}")
    pairs = []
    p = 1
    while p < n:  # merge sorted blocks of p into blocks of 2p
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):  # both in the same 2p block
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@numba.njit(cache=True, nogil=True)
def column_medians(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:  # pragma: no cover - compiled
    """``np.median(rows, axis=0)`` of a 2-D float64 array without NaN. With
    `TEMPLATE_BEATS` rows (the template once full, so nearly always) every column is
    sorted at once by a merge network whose compare-exchanges run along the rows,
    which the compiler vectorises: 5.0 us against 14.5 for the insertion sort per
    column used otherwise (16 x 141 values) (the template has at most 16 rows, far below where
    sorting routines pay off). Order statistics, so the same values either way."""
    n, width = rows.shape
    out = np.empty(width)
    if n == TEMPLATE_BEATS:
        s = rows.copy()
        for c in range(_NETWORK.shape[0]):
            a, b = s[_NETWORK[c, 0]], s[_NETWORK[c, 1]]
            for j in range(width):
                x, y = a[j], b[j]
                a[j], b[j] = min(x, y), max(x, y)
        for j in range(width):
            out[j] = (s[n // 2 - 1, j] + s[n // 2, j]) / 2.0
        return out
    col = np.empty(n)
    for j in range(width):
        for i in range(n):
            v = rows[i, j]
            k = i
            while k > 0 and col[k - 1] > v:
                col[k] = col[k - 1]
                k -= 1
            col[k] = v
        out[j] = col[n // 2] if n % 2 else (col[n // 2 - 1] + col[n // 2]) / 2.0
    return out


# The feature geometry (milliseconds, and indices on the 5 ms grid); see
# `detectors.beat_features` for what each feature means.
PRE_MS, POST_MS, STEP_MS, ALIGN_MS = 250, 450, 5, 60
LOCAL, LONG, IRREGULAR_LONG = 16, 256, 64   # RR history lengths (beats)
CONTEXT, CONTEXT_LONG, PAIRS = 16, 64, 32    # rhythm-context lengths (beats, pairs)
TEMPLATE_BEATS = 16
MIN_RR_S = 0.05                               # guards the ratios against a zero interval
PREMATURE = 0.9                               # pre-RR share of the local RR under which a beat is premature
N_FEATURES = 38
_M = ALIGN_MS // STEP_MS                      # alignment reach, grid steps
_LEN = (PRE_MS + POST_MS) // STEP_MS + 1      # the aligned grid
_EXT = _LEN + 2 * _M                          # the extended grid
_CENTRE = PRE_MS // STEP_MS
_P0, _P1 = (-250 + PRE_MS) // STEP_MS, (-70 + PRE_MS) // STEP_MS + 1
_Q0, _Q1 = (-100 + PRE_MS) // STEP_MS, (100 + PRE_MS) // STEP_MS + 1
_T0, _T1 = (100 + PRE_MS) // STEP_MS, (450 + PRE_MS) // STEP_MS + 1
_K150, _K40 = 150 // STEP_MS, 40 // STEP_MS
_NETWORK = merge_network(TEMPLATE_BEATS)

# Indices into the ``counts`` and ``scalars`` state arrays of `beat_row`.
N_RR, N_GRIDS, N_CORR_P, N_RMS_P, N_CORR_QRS, N_PAIRS = range(6)
PREV_PRE_LOCAL, LOCAL_RR = range(2)


@numba.njit(cache=True, nogil=True)
def _push(values: npt.NDArray[np.float64], count: int, value: float) -> int:  # pragma: no cover - compiled
    """Append to a bounded history kept oldest first (a deque with ``maxlen``); the new count."""
    if count < values.shape[0]:
        values[count] = value
        return count + 1
    for i in range(values.shape[0] - 1):
        values[i] = values[i + 1]
    values[-1] = value
    return count


@numba.njit(cache=True, nogil=True)
def _nanmedian(values: npt.NDArray[np.float64], count: int, last: int,
               default: float) -> float:  # pragma: no cover - compiled
    """Median of the last ``last`` of the first ``count`` values that are not NaN, or ``default``."""
    start = max(count - last, 0)
    kept = np.empty(count - start)
    k = 0
    for i in range(start, count):
        v = values[i]
        if v == v:
            kept[k] = v
            k += 1
    return median(kept[:k]) if k else default


@numba.njit(cache=True, nogil=True)
def _ptp(a: npt.NDArray[np.float64], lo: int, hi: int) -> float:  # pragma: no cover - compiled
    top = bottom = a[lo]
    for i in range(lo + 1, hi):
        top = max(top, a[i])
        bottom = min(bottom, a[i])
    return float(top - bottom)


@numba.njit(cache=True, nogil=True)
def _width(grid: npt.NDArray[np.float64]) -> tuple[float, float]:  # pragma: no cover - compiled
    """(ms during which |slope| exceeds a fifth of its maximum within +-150 ms of the
    peak, share of the slope energy within +-40 ms of it)."""
    n = 2 * _K150
    slope = np.empty(n)
    top = 0.0
    for i in range(n):
        j = _CENTRE - _K150 + i
        slope[i] = abs(grid[j + 1] - grid[j])
        if i == 0 or slope[i] > top:
            top = slope[i]
    if top <= 1e-12:
        return 0.0, 0.0
    first = last = -1
    bar = 0.2 * top
    for i in range(n):
        if slope[i] > bar:
            if first < 0:
                first = i
            last = i
    energy = slope * slope
    near = pairwise_sum(energy, _K150 - _K40, 2 * _K40)
    return float((last - first + 1) * STEP_MS), near / pairwise_sum(energy, 0, n)


@numba.njit(cache=True, nogil=True)
def _abs_sum(a: npt.NDArray[np.float64], lo: int, hi: int) -> float:  # pragma: no cover - compiled
    return pairwise_sum(np.abs(a[lo:hi]), 0, hi - lo)


@numba.njit(cache=True, nogil=True)
def _max_abs_step(a: npt.NDArray[np.float64], lo: int, hi: int) -> float:  # pragma: no cover - compiled
    top = abs(a[lo + 1] - a[lo])
    for i in range(lo + 1, hi - 1):
        top = max(top, abs(a[i + 1] - a[i]))
    return float(top)


@numba.njit(cache=True, nogil=True)
def _rms(d: npt.NDArray[np.float64], lo: int, hi: int) -> float:  # pragma: no cover - compiled
    sq = np.empty(hi - lo)
    for i in range(lo, hi):
        sq[i - lo] = d[i] * d[i]
    return float(np.sqrt(pairwise_sum(sq, 0, hi - lo) / (hi - lo)))


@numba.njit(cache=True, nogil=True)
def _grid(buf: npt.NDArray[np.float64], base: int, seen: int, start: int, lo: npt.NDArray[np.int64],
          hi: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:  # pragma: no cover - compiled
    """Box averages of the window from absolute sample ``start`` on the extended grid;
    samples before the first or after the last one seen repeat the edge sample."""
    if seen == 0 or buf.shape[0] == 0:  # nothing fed yet
        return np.zeros(lo.shape[0])
    span = hi[-1]
    cs = np.empty(span + 1)
    cs[0] = 0.0
    for k in range(span):
        i = min(max(start + k, 0), seen - 1) - base
        i = min(max(i, 0), buf.shape[0] - 1)
        cs[k + 1] = buf[i] if k == 0 else cs[k] + buf[i]
    g = np.empty(lo.shape[0])
    for j in range(lo.shape[0]):
        g[j] = (cs[hi[j]] - cs[lo[j]]) / (hi[j] - lo[j])
    return g


@numba.njit(cache=True, nogil=True)
def beat_row(buf: npt.NDArray[np.float64], base: int, seen: int, pre: int, lo: npt.NDArray[np.int64],
             hi: npt.NDArray[np.int64], fs: float, b: int, nxt: int, prev: int,
             rr: npt.NDArray[np.float64], grids: npt.NDArray[np.float64], corr_p: npt.NDArray[np.float64],
             rms_p: npt.NDArray[np.float64], corr_qrs: npt.NDArray[np.float64], pairs: npt.NDArray[np.float64],
             counts: npt.NDArray[np.int64], scalars: npt.NDArray[np.float64]
             ) -> npt.NDArray[np.float64]:  # pragma: no cover - compiled
    """The feature row of beat ``b`` (``nxt``/``prev``: the next and the previous beat, -1
    when there is none), updating the patient's histories in place: ``rr``, ``grids``
    and the context arrays hold their values oldest first, ``counts`` how many each
    holds (`N_RR`...), ``scalars`` the previous beat's pre-RR over its local RR and
    the local RR (`PREV_PRE_LOCAL`, `LOCAL_RR`)."""
    row = np.empty(N_FEATURES)
    # Rhythm.
    has_pre, has_post = prev >= 0, nxt >= 0
    rr_pre = (b - prev) / fs if has_pre else ((nxt - b) / fs if has_post else 0.8)
    rr_post = (nxt - b) / fs if has_post else rr_pre
    n_rr = counts[N_RR]
    rr_prev = rr[n_rr - 1] if n_rr else np.nan
    hist = rr[:n_rr].copy()
    recent = hist[max(n_rr - LOCAL, 0):]
    local = max(median(recent), MIN_RR_S) if n_rr else max(rr_pre, MIN_RR_S)
    long = max(median(hist), MIN_RR_S) if n_rr else max(rr_pre, MIN_RR_S)
    spread = 0.0
    if recent.shape[0]:
        spread = 1.4826 * median(np.abs(recent - local))
    spread = max(spread, 0.03 * local)
    irregular = median(np.abs(np.diff(recent))) / local if recent.shape[0] > 2 else 0.0
    older = hist[max(n_rr - IRREGULAR_LONG, 0):]
    irregular_long = mean(np.abs(np.diff(older))) / long if older.shape[0] > 2 else 0.0
    prev_pre = scalars[PREV_PRE_LOCAL]
    scalars[PREV_PRE_LOCAL] = rr_pre / local
    scalars[LOCAL_RR] = local
    pre_prev = rr_pre / max(hist[-1], MIN_RR_S) if n_rr else 1.0
    premature_share = 0.0
    if older.shape[0] > 1:
        k = 0
        for v in older[1:]:
            if v < PREMATURE * local:
                k += 1
        premature_share = k / (older.shape[0] - 1)
    counts[N_RR] = _push(rr, n_rr, rr_pre)
    row[0], row[1], row[2], row[3] = rr_pre / local, rr_post / local, rr_pre / long, rr_post / long
    row[4], row[5], row[6] = local / long, rr_post / max(rr_pre, MIN_RR_S), (rr_post - rr_pre) / local
    row[7], row[8], row[9], row[10] = irregular, irregular_long, (local - rr_pre) / spread, (rr_post - local) / spread
    row[11], row[12], row[13] = prev_pre, pre_prev, premature_share
    premature = row[0] < PREMATURE
    # Morphology against the template (the median of the recent on-time beats).
    ext = _grid(buf, base, seen, b - pre, lo, hi)
    n_grids = counts[N_GRIDS]
    if n_grids:
        template = column_medians(grids[:n_grids])
        shift = best_shift(ext, _M + _Q0, template, _Q0, _Q1 - _Q0, _M)
        grid = ext[_M + shift:_M + shift + _LEN].copy()
    else:
        shift = 0
        grid = ext[_M:_M + _LEN].copy()
        template = grid - median(grid)
    grid = grid - median(grid)
    if not premature or n_grids < 4:
        if n_grids < TEMPLATE_BEATS:
            grids[n_grids] = grid
            counts[N_GRIDS] = n_grids + 1
        else:
            for i in range(TEMPLATE_BEATS - 1):
                grids[i] = grids[i + 1]
            grids[-1] = grid
    amp, own = _ptp(template, _Q0, _Q1), _ptp(grid, _Q0, _Q1)
    scale = amp if amp > 1e-6 else (own if own > 1e-6 else 1.0)
    beat, tmpl = grid / scale, template / scale
    diff = beat - tmpl
    width, spread_share = _width(beat)
    t_width = _width(tmpl)[0]
    area, t_area = _abs_sum(beat, _Q0, _Q1), _abs_sum(tmpl, _Q0, _Q1)
    slope, t_slope = _max_abs_step(beat, _Q0, _Q1), _max_abs_step(tmpl, _Q0, _Q1)
    m = 14
    row[m] = _ptp(tmpl, _P0, _P1)
    row[m + 1] = corr(beat, _P0, tmpl, _P0, _P1 - _P0)
    row[m + 2] = corr(beat, _Q0, tmpl, _Q0, _Q1 - _Q0)
    row[m + 3] = corr(beat, _T0, tmpl, _T0, _T1 - _T0)
    row[m + 4] = corr(beat, 0, tmpl, 0, _LEN)
    row[m + 5] = float(shift * STEP_MS)
    row[m + 6], row[m + 7], row[m + 8] = _rms(diff, _P0, _P1), _rms(diff, _Q0, _Q1), _rms(diff, _T0, _T1)
    row[m + 9] = own / scale
    row[m + 10] = beat[_Q0:_Q1].max()
    row[m + 11] = -beat[_Q0:_Q1].min()
    row[m + 12] = area / t_area if t_area > 1e-9 else 1.0
    row[m + 13] = area * (STEP_MS / 1000.0)
    row[m + 14] = slope / t_slope if t_slope > 1e-9 else 1.0
    row[m + 15] = width
    row[m + 16] = width / t_width if t_width > 0 else 1.0
    row[m + 17] = spread_share
    row[m + 18] = np.sign(beat[_CENTRE]) * np.sign(tmpl[_CENTRE])
    # Rhythm context: the recent on-time beats, before this one joins them.
    c = m + 19
    row[c] = _nanmedian(corr_p, counts[N_CORR_P], CONTEXT, 0.0)
    row[c + 1] = _nanmedian(corr_p, counts[N_CORR_P], CONTEXT_LONG, 0.0)
    row[c + 2] = _nanmedian(rms_p, counts[N_RMS_P], CONTEXT, 0.0)
    row[c + 3] = _nanmedian(corr_qrs, counts[N_CORR_QRS], CONTEXT, 1.0)
    row[c + 4] = _nanmedian(pairs, counts[N_PAIRS], PAIRS, 0.0)
    on_pair = n_rr > 0 and min(rr_pre, rr_prev) >= PREMATURE * local
    counts[N_PAIRS] = _push(pairs, counts[N_PAIRS], abs(rr_pre - rr_prev) / local if on_pair else np.nan)
    counts[N_CORR_P] = _push(corr_p, counts[N_CORR_P], np.nan if premature else row[m + 1])
    counts[N_RMS_P] = _push(rms_p, counts[N_RMS_P], np.nan if premature else row[m + 6])
    counts[N_CORR_QRS] = _push(corr_qrs, counts[N_CORR_QRS], np.nan if premature else row[m + 2])
    return row
