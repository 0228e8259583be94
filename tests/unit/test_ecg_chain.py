"""The streaming ECG chain: beats released with their window's quality."""

from __future__ import annotations

import numpy as np
import pytest

from processors.ecg import EcgAnalyzer, warm_up
from processors.evaluate import match_beats
from tests.unit.test_qrs import synthetic_ecg


def run(x: np.ndarray, fs: float, chunk: int) -> tuple[list[tuple[int, str]], list[str]]:
    a = EcgAnalyzer(fs)
    beats, labels = [], []
    for i in range(0, x.size, chunk):
        u = a.feed(x[i:i + chunk])
        beats += [(b.sample, b.quality) for b in u.beats]
        labels += [w.label for w in u.windows]
    return beats, labels


def test_clean_ecg_gives_usable_beats_and_hrv() -> None:
    x, truth = synthetic_ecg(360, 60, seed=21, hr=75)
    a = EcgAnalyzer(360)
    update = a.feed(x)
    assert all(b.usable for b in update.beats)
    assert match_beats(truth[truth < 58 * 360], [b.sample for b in update.beats], 54).sensitivity == 1.0
    assert update.hrv.heart_rate is not None and abs(update.hrv.heart_rate - 75) < 3


def test_beats_in_noise_are_marked_and_kept_out_of_hrv() -> None:
    x, _ = synthetic_ecg(360, 60, seed=22)
    x[20 * 360:30 * 360] += np.random.default_rng(3).normal(0, 1.0, 10 * 360)  # 10 s of heavy noise
    a = EcgAnalyzer(360)
    update = a.feed(x)
    noisy = [b for b in update.beats if 20 * 360 <= b.sample < 30 * 360]
    assert noisy and all(not b.usable for b in noisy)
    assert all(b.usable for b in update.beats if b.sample < 19 * 360 or b.sample >= 31 * 360)
    assert update.hrv.nn_count < len(update.beats)


def test_same_beats_and_labels_whatever_the_chunking() -> None:
    x, _ = synthetic_ecg(250, 40, seed=23, noise=0.15)
    x[5000:6000] = np.nan
    x[7000:7010] += 3.0  # an artefact beat: a suspect window
    whole = run(x, 250, x.size)
    for chunk in (1, 7, 250, 997):
        assert run(x, 250, chunk) == whole


def test_an_implausibly_short_rr_marks_its_window_suspect() -> None:
    x, truth = synthetic_ecg(360, 40, seed=24, hr=60)
    # A sharp artefact 250 ms after one beat: a false "beat" at a quarter of the RR.
    spike_at = int(truth[20]) + 90
    x[spike_at - 3:spike_at + 4] += np.array([0.3, 0.9, 1.6, 2.0, 1.6, 0.9, 0.3])
    beats, labels = run(x, 360, 360)
    window = spike_at // 720
    assert labels[window] == "suspect"
    assert all(label == "ok" for k, label in enumerate(labels) if k != window)
    suspect = [s for s, q in beats if q == "suspect"]
    assert any(abs(s - spike_at) < 20 for s in suspect)  # the false beat is there, marked
    assert all(s // 720 == window for s in suspect)
    # ... and stays out of the rate: every usable RR is a real one.
    usable = np.array([s for s, q in beats if q == "ok"])
    assert np.all(np.diff(usable) > 0.7 * 360)


def test_windows_wait_for_every_beat_they_hold() -> None:
    x, _ = synthetic_ecg(250, 30, seed=25)
    a = EcgAnalyzer(250)
    seen_windows: list[int] = []
    for i in range(0, x.size, 100):
        u = a.feed(x[i:i + 100])
        seen_windows += [w.start for w in u.windows]
        released = {w.start for w in u.windows}
        # A beat comes out with its own window, never after it.
        assert all(b.sample - b.sample % 500 in released for b in u.beats)
    assert seen_windows == list(range(0, seen_windows[-1] + 1, 500))


def test_warm_up_runs() -> None:
    warm_up()


def test_a_restored_analyzer_continues_exactly() -> None:
    x, _ = synthetic_ecg(250, 60, seed=26, noise=0.2)
    x[3000:3400] = np.nan
    x[9000:9010] += 3.0
    whole = run(x, 250, 250)
    # Snapshot after every chunk, continue in a fresh analyzer each time.
    beats: list[tuple[int, str]] = []
    labels: list[str] = []
    snapshot = None
    sizes = []
    for i in range(0, x.size, 250):
        a = EcgAnalyzer(250)
        if snapshot is not None:
            a.restore(snapshot)
        u = a.feed(x[i:i + 250])
        beats += [(b.sample, b.quality) for b in u.beats]
        labels += [w.label for w in u.windows]
        snapshot = a.snapshot()
        sizes.append(len(snapshot))
    assert (beats, labels) == whole
    reference = EcgAnalyzer(250)
    for i in range(0, x.size, 250):
        final = reference.feed(x[i:i + 250]).hrv
    assert u.hrv == final and final.nn_count > 40
    assert max(sizes) < 64 * 1024


def test_a_snapshot_for_another_rate_is_refused() -> None:
    a = EcgAnalyzer(360)
    a.feed(np.zeros(1000))
    with pytest.raises(ValueError, match="windows"):
        EcgAnalyzer(250).restore(a.snapshot())
