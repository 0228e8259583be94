"""The compiled beat features (`detectors.beat_kernels`) against numpy.

Every kernel must give numpy's result bit for bit (the models were trained on numpy's
arithmetic), and whole feature rows must equal those of the plain-numpy
implementation the features were defined with (`tests.unit.beat_features_numpy`),
on synthetic signals with ectopic beats and on a real record."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from detectors import beat_kernels as k
from detectors.beat_features import FEATURE_NAMES, BeatFeatureStream, BeatRows
from tests.unit import beat_features_numpy as reference
from tests.unit.test_qrs import DATA, synthetic_ecg


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 41, 60, 127, 128, 129, 141, 200, 247, 248, 300])
def test_means_add_in_numpy_order(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(200):
        a = rng.normal(size=n) * 10.0 ** rng.uniform(-4, 4, n)  # magnitudes that expose the order
        assert k.mean(a) == np.mean(a)


@pytest.mark.parametrize("n", [1, 2, 3, 16, 17, 64, 141, 255, 256])
def test_medians_are_numpys(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(100):
        a = rng.normal(size=n).round(int(rng.integers(0, 3)))  # ties too
        assert k.median(a) == np.median(a)
        rows = rng.normal(size=(n, 141)).round(1)
        np.testing.assert_array_equal(k.column_medians(rows), np.median(rows, axis=0))


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_the_merge_network_sorts_every_input(n: int) -> None:
    # The 0-1 principle: a comparator network that sorts every input of zeros and ones sorts every input.
    pairs = k.merge_network(n)
    assert all(i < j for i, j in pairs)
    inputs = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    for i, j in pairs:
        lo, hi = np.minimum(inputs[:, i], inputs[:, j]), np.maximum(inputs[:, i], inputs[:, j])
        inputs[:, i], inputs[:, j] = lo, hi
    assert (np.diff(inputs, axis=1) >= 0).all()
    assert len(k.merge_network(16)) == 63
    with pytest.raises(ValueError):
        k.merge_network(12)


def test_full_template_medians_are_numpys_with_ties_and_wide_ranges() -> None:
    rng = np.random.default_rng(16)
    for _ in range(300):
        rows = rng.normal(size=(16, 141)) * 10.0 ** rng.uniform(-6, 6, (16, 141))
        rows[rng.random((16, 141)) < 0.2] = 0.0  # ties
        np.testing.assert_array_equal(k.column_medians(rows), np.median(rows, axis=0))


@pytest.mark.parametrize("n", [1, 2, 5, 16, 141])
def test_a_median_with_nan_is_the_sorted_middle_as_before(n: int) -> None:
    # Selection cannot order NaN; the kernel then takes the middle of numpy's sort
    # (NaN last), which is what it always returned.
    rng = np.random.default_rng(n)
    for _ in range(50):
        a = rng.normal(size=n)
        a[rng.integers(0, n, size=int(rng.integers(1, n + 1)))] = np.nan
        s = np.sort(a)
        expected = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0
        got = k.median(a)
        assert got == expected or (np.isnan(got) and np.isnan(expected))


def _numpy_corr(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def test_correlation_and_alignment_are_numpys() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        ext, template = rng.normal(size=165), rng.normal(size=141)
        ext[50:60] += 3.0 * rng.uniform()
        for lo, n in ((0, 37), (30, 41), (70, 71), (0, 141)):
            assert k.corr(ext, lo, template, lo, n) == _numpy_corr(ext[lo:lo + n], template[lo:lo + n])
        t_qrs = template[30:71]
        expected = max(range(-12, 13), key=lambda d: (_numpy_corr(ext[12 + d:][30:71], t_qrs), -abs(d)))
        assert k.best_shift(ext, 42, template, 30, 41, 12) == expected
    flat = np.zeros(165)
    assert k.corr(flat, 0, rng.normal(size=141), 0, 41) == 0.0
    assert k.best_shift(flat, 42, rng.normal(size=141), 30, 41, 12) == 0  # all ties: the smallest shift


def _rows_until(stream: BeatFeatureStream | reference.BeatFeatureStream, x: npt.NDArray[np.float64],
                beats: npt.NDArray[np.int64], step: int, stop: int, offset: int = 0) -> BeatRows:
    """Feed ``x`` (whose sample 0 is the stream's sample ``offset``) up to the stream's
    sample ``stop`` in chunks of ``step``, each beat with the chunk that reaches it."""
    parts = [BeatRows(np.empty(0, dtype=np.int64), np.empty((0, len(FEATURE_NAMES)), dtype=np.float32))]
    for i in range(offset, stop, step):
        end = min(i + step, stop)
        parts.append(stream.feed(x[i - offset:end - offset], beats[(beats >= i) & (beats < end)]))
    return BeatRows(np.concatenate([p.samples for p in parts]), np.concatenate([p.features for p in parts]))


def _rows(stream: BeatFeatureStream | reference.BeatFeatureStream, x: npt.NDArray[np.float64],
          beats: npt.NDArray[np.int64], step: int, offset: int = 0) -> BeatRows:
    """Feed all of ``x`` in chunks of ``step``, then flush."""
    head = _rows_until(stream, x, beats, step, offset + x.shape[0], offset)
    rest = stream.flush()
    return BeatRows(np.concatenate([head.samples, rest.samples]), np.concatenate([head.features, rest.features]))


def _with_ectopy(seed: int, fs: int, seconds: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """A synthetic ECG with some beats moved early and widened (premature, V-like),
    so that the template, the premature-beat rules and the context all take part."""
    x, beats = synthetic_ecg(fs, seconds, seed=seed)
    rng = np.random.default_rng(seed)
    x = x.copy()
    moved = beats.copy()
    for i in range(2, beats.shape[0] - 1, 5):
        early = int(0.25 * (beats[i] - beats[i - 1]))
        moved[i] = beats[i] - early
        w = int(0.06 * fs)
        lo, hi = max(moved[i] - 2 * w, 0), min(moved[i] + 2 * w, x.shape[0])
        x[lo:hi] += rng.uniform(0.5, 1.5) * np.hanning(hi - lo)
    return x, moved


@pytest.mark.parametrize(("seed", "fs", "step"), [(1, 360, 360), (2, 250, 250), (3, 500, 97), (4, 128, 1000)])
def test_rows_equal_the_numpy_definition(seed: int, fs: int, step: int) -> None:
    x, beats = _with_ectopy(seed, fs, 240)
    ours = _rows(BeatFeatureStream(fs), x, beats, step)
    theirs = _rows(reference.BeatFeatureStream(fs), x, beats, step)
    np.testing.assert_array_equal(ours.samples, theirs.samples)
    assert ours.features.shape[0] > 200
    np.testing.assert_array_equal(ours.features, theirs.features)


def test_rows_of_a_real_record_equal_the_numpy_definition() -> None:
    from processors.ecg import EcgAnalyzer
    from vigil.records import read_lead

    path = DATA / "mitdb" / "208"  # many V beats, fusion beats, couplets
    if not path.with_suffix(".dat").exists():
        pytest.fail(f"MIT-BIH record {path} not found: set VIGIL_DATA_DIR to the folder holding mitdb/")
    fs, x = read_lead(str(path), 0)
    x = x[:int(fs) * 300]
    analyzer = EcgAnalyzer(fs)
    beats = np.array([b.sample for i in range(0, x.shape[0], int(fs)) for b in analyzer.feed(x[i:i + int(fs)]).beats])
    ours = _rows(BeatFeatureStream(fs), x, beats, int(fs))
    theirs = _rows(reference.BeatFeatureStream(fs), x, beats, int(fs))
    assert ours.features.shape[0] > 300
    np.testing.assert_array_equal(ours.features, theirs.features)


def test_a_restored_stream_releases_the_same_rows() -> None:
    from processors.state import StateError

    x, beats = _with_ectopy(5, 250, 120)
    whole = _rows(BeatFeatureStream(250), x, beats, 250)
    for cut in (0, 7, 60 * 250, 119 * 250):  # before any beat, early, mid-record, near the end
        first = BeatFeatureStream(250)
        head = _rows_until(first, x, beats, 250, cut)
        restored = BeatFeatureStream.restore(first.snapshot())
        tail = _rows(restored, x[cut:], beats[beats >= cut], 250, offset=cut)
        np.testing.assert_array_equal(np.concatenate([head.samples, tail.samples]), whole.samples)
        np.testing.assert_array_equal(np.concatenate([head.features, tail.features]), whole.features)
    with pytest.raises(StateError):
        BeatFeatureStream.restore(b"junk")


def test_the_buffer_stays_short() -> None:
    x, beats = _with_ectopy(6, 250, 120)
    stream = BeatFeatureStream(250)
    _rows_until(stream, x, beats, 250, 120 * 250)
    assert len(stream.snapshot()) < 30_000  # about 2 s of signal, the RR history and 16 template beats
