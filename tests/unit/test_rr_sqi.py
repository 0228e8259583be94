"""RR/HRV and signal quality: seeded synthetic signals with known answers, degenerate
input, chunk invariance, and the noise stress records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from processors.rr import RrAnalyzer
from processors.sqi import QualityWindow, SignalQuality
from tests.unit.test_qrs import DATA, synthetic_ecg


def peaks_from_rr(rr_ms: list[float], fs: float = 1000.0) -> list[int]:
    return np.round(np.cumsum([500.0, *rr_ms]) * fs / 1000).astype(int).tolist()


def test_hrv_of_a_known_series() -> None:
    rr = [800.0, 860.0, 800.0, 860.0, 800.0, 860.0]
    a = RrAnalyzer(1000)
    a.add_peaks(peaks_from_rr(rr))
    m = a.metrics()
    assert m.nn_count == 6 and m.rejected_count == 0
    assert m.heart_rate == pytest.approx(60_000 / 830)
    assert m.sdnn_ms == pytest.approx(float(np.std(rr, ddof=1)))
    assert m.rmssd_ms == pytest.approx(60.0)
    assert m.pnn50 == pytest.approx(100.0)


def test_ectopic_beats_are_left_out_and_do_not_join_neighbours() -> None:
    rr = [1000.0] * 10 + [500.0, 1500.0] + [1000.0] * 10  # a premature beat and its pause
    a = RrAnalyzer(1000)
    a.add_peaks(peaks_from_rr(rr))
    m = a.metrics()
    assert m.rejected_count == 2 and m.nn_count == 20
    assert m.rmssd_ms == pytest.approx(0.0) and m.pnn50 == 0.0  # 1000 -> 1000 across the gap is not counted
    assert m.heart_rate == pytest.approx(60.0)


def test_window_forgets_old_intervals() -> None:
    a = RrAnalyzer(1000, window_s=10)
    a.add_peaks(peaks_from_rr([600.0] * 30 + [1000.0] * 3 + [1000.0] * 12))
    m = a.metrics()
    assert m.sdnn_ms == pytest.approx(0.0)  # only the 1000 ms intervals are left in 10 s
    assert m.heart_rate == pytest.approx(60.0)


def test_few_peaks_give_no_statistics_and_bad_order_is_refused() -> None:
    a = RrAnalyzer(360)
    assert a.metrics().heart_rate is None
    a.add_peaks([100, 460])
    assert a.metrics().heart_rate is None and a.metrics().sdnn_ms is None
    with pytest.raises(ValueError, match="must increase"):
        a.add_peaks([300])


def test_hrv_of_synthetic_ecg_through_the_detector() -> None:
    from processors.qrs import ecg_findpeaks

    x, truth = synthetic_ecg(360, 120, seed=11, hr=70)
    measured, expected = RrAnalyzer(360), RrAnalyzer(360)
    measured.add_peaks(ecg_findpeaks(x, sampling_rate=360))
    expected.add_peaks(truth)
    m, e = measured.metrics(), expected.metrics()
    assert m.heart_rate is not None and e.heart_rate is not None
    assert abs(m.heart_rate - e.heart_rate) < 0.5
    assert m.sdnn_ms is not None and e.sdnn_ms is not None and abs(m.sdnn_ms - e.sdnn_ms) < 2.0


@pytest.mark.parametrize(("name", "make", "label"), [
    ("zeros", lambda x: np.zeros_like(x), "flat"),
    ("constant", lambda x: np.full_like(x, 0.7), "flat"),
    ("NaN", lambda x: np.full_like(x, np.nan), "leads_off"),
    ("rail", lambda x: np.full_like(x, -9.9), "leads_off"),
    ("clipped", lambda x: np.clip(x * 4, -0.5, 0.5), "saturated"),
    ("white noise", lambda x: np.random.default_rng(1).normal(0, 0.5, x.shape), "noise"),
    ("baseline wander", lambda x: x + 3 * np.sin(2 * np.pi * 0.4 * np.arange(x.size) / 360), "noise"),
    ("clean", lambda x: x, "ok"),
])
def test_quality_labels(name: str, make: object, label: str) -> None:
    x, _ = synthetic_ecg(360, 20, seed=5)
    windows = SignalQuality(360).feed(make(x))  # type: ignore[operator]
    assert len(windows) == 10
    assert sum(w.label == label for w in windows) >= 9, [w.label for w in windows]


def test_quality_does_not_depend_on_chunking() -> None:
    x, _ = synthetic_ecg(250, 30, seed=6, noise=0.2)
    whole = SignalQuality(250).feed(x)
    q = SignalQuality(250)
    pieces = [w for i in range(0, x.size, 97) for w in q.feed(x[i:i + 97])]
    assert pieces == whole
    assert [w.start for w in whole] == list(range(0, x.size - 499, 500))


def test_noise_stress_record_is_flagged_where_the_noise_is() -> None:
    import wfdb

    path = DATA / "nstdb" / "118e00"
    if not path.with_suffix(".hea").exists():
        pytest.fail(f"{path} not found: set VIGIL_DATA_DIR to the folder holding nstdb/")
    x = wfdb.rdrecord(str(path), channels=[0]).p_signal[:, 0]
    windows = SignalQuality(360).feed(x)
    start = 5 * 60 * 360  # nst adds noise from minute 5, in alternating 2-minute segments
    noisy = [w for w in windows if w.start >= start and ((w.start - start) // (120 * 360)) % 2 == 0]
    clean = [w for w in windows if w not in noisy]
    share = lambda ws: sum(w.label == "noise" for w in ws) / len(ws)  # noqa: E731
    assert share(noisy) > 0.5 and share(clean) < 0.05
    assert not math.isnan(windows[0].kurtosis)


def _assess_numpy(w: np.ndarray, fs: float, start: int) -> QualityWindow:
    """The plain numpy formulation the kernels replaced, with the default thresholds
    (change aversion: labels, pSQI and basSQI to the bit; the kurtosis to rounding,
    since the kernel takes fourth powers as squares of squares, not through pow)."""
    nan = np.isnan(w)
    if nan.mean() > 0.5:
        return QualityWindow(start, "leads_off", 0.0, 0.0, 0.0)
    if nan.any():
        w = np.where(nan, np.nanmedian(w), w)
    if float(w.max() - w.min()) < 0.05:
        return QualityWindow(start, "leads_off" if abs(float(np.median(w))) > 5.0 else "flat", 0.0, 0.0, 0.0)
    tolerance = 1e-9 * max(abs(float(w.max())), abs(float(w.min())), 1.0)
    rail = (w >= w.max() - tolerance) | (w <= w.min() + tolerance)
    edges = np.diff(np.concatenate(([0], rail.astype(np.int8), [0])))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    if float(lengths[lengths >= 3].sum() / w.shape[0]) >= 0.05:
        return QualityWindow(start, "saturated", 0.0, 0.0, 0.0)
    centred = w - w.mean()
    variance = float(np.mean(centred**2))
    kurtosis = float(np.mean(centred**4) / variance**2)
    freqs = np.fft.rfftfreq(w.shape[0], 1.0 / fs)
    power = np.abs(np.fft.rfft(centred * np.hanning(w.shape[0]))) ** 2
    psqi = float(power[(freqs >= 5) & (freqs <= 15)].sum() / max(power[(freqs >= 5) & (freqs <= 40)].sum(), 1e-30))
    bassqi = float(1.0 - power[freqs < 1].sum() / max(power[freqs <= 40].sum(), 1e-30))
    noisy = kurtosis < 4.0 or psqi < 0.3 or bassqi < 0.5
    return QualityWindow(start, "noise" if noisy else "ok", kurtosis, psqi, bassqi)


def test_quality_kernels_give_the_numpy_formulation() -> None:
    rng = np.random.default_rng(9)
    x, _ = synthetic_ecg(250, 120, seed=7, noise=0.05)
    x[2000:2300] = np.nan                                  # a few samples missing
    x[5000:6000] = np.nan                                  # leads off
    x[8000:9000] = 0.2                                     # flat
    x[10000:11000] = np.clip(x[10000:11000] * 6, -1, 1)    # clipped
    x[12000:14000] += rng.normal(0, 0.6, 2000)             # noise
    x[15000:17000] += 2 * np.sin(2 * np.pi * 0.3 * np.arange(2000) / 250)  # wander
    for jit in (True, False):
        got = SignalQuality(250, jit=jit).feed(x)
        want = [_assess_numpy(x[w.start:w.start + 500], 250.0, w.start) for w in got]
        assert [(w.start, w.label, w.psqi, w.bassqi) for w in got] == [(w.start, w.label, w.psqi, w.bassqi)
                                                                      for w in want]
        assert [w.kurtosis for w in got] == pytest.approx([w.kurtosis for w in want], rel=1e-12)
        assert {w.label for w in got} >= {"ok", "noise", "flat", "saturated", "leads_off"}
    assert SignalQuality(250, jit=False).feed(x) == SignalQuality(250).feed(x)
