"""The streaming R-peak detector (processors/qrs.py), tested the way signal people do:
seeded synthetic ECG with known beats, chunk invariance, the numba kernel against its
pure-Python twin, degenerate input, and accuracy on annotated MIT-BIH records."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from processors.evaluate import match_beats
from processors.qrs import QrsDetector, ecg_findpeaks
from tests.conftest import REPO

DATA = Path(os.environ.get("VIGIL_DATA_DIR", REPO.parent / "shared" / "data"))
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


def synthetic_ecg(fs: float, seconds: float, seed: int, hr: float = 72.0, noise: float = 0.02
                  ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Gaussian P-QRS-T waves at a jittered rate plus baseline wander and noise; returns
    the signal (mV) and the true R-peak indices."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    beats = []
    at = 0.4
    while at < seconds - 0.4:
        beats.append(at)
        at += 60.0 / hr * (1 + 0.05 * rng.standard_normal())
    x = 0.1 * np.sin(2 * np.pi * 0.3 * t) + noise * rng.standard_normal(n)
    for b in beats:
        for offset, amp, width in ((-0.2, 0.12, 0.025), (-0.03, -0.1, 0.008), (0.0, 1.2, 0.01),
                                   (0.03, -0.2, 0.008), (0.25, 0.3, 0.045)):
            x += amp * np.exp(-0.5 * ((t - b - offset) / width) ** 2)
    return x, np.round(np.array(beats) * fs).astype(np.int64)


@pytest.mark.parametrize("fs", [125, 250, 360, 500, 1000])
def test_finds_every_synthetic_beat_at_any_rate(fs: int) -> None:
    x, truth = synthetic_ecg(fs, 60, seed=fs)
    peaks = ecg_findpeaks(x, sampling_rate=fs)
    score = match_beats(truth, peaks, tolerance=round(0.15 * fs))
    assert (score.fn, score.fp) == (0, 0)
    offset_ms = (peaks - truth) / fs * 1000
    assert np.all(np.abs(offset_ms) <= 16)  # a small constant lag (see processors/qrs.py) ...
    assert np.max(np.abs(np.diff(peaks) - np.diff(truth))) <= 1  # ... so RR intervals are exact to a sample


@pytest.mark.parametrize("hr", [35, 60, 120, 180])
def test_heart_rates_from_bradycardia_to_tachycardia(hr: float) -> None:
    x, truth = synthetic_ecg(360, 60, seed=int(hr), hr=hr)
    score = match_beats(truth, ecg_findpeaks(x, sampling_rate=360), tolerance=54)
    assert score.sensitivity == 1.0 and score.positive_predictivity == 1.0


def _record(name: str, seconds: float | None = None) -> tuple[npt.NDArray[np.float64], float, npt.NDArray[np.int64]]:
    import wfdb

    path = DATA / "mitdb" / name
    if not path.with_suffix(".hea").exists():
        pytest.fail(f"MIT-BIH record {path} not found: set VIGIL_DATA_DIR to the folder holding mitdb/")
    sampto = int(seconds * 360) if seconds else None
    rec = wfdb.rdrecord(str(path), channels=[0], sampto=sampto)
    ann = wfdb.rdann(str(path), "atr", sampto=sampto)
    ref = np.array([s for s, c in zip(ann.sample, ann.symbol, strict=True) if c in BEAT_SYMBOLS], dtype=np.int64)
    return rec.p_signal[:, 0], float(rec.fs), ref


@pytest.mark.parametrize("chunk", [1, 7, 250, 997])
def test_output_does_not_depend_on_chunking(chunk: int) -> None:
    x, fs, _ = _record("208", seconds=120)  # PVCs, fusion beats and noise: many decisions
    whole = ecg_findpeaks(x, sampling_rate=fs)
    assert len(whole) > 100
    np.testing.assert_array_equal(ecg_findpeaks(x, sampling_rate=fs, chunk_size=chunk), whole)


@pytest.mark.parametrize("source", ["synthetic", "mitdb-203"])
def test_numba_kernel_matches_its_python_twin(source: str) -> None:
    if source == "synthetic":
        x, _ = synthetic_ecg(250, 40, seed=3, noise=0.1)
        fs = 250.0
    else:
        x, fs, _ = _record("203", seconds=40)
    np.testing.assert_array_equal(ecg_findpeaks(x, sampling_rate=fs, jit=False), ecg_findpeaks(x, sampling_rate=fs))


@pytest.mark.parametrize(("name", "signal"), [
    ("empty", np.zeros(0)),
    ("zeros", np.zeros(3600)),
    ("constant", np.full(3600, 2.5)),
    ("all NaN", np.full(3600, np.nan)),
    ("clipped square wave", np.where(np.sin(np.arange(3600) / 20) > 0, 5.0, -5.0)),
])
def test_degenerate_input_is_handled(name: str, signal: npt.NDArray[np.float64]) -> None:
    peaks = ecg_findpeaks(signal, sampling_rate=360)
    assert peaks.dtype == np.int64
    if name in ("empty", "zeros", "constant", "all NaN"):
        assert peaks.size == 0
    assert np.all(np.diff(peaks) > 0)


def test_nan_gap_inside_a_record_does_not_stop_detection() -> None:
    x, truth = synthetic_ecg(360, 60, seed=9)
    x[7200:7560] = np.nan  # one second of dropout at 20 s
    peaks = ecg_findpeaks(x, sampling_rate=360)
    after = truth[truth > 7560 + 720]
    assert match_beats(after, peaks[peaks > 7560 + 700], tolerance=54).sensitivity == 1.0


def test_sampling_rate_is_checked() -> None:
    with pytest.raises(ValueError, match="125-1000 Hz"):
        QrsDetector(100)
    with pytest.raises(ValueError, match="125-1000 Hz"):
        QrsDetector(2000)


def test_peaks_come_out_in_order_across_calls() -> None:
    x, _ = synthetic_ecg(360, 30, seed=4)
    det = QrsDetector(360)
    seen: list[int] = []
    for i in range(0, len(x), 360):
        seen.extend(det.feed(x[i:i + 360]).tolist())
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert det.samples_seen == len(x)


# Accuracy floor (not a benchmark): whole records, lead 0, EC57 150 ms window.
@pytest.mark.parametrize(("name", "floor"), [("100", 0.995), ("113", 0.995), ("119", 0.995), ("230", 0.995)])
def test_accuracy_floor_on_mitdb(name: str, floor: float) -> None:
    x, fs, ref = _record(name)
    score = match_beats(ref, ecg_findpeaks(x, sampling_rate=fs, chunk_size=round(fs)), tolerance=round(0.15 * fs))
    assert score.sensitivity >= floor, score
    assert score.positive_predictivity >= floor, score


def test_peaks_strictly_increase_on_noisy_input() -> None:
    # Heavy muscle-like noise makes candidates crowd together; no peak may repeat.
    x, _ = synthetic_ecg(360, 120, seed=31, noise=0.6)
    peaks = ecg_findpeaks(x, sampling_rate=360)
    assert np.all(np.diff(peaks) > 0)


@pytest.mark.parametrize(("noise", "chunk"), [(0.02, 1), (0.02, 250), (0.6, 7), (0.6, 997)])
def test_no_peak_is_reported_before_the_horizon(noise: float, chunk: int) -> None:
    # Quiet, noisy (many search-backs) and chunk sizes down to one sample.
    x, _ = synthetic_ecg(250, 60, seed=32, noise=noise)
    det = QrsDetector(250)
    horizon = 0
    for i in range(0, len(x), chunk):
        peaks = det.feed(x[i:i + chunk])
        assert np.all(peaks >= horizon), (i, peaks, horizon)
        assert det.horizon >= horizon  # it never moves back
        horizon = det.horizon
    assert horizon > len(x) - 2 * 250  # and it does move on: within about a beat of the end
