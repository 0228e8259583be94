"""Small numeric building blocks for the numba kernels, bit for bit what numpy gives.

The per-window statistics of the quality index (`processors.sqi`) and the VF
detector (`detectors.vf`) were first written as a dozen numpy calls per window,
each costing a microsecond or more of call overhead on a few hundred samples; a
worker runs them for every patient every second. Their kernels now do the work in
one numba call, and must give exactly the same numbers, because labels, alarms and
snapshots are compared bit for bit across versions and restarts. So:

- `pairwise_sum` adds in numpy's order (``add.reduce`` on a contiguous float64
  array: blocks of up to 128 in eight interleaved accumulators, halves above that,
  added to the reduction's initial 0.0), so ``pairwise_sum(a, 0, n) / n`` is ``a.mean()`` to the bit;
- `quantile` interpolates linearly between two order statistics exactly as
  `detectors.vf` always did, ``lo + (hi - lo) * (pos - int(pos))`` after
  ``np.partition`` (``np.percentile``'s linear method, up to its own rounding),
  finding them by selection: the order statistics are the same values whatever
  algorithm finds them.

All are ``register_jitable``: plain Python when called from Python (the reference
twins in the tests), compiled inline into a numba kernel that calls them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba.extending import register_jitable

__all__ = ["pairwise_sum", "select", "quantile", "PAIRWISE_BLOCK"]

PAIRWISE_BLOCK = 128
"""numpy's ``PW_BLOCKSIZE``: runs this long or shorter are summed in one unrolled loop."""


@register_jitable
def _block_sum(a: npt.NDArray[np.float64], lo: int, n: int) -> float:
    res: float = -0.0
    if n < 8:
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = lo + 8
    end = lo + n - n % 8
    while i < end:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < lo + n:
        res += a[i]
        i += 1
    return res


@register_jitable
def pairwise_sum(a: npt.NDArray[np.float64], lo: int, n: int) -> float:
    """``a[lo:lo + n].sum()`` with numpy's rounding (see the module docstring).

    Iterative rather than recursive (numba compiles recursion poorly): the halves
    are split exactly as numpy splits them, into at most 128-long blocks, and the
    partial sums are combined in the same tree order.
    """
    if n <= PAIRWISE_BLOCK:
        return 0.0 + _block_sum(a, lo, n)
    # Explicit stack of (lo, n, stage); partial results on a value stack.
    los = np.empty(64, dtype=np.int64)
    ns = np.empty(64, dtype=np.int64)
    stage = np.zeros(64, dtype=np.int64)
    values = np.empty(64, dtype=np.float64)
    depth = 0
    nvalues = 0
    los[0], ns[0], stage[0] = lo, n, 0
    while depth >= 0:
        m = ns[depth]
        if m <= PAIRWISE_BLOCK:
            values[nvalues] = _block_sum(a, los[depth], m)
            nvalues += 1
            depth -= 1
            continue
        half = m // 2
        half -= half % 8
        if stage[depth] == 0:
            stage[depth] = 1
            los[depth + 1], ns[depth + 1], stage[depth + 1] = los[depth], half, 0
            depth += 1
        elif stage[depth] == 1:
            stage[depth] = 2
            los[depth + 1], ns[depth + 1], stage[depth + 1] = los[depth] + half, m - half, 0
            depth += 1
        else:
            nvalues -= 1
            values[nvalues - 1] = values[nvalues - 1] + values[nvalues]
            depth -= 1
    total: float = 0.0 + values[0]
    return total


@register_jitable
def select(a: npt.NDArray[np.float64], k: int) -> float:
    """The ``k``-th smallest value of ``a`` (0-based), rearranging ``a`` in place so that
    ``a[:k] <= a[k] <= a[k + 1:]`` (quickselect, median-of-three pivot). No NaN."""
    lo, hi = 0, a.shape[0] - 1
    while hi > lo:
        mid = (lo + hi) // 2
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return float(a[k])


@register_jitable
def quantile(a: npt.NDArray[np.float64], q: float) -> float:
    """The ``q`` quantile, linear between order statistics (see the module docstring);
    ``a`` is rearranged (pass a scratch copy). No NaN; at least one value."""
    n = a.shape[0]
    pos = q * (n - 1)
    lo = int(pos)
    low = select(a, lo)
    high = low
    if lo + 1 < n:
        high = a[lo + 1]
        for i in range(lo + 2, n):
            if a[i] < high:
                high = a[i]
    return float(low + (high - low) * (pos - lo))
