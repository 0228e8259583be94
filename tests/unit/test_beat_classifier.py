"""The ONNX beat classifier (detectors/beat_classifier.py), its features
(detectors/beat_features.py) and ``vigil beats`` (vigil/beats_cli.py): the committed
models load and hash as recorded, inference is batched and deterministic, int8 follows
fp32, features do not depend on chunking, and accuracy stays above a floor on two
DS2 test records (annotated MIT-BIH records, read from VIGIL_DATA_DIR)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from detectors.beat_classifier import (
    AAMI_CLASSES, BeatClassifier, BeatModelError, model_path, shared_classifier,
)
from detectors.beat_features import FEATURE_NAMES, FEATURE_SET, BeatFeatureStream, beat_features
from detectors.training.mlp import ClassGate, Ensemble, Member, MlpConfig, to_onnx, train_ensemble
from detectors.training.mitdb import Confusion, RecordData, record_data
from tests.unit.test_qrs import DATA, synthetic_ecg
from vigil.beats_cli import run

F = len(FEATURE_NAMES)


def _mitdb(name: str) -> Path:
    path = DATA / "mitdb" / name
    if not path.with_suffix(".dat").exists():
        pytest.fail(f"MIT-BIH record {path} not found: set VIGIL_DATA_DIR to the folder holding mitdb/")
    return path


@pytest.fixture(scope="module")
def record_100() -> RecordData:
    _mitdb("100")
    return record_data("100", folder=DATA / "mitdb")


@pytest.fixture(scope="module")
def record_200() -> RecordData:
    _mitdb("200")
    return record_data("200", folder=DATA / "mitdb")


def _rows(seed: int, n: int) -> npt.NDArray[np.float32]:
    """Plausible rows: real ones from a synthetic ECG, jittered."""
    x, beats = synthetic_ecg(360, 60, seed=seed)
    rows = beat_features(x, beats, sampling_rate=360).features
    rng = np.random.default_rng(seed)
    picked = rows[rng.integers(0, rows.shape[0], n)]
    return (picked * rng.uniform(0.8, 1.2, picked.shape)).astype(np.float32)


# --- models ---------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_model_loads_with_version_and_checksum_of_the_file(variant: str) -> None:
    path = model_path("int8" if variant == "int8" else "fp32")
    clf = BeatClassifier(path)
    assert clf.model_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert clf.model_version == ("beats-v2.int8" if variant == "int8" else "beats-v2")
    assert clf.provenance.as_metadata() == {"model_version": clf.model_version, "model_sha256": clf.model_sha256}
    assert path.stat().st_size < 5 * 1024 * 1024


def test_model_card_records_the_committed_files() -> None:
    card = (model_path("fp32").parent / "beats-v2.md").read_text()
    for path in (model_path("fp32"), model_path("int8")):
        assert hashlib.sha256(path.read_bytes()).hexdigest() in card
    assert "DS2" in card and "Intended use" in card and "Limits" in card


def test_shared_classifier_is_one_session_per_process() -> None:
    assert shared_classifier("fp32") is shared_classifier("fp32")
    assert shared_classifier("int8") is not shared_classifier("fp32")


def test_unreadable_or_foreign_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BeatModelError, match="cannot read"):
        BeatClassifier(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(BeatModelError, match="not a loadable ONNX model"):
        BeatClassifier(junk)


# --- inference ------------------------------------------------------------------------------

def test_batched_output_has_one_label_per_row() -> None:
    clf = shared_classifier("fp32")
    rows = _rows(1, 37)
    labels, probabilities = clf.predict(rows)
    assert labels.shape == (37,) and probabilities.shape == (37, len(AAMI_CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    classes = clf.classify(rows)
    assert len(classes) == 37 and set(classes) <= set(AAMI_CLASSES)
    assert classes == [AAMI_CLASSES[i] for i in labels]
    empty, p0 = clf.predict(np.empty((0, F), dtype=np.float32))
    assert empty.shape == (0,) and p0.shape == (0, len(AAMI_CLASSES))


def test_wrong_width_is_rejected() -> None:
    with pytest.raises(ValueError, match=f"features must be \\[n, {F}\\]"):
        shared_classifier("fp32").predict(np.zeros((3, F - 1), dtype=np.float32))


def test_deterministic_and_independent_of_batching() -> None:
    clf = shared_classifier("fp32")
    rows = _rows(2, 64)
    first, p1 = clf.predict(rows)
    again, p2 = clf.predict(rows)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(p1, p2)
    one_by_one = np.concatenate([clf.predict(rows[i:i + 1])[0] for i in range(rows.shape[0])])
    np.testing.assert_array_equal(first, one_by_one)


def _tiny_ensemble(seed: int, gate: ClassGate | None) -> Ensemble:
    rng = np.random.default_rng(seed)
    members = [Member(rng.normal(size=(F, 8)), rng.normal(size=8), rng.normal(size=(8, 5)), rng.normal(size=5))
               for _ in range(3)]
    return Ensemble(np.zeros(F), np.ones(F), members, np.array([0.0, 0.5, -0.5, 0.0, 0.0]), gate)


@pytest.mark.parametrize("gated", [False, True])
def test_graph_decides_as_the_numpy_ensemble(gated: bool, tmp_path: Path) -> None:
    """The exported graph (bias and S gate included) gives the labels training scored."""
    gate = ClassGate(AAMI_CLASSES.index("S"), FEATURE_NAMES.index("p_consistency"), 0.4) if gated else None
    ens = _tiny_ensemble(7, gate)
    meta = {"model_version": "test", "feature_set": FEATURE_SET, "n_features": str(F), "classes": ",".join(AAMI_CLASSES)}
    path = tmp_path / "tiny.onnx"
    path.write_bytes(to_onnx(ens, n_features=F, metadata=meta, doc="test").SerializeToString())
    rows = np.random.default_rng(8).normal(0.0, 1.0, (500, F)).astype(np.float32)
    labels, probabilities = BeatClassifier(path).predict(rows)
    expected = ens.probabilities(rows)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    np.testing.assert_array_equal(labels, ens.decide(expected, rows))
    if gated:
        blocked = rows[:, FEATURE_NAMES.index("p_consistency")] < 0.4
        assert blocked.any() and not np.any(labels[blocked] == AAMI_CLASSES.index("S"))
        assert np.any(labels[~blocked] == AAMI_CLASSES.index("S"))


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_committed_model_calls_no_s_where_the_p_waves_are_lost(variant: str) -> None:
    """The committed gate: S is never given where the recent P waves do not match the template."""
    clf = shared_classifier("int8" if variant == "int8" else "fp32")
    gate = clf.metadata["s_gate"]
    if gate == "none":
        pytest.skip("this model has no S gate")
    rows = _rows(9, 400)
    column = FEATURE_NAMES.index("p_consistency")
    below = float(gate.rsplit("<", 1)[1])
    rows[::2, column] = below - 0.05
    rows[::2, FEATURE_NAMES.index("pre_local")] = 0.6  # premature: the network alone may well say S
    labels, _ = clf.predict(rows)
    assert not np.any(labels[::2] == AAMI_CLASSES.index("S"))


def test_record_bagging_is_seeded_and_needs_the_records() -> None:
    rng = np.random.default_rng(10)
    x = rng.normal(size=(600, 4))
    y = (x[:, 0] > 0).astype(np.int64)
    groups = np.repeat(np.array(["a", "b", "c", "d"]), 150)
    cfg = MlpConfig(hidden=4, epochs=2, members=3, record_share=0.5)
    with pytest.raises(ValueError, match="groups"):
        train_ensemble(x, y, 2, cfg)
    first, again = train_ensemble(x, y, 2, cfg, groups), train_ensemble(x, y, 2, cfg, groups)
    np.testing.assert_array_equal(first.probabilities(x), again.probabilities(x))
    everything = train_ensemble(x, y, 2, MlpConfig(hidden=4, epochs=2, members=3), groups)
    assert not np.array_equal(first.probabilities(x), everything.probabilities(x))


def test_int8_agrees_with_fp32_on_most_beats(record_200: RecordData) -> None:
    rows = record_200.rows.features
    fp32, _ = shared_classifier("fp32").predict(rows)
    int8, _ = shared_classifier("int8").predict(rows)
    assert np.mean(fp32 == int8) >= 0.97
    assert len(set(fp32.tolist())) >= 3  # a record with N, S and V: agreement is not trivial


# --- features -------------------------------------------------------------------------------

def _chunked(x: npt.NDArray[np.float64], beats: npt.NDArray[np.int64], size: int, late: int) -> np.ndarray:
    """Feed ``size``-sample chunks, handing each beat over ``late`` samples after it (as the
    quality-gated chain does), and stack all rows."""
    stream = BeatFeatureStream(360)
    parts = []
    given = 0
    for i in range(0, x.shape[0], size):
        end = min(i + size, x.shape[0])
        ready = beats[given:][beats[given:] + late < end]
        given += ready.shape[0]
        parts.append(stream.feed(x[i:end], ready))
    parts.append(stream.feed([], beats[given:]))
    parts.append(stream.flush())
    samples = np.concatenate([p.samples for p in parts])
    np.testing.assert_array_equal(samples, beats)
    return np.concatenate([p.features for p in parts])


@pytest.mark.parametrize(("size", "late"), [(1, 0), (7, 30), (250, 720), (1000, 0), (4096, 1500)])
def test_features_do_not_depend_on_chunking(size: int, late: int) -> None:
    x, beats = synthetic_ecg(360, 40, seed=3)
    whole = beat_features(x, beats, sampling_rate=360).features
    assert whole.shape == (beats.shape[0], F) and np.all(np.isfinite(whole))
    np.testing.assert_array_equal(_chunked(x, beats, size, late), whole)


def test_features_on_a_real_record_do_not_depend_on_chunking(record_100: RecordData) -> None:
    import wfdb

    x = wfdb.rdrecord(str(_mitdb("100")), channels=[0], sampto=360 * 120).p_signal[:, 0]
    beats = record_100.rows.samples[record_100.rows.samples < 360 * 120]
    whole = beat_features(x, beats, sampling_rate=360).features
    np.testing.assert_array_equal(_chunked(x, beats, 333, 500), whole)


def test_a_beat_waits_for_the_next_one() -> None:
    x, beats = synthetic_ecg(360, 10, seed=4)
    stream = BeatFeatureStream(360)
    assert len(stream.feed(x, beats[:1])) == 0  # no post-RR yet
    released = stream.feed([], beats[1:2])
    assert released.samples.tolist() == [beats[0]]
    assert stream.flush().samples.tolist() == [beats[1]]


def test_premature_beat_shows_in_the_rhythm_features() -> None:
    x, beats = synthetic_ecg(360, 30, seed=5, noise=0.0)
    early = beats.copy()
    early[20] = beats[19] + (beats[20] - beats[19]) * 6 // 10  # 40 % early: no new signal, only its timing
    rows = beat_features(x, early, sampling_rate=360).features
    pre = FEATURE_NAMES.index("pre_local")
    assert rows[20, pre] < 0.7 and abs(rows[10, pre] - 1.0) < 0.15


def _rhythm_ecg(fs: int, seconds: float, seed: int, *, fibrillation: bool
                ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Sinus rhythm (P-QRS-T, RR +-3 %), or atrial fibrillation: no P wave, f waves
    (4-8 Hz, wandering phase) and an RR that varies by +-25 %."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    x: npt.NDArray[np.float64] = 0.01 * rng.standard_normal(size=(t.shape[0],))
    if fibrillation:
        for f in (4.3, 5.7, 7.1):
            x += 0.05 * np.sin(2 * np.pi * f * t + np.cumsum(rng.normal(0.0, 0.05, t.shape[0])))
    beats, at = [], 0.5
    while at < seconds - 0.6:
        beats.append(at)
        at += 0.8 * (1 + (0.25 * rng.uniform(-1, 1) if fibrillation else 0.03 * rng.standard_normal()))
    waves = [(-0.03, -0.1, 0.008), (0.0, 1.2, 0.01), (0.03, -0.2, 0.008), (0.25, 0.3, 0.045)]
    if not fibrillation:
        waves.append((-0.18, 0.15, 0.02))
    for b in beats:
        for offset, amp, width in waves:
            x += amp * np.exp(-0.5 * ((t - b - offset) / width) ** 2)
    return x, np.round(np.array(beats) * fs).astype(np.int64)


def test_p_wave_consistency_tells_sinus_rhythm_from_fibrillation() -> None:
    columns = [FEATURE_NAMES.index(n) for n in ("p_consistency", "p_consistency_long", "irregularity_on_time")]
    sinus = beat_features(*_rhythm_ecg(360, 120, 11, fibrillation=False), sampling_rate=360).features[80:, columns]
    af = beat_features(*_rhythm_ecg(360, 120, 12, fibrillation=True), sampling_rate=360).features[80:, columns]
    assert np.median(sinus[:, 0]) > 0.8 and np.median(sinus[:, 1]) > 0.8
    assert np.median(af[:, 0]) < 0.4 and np.median(af[:, 1]) < 0.4
    assert np.median(sinus[:, 2]) < 0.05 < np.median(af[:, 2])


def test_out_of_order_beats_are_rejected() -> None:
    stream = BeatFeatureStream(360)
    stream.feed(np.zeros(1000), [100, 400])
    with pytest.raises(ValueError, match="strictly increasing"):
        stream.feed(np.zeros(10), [400])


@pytest.mark.parametrize("signal", ["zeros", "nan", "constant"])
def test_degenerate_signals_give_finite_rows(signal: str) -> None:
    x = {"zeros": np.zeros(3600), "nan": np.full(3600, np.nan), "constant": np.full(3600, 1.5)}[signal]
    rows = beat_features(x, np.arange(200, 3600, 300), sampling_rate=360)
    assert rows.features.shape == (12, F) and np.all(np.isfinite(rows.features))
    assert len(beat_features(x, np.empty(0, dtype=np.int64), sampling_rate=360)) == 0


def test_sampling_rate_is_checked() -> None:
    with pytest.raises(ValueError, match="sampling_rate"):
        BeatFeatureStream(10)


# --- CLI and accuracy -----------------------------------------------------------------------

def test_cli_json_is_the_training_chain(capsys: pytest.CaptureFixture[str], record_100: RecordData) -> None:
    assert run(str(_mitdb("100")), 0, True) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"fs", "beats"} and out["fs"] == 360.0
    samples = [b[0] for b in out["beats"]]
    classes = [b[1] for b in out["beats"]]
    assert all(isinstance(s, int) for s in samples) and samples == sorted(set(samples))
    assert set(classes) <= set(AAMI_CLASSES)
    assert abs(len(samples) - 2273) <= 25  # record 100 has 2273 annotated beats
    # The same chain and model as training and the benchmark:
    assert samples == record_100.rows.samples.tolist()
    assert classes == shared_classifier("fp32").classify(record_100.rows.features)


def test_cli_other_channel_and_int8(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(_mitdb("100")), 1, False, model="int8") == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) > 2000 and set(lines[1::2]) <= set(AAMI_CLASSES)


def test_cli_reports_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(str(tmp_path / "nothing"), 0, True) == 2
    assert "no WFDB record" in capsys.readouterr().err
    assert run(str(_mitdb("100")), 5, True) == 2
    assert run(str(_mitdb("100")), 0, True, model="fp16") == 2


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_accuracy_floor_on_ds2_records(variant: str, record_100: RecordData, record_200: RecordData) -> None:
    """DS2 records are never trained on. Floors sit a few points under the committed
    model's figures (see detectors/models/beats-v2.md): a regression trips them."""
    clf = shared_classifier("int8" if variant == "int8" else "fp32")
    c100, c200 = Confusion.empty(), Confusion.empty()
    c100.add(record_100.labels, clf.predict(record_100.rows.features)[0], record_100.missed)
    c200.add(record_200.labels, clf.predict(record_200.rows.features)[0], record_200.missed)
    assert c100.sensitivity("S") >= 0.85  # 33 isolated premature atrial beats in sinus rhythm
    assert c100.accuracy() >= 0.95
    assert c200.sensitivity("V") >= 0.90 and c200.predictivity("V") >= 0.95  # 826 ventricular beats
    assert c200.accuracy() >= 0.93
