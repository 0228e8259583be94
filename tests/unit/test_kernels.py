"""The numeric building blocks of the numba kernels (processors/kernels.py) give
numpy's numbers to the bit, compiled and as plain Python."""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import numpy.typing as npt
import pytest

from processors.kernels import pairwise_sum, quantile, select

FloatArray = npt.NDArray[np.float64]


@numba.njit(cache=False)
def _sum_jit(a: FloatArray) -> float:
    return pairwise_sum(a, 0, a.shape[0])


@numba.njit(cache=False)
def _quantile_jit(a: FloatArray, q: float) -> float:
    return quantile(a.copy(), q)


def _sum_py(a: FloatArray) -> float:
    return float(pairwise_sum(a, 0, a.shape[0]))


def _quantile_py(a: FloatArray, q: float) -> float:
    return quantile(a.copy(), q)


SUMS: list[Callable[[FloatArray], float]] = [_sum_jit, _sum_py]
QUANTILES: list[Callable[[FloatArray, float], float]] = [_quantile_jit, _quantile_py]


def _arrays(count: int, seed: int) -> list[FloatArray]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        n = int(rng.integers(1, 1100))
        a = rng.normal(0, 1, n) * 10.0 ** float(rng.integers(-4, 5))
        if k % 4 == 0:
            a = np.round(a, 1)  # many ties
        out.append(a)
    return out


@pytest.mark.parametrize("total", SUMS, ids=["jit", "python"])
def test_pairwise_sum_is_numpys_sum_to_the_bit(total: Callable[[FloatArray], float]) -> None:
    for a in _arrays(300, seed=1):
        assert total(a) == a.sum(), a.shape
    # Lengths around numpy's block size and the unrolled loop, where the order changes.
    rng = np.random.default_rng(2)
    for n in (*range(1, 20), 127, 128, 129, 255, 256, 257, 1000, 1001, 4099):
        a = rng.normal(0, 1, n) * 1e3
        assert total(a) == a.sum(), n


@pytest.mark.parametrize("total", SUMS, ids=["jit", "python"])
@pytest.mark.parametrize("values", [[], [-0.0], [-0.0] * 9, [-0.0] * 300, [0.0, -0.0], [1e300, -1e300, 1.0]])
def test_pairwise_sum_of_degenerate_input(total: Callable[[FloatArray], float], values: list[float]) -> None:
    a = np.array(values, dtype=np.float64)
    expected = a.sum()
    got = total(a)
    assert got == expected and np.signbit(got) == np.signbit(expected)


def test_pairwise_sum_of_a_slice() -> None:
    a = np.random.default_rng(3).normal(0, 1, 900)
    assert pairwise_sum(a, 100, 700) == a[100:800].sum()


def _partition_quantile(a: FloatArray, q: float) -> float:
    """The reference: order statistics by ``np.partition``, interpolated as the VF
    detector always did (``np.percentile``'s linear method, rounded its own way)."""
    pos = q * (a.shape[0] - 1)
    lo = int(pos)
    hi = min(lo + 1, a.shape[0] - 1)
    part = np.partition(a, (lo, hi))
    return float(part[lo] + (part[hi] - part[lo]) * (pos - lo))


@pytest.mark.parametrize("quantile_of", QUANTILES, ids=["jit", "python"])
def test_quantile_is_the_partition_formula_to_the_bit(quantile_of: Callable[[FloatArray, float], float]) -> None:
    for k, a in enumerate(_arrays(200, seed=4)):
        for q in (0.0, 0.05, 0.5, 0.95, 0.99, 1.0, (k % 97) / 97):
            got = quantile_of(a, q)
            assert got == _partition_quantile(a, q), (a.shape, q)
            assert got == pytest.approx(np.percentile(a, 100 * q), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("quantile_of", QUANTILES, ids=["jit", "python"])
@pytest.mark.parametrize("values", [[3.0], [2.0, 2.0, 2.0], [-0.0, 0.0], [5.0, -1.0]])
def test_quantile_of_degenerate_input(quantile_of: Callable[[FloatArray, float], float], values: list[float]) -> None:
    a = np.array(values)
    for q in (0.0, 0.3, 0.5, 1.0):
        assert quantile_of(a, q) == _partition_quantile(a, q)


def test_select_partitions_around_the_kth_value() -> None:
    rng = np.random.default_rng(5)
    for _ in range(100):
        a = np.round(rng.normal(0, 1, int(rng.integers(1, 300))), 1)
        k = int(rng.integers(0, a.size))
        b = a.copy()
        assert select(b, k) == np.sort(a)[k]
        assert (b[:k] <= b[k]).all() and (b[k + 1:] >= b[k]).all()
        assert sorted(b.tolist()) == sorted(a.tolist())
