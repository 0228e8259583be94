"""Train the AAMI beat classifier on MIT-BIH DS1 and write ``detectors/models/beats-v2*``.

    python -m detectors.training.train_beats [--out detectors/models]

Protocol (inter-patient, de Chazal et al. 2004): every choice is made on DS1 only.
The 22 DS1 records go through the worker's streaming chain (`EcgAnalyzer` ->
`BeatFeatureStream`, 1-second chunks, the MLII lead); the S gate (S ruled out where
the recent P waves do not match the template) and the class bias are tuned on the
out-of-fold probabilities of a 6-fold cross-validation *by record* (no patient is in
both the training and the scored part of a fold); the final ensemble is then trained
on all of DS1. The DS2 records present are scored once, at the end, with the exported
ONNX files through `BeatClassifier`: they are a test set and nothing is fitted to them.

Reproducible: fixed seeds, one BLAS thread, a fixed fold assignment; two runs write
the same bytes. About two minutes on one core.
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
from detectors.training.mlp import ClassGate, Ensemble, MlpConfig, decide, to_onnx, train_ensemble  # noqa: E402
from detectors.training.model_card import write_model_card  # noqa: E402

__all__ = ["CONFIG", "FOLDS", "GATE_FEATURE", "GATE_GRID", "S_IRREGULAR_MAX", "TARGETS", "cross_validate",
           "s_precision_at", "tune_bias", "tune_gate", "main"]

CONFIG = MlpConfig(members=24, class_power=0.75, record_share=0.75)
FOLDS = (("209", "101", "115", "230"), ("201", "106", "112", "122"), ("207", "108", "116"),
         ("118", "119", "124", "205"), ("220", "203", "208"), ("223", "109", "114", "215"))
"""DS1 split by record, spreading the records rich in S (209 201 207 118 220 223) and
V (208 203 119 106 223) over different folds."""
TARGETS = {"S": (0.70, 0.50), "V": (0.90, 0.90)}
"""(Se, +P) the issue asks for on DS2; the bias search balances the two classes against them."""
_BIAS_GRID = np.arange(-2.0, 2.01, 0.25)
GATE_FEATURE = "p_consistency"
"""S is ruled out when the recent on-time beats' P waves do not match the template's
(atrial fibrillation or flutter: prematurity means little there)."""
GATE_GRID: tuple[float | None, ...] = (None, 0.1, 0.2, 0.3, 0.4, 0.5)
_GATE_COLUMN = FEATURE_NAMES.index(GATE_FEATURE)
_MATCHED_SE = (0.60, 0.65, 0.70)


DS2_LOOKS = (
    "nothing is fitted to it. Development runs of beats-v1 printed its figures twice, and beats-v1's "
    "card (DS2 S Se 54.7, +P 10.1, most false S in the atrial fibrillation records 202 and 210) was "
    "read before beats-v2 was designed, so the choice to work on S in atrial fibrillation was informed "
    "by DS2 errors as well as by DS1 ones. Every beats-v2 choice (features, ensemble, S gate, class "
    "bias) was made on DS1 cross-validation alone, and DS2 was scored only by the run that wrote these "
    "files (run more than once: the later runs, made only to change this card's wording, wrote "
    "byte-identical models and the same figures). Nothing was changed after the DS2 figures were seen. A later "
    "variant with one training weight changed (Q) and one with three more features (a long template), "
    "in the development notes, were each chosen on DS1 cross-validation, then scored on DS2 once by a "
    "run that wrote other files; neither was adopted, and their DS2 figures are given there. Training "
    "on noisy copies, the last variant there, was turned down before any DS2 scoring. Treat DS2 "
    "as a lightly used test set, not a pristine one."
)
"""What the model card says about how the test set was used: honesty about peeking."""
DEVELOPMENT = (
    "Every idea was scored on the DS1 6-fold cross-validation by record, nothing else. Two figures per "
    "run: S Se / +P after the bias search (the search's objective saturates once both targets are met, "
    "so these move with the grid), and the mean S +P at S Se 60, 65 and 70 % (S threshold moved to "
    "match each; comparable between runs), without and with the S gate `p_consistency` < 0.4. The "
    "out-of-fold S figures move by up to 5 points (10 for a 24-member ensemble on half the records) "
    "with the training seed alone (most S beats are in 5 records, most false S in 2 atrial "
    "fibrillation records), so the seed was varied (A: 20260901, the one used here; B: 7), and only "
    "changes that held across seeds were kept. The gate figures of beats-v1 put v1's network behind the "
    "gate of this model (its `p_consistency` computed beside it).",
    "",
    "| run | S Se / +P | mean S +P at Se 60-70, no gate / gate | kept |",
    "|---|---|---|---|",
    "| beats-v1 (33 features, 12 members), seeds A / B | 67.7 / 48.9, 66.9 / 46.4 | 51.4 / 63.3, 47.6 / 60.4 | baseline |",
    "| + every feature minus its causal median over the patient's last 64 beats (adaptive normalisation) "
    "| 60.2 / 46.3 | 35.8 / 43.8 | no |",
    "| + RR extras: pre-RR over the mean of the last 3 RR, rank of the prematurity among the last 128 "
    "beats, share of large RR changes over 32, post-RR over the last 3 | 68.0 / 47.9 | 53.4 / 64.0 | no (within noise) |",
    "| gradient-boosted trees (scikit-learn HistGradientBoosting, 200 trees) on the v1 features "
    "| 53.1 / 40.7 | - | no |",
    "| + P-wave consistency (median P-region correlation of the last 16 on-time beats), P-region noise, "
    "on-time RR irregularity; seeds A / B | 69.6 / 53.6, 68.0 / 53.6 | 60.1 / 67.0, 56.9 / 64.8 | yes |",
    "| same, 64 hidden units / class_power 0.5 / class_power 1.0 | 69.1 / 52.2, 67.9 / 51.5, 70.8 / 50.2 "
    "(V 83.1 / 80.3) | 57.3, 54.8, 64.0 | no (V lost with 1.0) |",
    "| + P consistency over 64 beats, QRS consistency; seeds A / B | 70.2 / 53.5, 68.0 / 48.7 "
    "| 63.6 / 70.5, 53.3 / 60.6 | yes (`vigil-beat-features-2`) |",
    "| + P-wave lag search (+-40 ms): best correlation, lag, amplitude ratio | 69.9 / 52.2 | 63.2 / 69.4 | no |",
    "| rule: no S unless pre-RR < 0.9-1.0 of the local median | bias search: S 53-64 / 42-49 | - | no: 28 % "
    "of S beats (runs) are not premature against the local median |",
    "| features 2 as streamed, 12 members; seeds A / B | 69.9 / 53.6, 68.2 / 53.0 | 62.1 / 69.3, 57.5 / 64.3 | - |",
    "| 24 members, each on 75 % of the records; seeds A / B | 70.6 / 52.4, 70.4 / 54.6 | 64.1 / 69.7, 61.6 / 68.2 "
    "| **chosen** |",
    "| 24 members on 50 % / 35 % of the records | 71.3 / 52.4, 69.3 / 48.9 (seeds A / B) / 68.9 / 50.2 "
    "| 73.2 / 77.6, 55.8 / 65.3 / 54.5 / 62.2 | no (seed-dependent) |",
    "| 48 members on 75 % / 100 % of the records | 69.6 / 52.0 / 70.6 / 49.3 | 60.6 / 67.2 / 58.3 / 64.9 | no |",
    "| further vetoes with the gate: P consistency over 64 beats < 0.4, on-time irregularity > 0.1 or 0.15, "
    "pre-RR > 1.05 of the local median | - | -1.5 to +0.5 against the gate alone | no |",
    "",
    "The S gate on `p_consistency` raised the matched-sensitivity S +P by 4 to 12 points in every run "
    "above (its threshold is chosen by the training run itself, as described above this section). The "
    "chosen run is the one this script repeats (seed A); its figures after the gate and the bias search "
    "are in the Metrics table.",
    "",
    "Tried after beats-v2 and not adopted: the weight of Q. Its 127 training rows are artefact "
    "detections, lifted 83-fold by `class_power` like a rare class; out of fold (seed A) the network "
    "gave Q to 313 real beats (134 V, 149 N, 21 S, 9 F) for 36 of the 122 artefact detections, and of "
    "the 454 reference V beats in runs of 3 or more only 164 came out V. Full development runs (24 "
    "members, gate and bias searched per run), with the Q weight set after the `class_power` weights; "
    "seeds A / B:",
    "",
    "| Q weight (N = 1) | V Se / +P | S Se / +P | mean S +P at Se 60-70, gate | V in runs of 3+ (of 454) | accuracy |",
    "|---|---|---|---|---|---|",
    "| 83 (as shipped) | 86.1 / 85.1, 85.2 / 84.3 | 71.1 / 54.4, 70.0 / 62.0 | 69.7, 68.2 | 164, 155 | 95.27, 95.66 |",
    "| 9 | 87.8 / 86.4, 87.5 / 85.8 | 70.4 / 60.8, 71.6 / 51.7 | 70.9, 65.2 | 191, 185 | 96.22, 95.77 |",
    "| 2 | 87.5 / 86.6, 87.6 / 86.0 | 70.6 / 60.3, 70.0 / 57.1 | 70.4, 65.5 | 194, 190 | 96.15, 96.05 |",
    "| 1 | 87.9 / 86.4, 87.5 / 85.8 | 70.3 / 60.3, 70.2 / 56.6 | 70.8, 65.6 | 192, 187 | 96.31, 96.08 |",
    "",
    "Weight 1 was chosen on these figures and trained as a candidate beats-v3 (seed A). It no longer "
    "gives Q (0 of 122 artefact detections; 46 are called V, against 34). Through the worker's "
    "alarms (`bench/ecg_alarms.py`) it found more VT (challenge true VT alarms with a VT alarm of ours "
    "8 of 31 against 5; VT runs in the noise set 15 of 33 against 12) but raised false VT alarms where "
    "the shipped model raises none: 3 in the electrode-motion records, 2 in the noise set, and in 4 of "
    "the 88 false challenge alarms. On DS2 (fp32) it found the same 978 V beats (Se 89.97) at +P 87.2 "
    "(shipped 94.13), S Se 46.7 / +P 9.4, accuracy 95.79. Not adopted: artefact called V reaches the "
    "VT alarm. Past the sixth beat of a ventricular run most V beats still come out N with any Q weight "
    "(the template and the RR medians adapt to the run within a few beats).",
    "",
    "Tried next and not adopted: a second, *long* template of the patient's dominant beat, which the "
    "beats of a ventricular run do not enter. It is first learnt as the 16-beat template once that "
    "holds 8 beats, then taught only by beats on time against the 256-beat RR median with a QRS "
    "correlation above 0.8 and an amplitude within 0.6-1.6 of it (5 % per beat), and learnt again "
    "after 200 beats that teach it nothing; three features against it (QRS correlation, amplitude "
    "and area ratios; feature set 3). Prototyped offline on zero-phase filtered segments (seeds A / B: "
    "V 87.5 / 87.4 and 88.3 / 87.1, V in runs 219 and 208), then computed in the streaming kernels as "
    "the worker would, and run with two more seeds (3, 5) since S moved apart with the seed. Seeds "
    "A / B / 3 / 5:",
    "",
    "| features | V Se / +P | S Se / +P | mean S +P at Se 60-70, gate | V in runs of 3+ (of 454) | accuracy |",
    "|---|---|---|---|---|---|",
    "| 2 (shipped) | 86.1 / 85.1, 85.2 / 84.3, 85.4 / 85.2, 86.2 / 86.1 | 71.1 / 54.4, 70.0 / 62.0, 70.3 / 60.5, "
    "69.9 / 57.3 | 69.7, 68.2, 73.1, 65.2 | 164, 155, 161, 168 | 95.27, 95.66, 95.64, 95.53 |",
    "| 3 (+ long template) | 87.0 / 87.0, 87.3 / 86.6, 87.4 / 85.4, 87.0 / 87.1 | 70.0 / 63.6, 69.7 / 52.6, "
    "71.5 / 52.7, 70.4 / 63.5 | 75.0, 61.3, 68.6, 74.0 | 205, 199, 211, 194 | 95.73, 95.46, 95.22, 95.74 |",
    "",
    "V gained with every seed (Se +1.5, +P +1.3, V beats inside runs +25 % on average); S gained with "
    "two seeds and lost with two. Trained as a candidate beats-v3 (seed A) and scored once on DS2 "
    "(fp32): V Se 91.17 / +P 89.76 (N beats called V 78, against 39; detections matching no beat "
    "called V 15, against 6; record 105, the noisiest, V +P 9.2), S Se 46.67 / +P 12.07, accuracy "
    "95.79. Through the worker's alarms against this model: VT runs found in the noise set 14 of 33 "
    "(12), challenge true VT alarms with a VT alarm of ours 7 of 31 (5); but false VT alarms in 3 of "
    "the 4 electrode-motion records (none), near 2 of the 88 false challenge alarms (none), and 6 "
    "earlier in those records (1). Not adopted: as with the Q weight, noisy beats that differ from "
    "the clean long template are called V, and reach the VT alarm. Its code is on the local branch "
    "`candidate/beats-v3-long-template`.",
    "",
    "Tried last and not adopted: training on noisy copies, to teach the model what artefact looks "
    "like. In each cross-validation fold, every training record also went through the chain twice "
    "with noise of the MIT-BIH Noise Stress Test Database added: muscle artefact at 6 dB, and baseline "
    "wander at 0 dB plus muscle artefact at 12 dB (decibels as in `bench/ecg_alarms.py`, the signal's "
    "standard deviation over the noise's). The noise came from the noise records' second channel "
    "(`noise2`; the alarm benchmark's noise set adds the first), each record from a different start. "
    "Beats were labelled by the reference annotations, detections matching no beat as Q, and the folds "
    "were scored on the clean records only (seed A):",
    "",
    "| features | noisy copies | V Se / +P | S Se / +P | mean S +P at Se 60-70, gate | V in runs of 3+ (of 454) "
    "| detections matching no beat called Q (of 122) | accuracy |",
    "|---|---|---|---|---|---|---|---|",
    "| 2 (shipped) | no | 86.1 / 85.1 | 71.1 / 54.4 | 69.7 | 164 | 36 | 95.27 |",
    "| 2 | yes | 86.6 / 86.3 | 70.4 / 61.1 | 68.8 | 162 | 83 | 95.73 |",
    "| 3 | no | 87.0 / 87.0 | 70.0 / 63.6 | 75.0 | 205 | 32 | 95.73 |",
    "| 3 | yes | 87.7 / 87.4 | 70.2 / 65.9 | 74.0 | 211 | 95 | 95.72 |",
    "",
    "Both were trained on all of DS1 with their noisy copies and run through the worker's alarms "
    "(`bench/ecg_alarms.py`; DS2 not scored). Against the shipped model's figures: with features 2, "
    "VT runs found in the noise set 13 of 33 (12) with 1 false VT (none), none in the electrode-motion "
    "records, challenge true VT alarms with a VT alarm of ours 5 of 31 (5), false challenge alarms "
    "with a VT alarm of ours near them 2 (none). With features 3: 15 of 33 and no false VT in the "
    "noise set, 2 false VT in the electrode-motion records (3 without the noisy copies; none "
    "shipped), challenge true 8 of 31, false 5 (2 without the copies). The noise set's figures flatter "
    "both a little: its records and noise records are those the copies were made from, though not "
    "the same noise channel. Not adopted: muscle artefact and baseline wander did not teach the model "
    "electrode motion, the artefact that reaches the VT alarm, and false VT near the challenge's "
    "false alarms rose. The development script is on the local branch `candidate/noisy-copies`.",
    "",
    "The alarm figures in these notes were taken with no alarm acknowledged (a latched alarm hides the "
    "later ones of its kind), as `bench/ecg_alarms.py` ran then; its `--no-ack` repeats them.",
)
"""What the model card says was tried, and how the model was chosen (figures from the
development runs, all on DS1 cross-validation)."""
PREVIOUS = (
    "For comparison, the previous model (beats-v1, feature set 1, no S gate) on the same 11 DS2 records, "
    "fp32: S Se 54.7, +P 10.1; V Se 90.1, +P 93.4; accuracy 94.52 (DS1 CV: S 67.7 / 48.9, V 84.9 / 83.7). "
    "The gain beats-v2 shows on DS1 cross-validation did not carry over to these DS2 records for S."
)
"""The model this one replaces, on the same test records (from its own card)."""
_IRREGULAR = FEATURE_NAMES.index("irregularity")
S_IRREGULAR_MAX = 0.1
"""S beats whose recent rhythm is this irregular (median successive RR difference over
the RR) are not trained on. Nearly all are aberrated beats in atrial fibrillation (201:
about 100 of its 128 S beats): with no regular rhythm to be premature against, they
only teach the model to call the short intervals of fibrillation S, which costs far
more +P than the Se they bring (DS1 cross-validation: S Se 52 -> 60, +P 38 -> 46).
They are still scored."""


def _xy(data: list[RecordData]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.str_]]:
    """Training rows, their classes and the record each comes from."""
    x = np.concatenate([d.rows.features for d in data])
    labels = np.concatenate([d.labels for d in data])
    groups = np.concatenate([np.full(len(d.rows), d.name) for d in data])
    s = AAMI_CLASSES.index("S")
    keep = (labels != UNSCORED) & ~((labels == s) & (x[:, _IRREGULAR] > S_IRREGULAR_MAX))
    return x[keep], training_targets(labels[keep]), groups[keep]


def cross_validate(data: dict[str, RecordData], cfg: MlpConfig) -> dict[str, npt.NDArray[np.float64]]:
    """Out-of-fold class probabilities for every DS1 record."""
    assert sorted(r for f in FOLDS for r in f) == sorted(DS1), "FOLDS must cover DS1 exactly once"
    oof: dict[str, npt.NDArray[np.float64]] = {}
    for fold in FOLDS:
        x, y, groups = _xy([data[r] for r in DS1 if r not in fold])
        ens = train_ensemble(x, y, len(AAMI_CLASSES), cfg, groups)
        for r in fold:
            oof[r] = ens.probabilities(data[r].rows.features)
    return oof


def _objective(c: Confusion) -> float:
    """Each target class scores min(Se / Se target, +P / +P target), capped at 1: the
    weaker of its two figures, so neither is bought with the other."""
    return sum(min(c.sensitivity(k) / se, c.predictivity(k) / pp, 1.0) for k, (se, pp) in TARGETS.items())


def _oof_confusion(data: dict[str, RecordData], oof: dict[str, npt.NDArray[np.float64]],
                   bias: npt.NDArray[np.float64], gate: ClassGate | None) -> Confusion:
    c = Confusion.empty()
    for r in DS1:
        c.add(data[r].labels, decide(oof[r], data[r].rows.features, bias, gate), data[r].missed)
    return c


def s_precision_at(data: dict[str, RecordData], oof: dict[str, npt.NDArray[np.float64]],
                   gate: ClassGate | None, sensitivity: float) -> float:
    """S +P on the out-of-fold predictions when the S decision threshold is set so that
    S Se is ``sensitivity``: a comparison at matched sensitivity, which the bias search
    (whose objective saturates once both targets are met) does not give."""
    s = AAMI_CLASSES.index("S")
    true: list[npt.NDArray[np.float64]] = []
    false: list[npt.NDArray[np.float64]] = []
    n_s = 0
    for r in DS1:
        logs = np.log(oof[r] + 1e-12)
        margin = logs[:, s] - np.delete(logs, s, axis=1).max(axis=1)
        if gate is not None:
            margin[gate.blocked(data[r].rows.features)] = -np.inf
        labels = data[r].labels
        true.append(margin[labels == s])
        false.append(margin[(labels != s) & (labels != UNSCORED)])
        n_s += int((labels == s).sum() + (data[r].missed == s).sum())
    hits = np.sort(np.concatenate(true))[::-1]
    k = int(np.ceil(sensitivity * n_s))
    if k == 0 or k > hits.shape[0] or not np.isfinite(hits[k - 1]):
        return 0.0
    return k / (k + int((np.concatenate(false) >= hits[k - 1]).sum()))


def tune_gate(data: dict[str, RecordData], oof: dict[str, npt.NDArray[np.float64]]
              ) -> tuple[ClassGate | None, dict[float | None, float]]:
    """The `GATE_FEATURE` threshold under which S is ruled out, from `GATE_GRID` (None: no
    gate), maximising the mean S +P at S Se 60, 65 and 70 % on the out-of-fold predictions
    (ties: no gate, then the lowest threshold); and that mean for every threshold tried."""
    best: ClassGate | None = None
    best_key = -1.0
    keys: dict[float | None, float] = {}
    for below in GATE_GRID:
        gate = None if below is None else ClassGate(AAMI_CLASSES.index("S"), _GATE_COLUMN, below)
        key = keys[below] = round(float(np.mean([s_precision_at(data, oof, gate, se) for se in _MATCHED_SE])), 6)
        if key > best_key:
            best, best_key = gate, key
    return best, keys


def tune_bias(data: dict[str, RecordData], oof: dict[str, npt.NDArray[np.float64]], gate: ClassGate | None
              ) -> tuple[npt.NDArray[np.float64], Confusion]:
    """Log-probability offsets chosen on the DS1 out-of-fold predictions (with ``gate``), and
    the confusion they give: first S and V together, maximising `_objective` (ties: the
    smallest offsets); then F, maximising accuracy without lowering that objective. F is
    learnt from a few hundred beats, mostly of one record, and most of its out-of-fold
    calls are wrong."""
    s, v, f = (AAMI_CLASSES.index(k) for k in "SVF")
    best, best_key = np.zeros(len(AAMI_CLASSES)), (-1.0, 0.0)
    for bs in _BIAS_GRID:
        for bv in _BIAS_GRID:
            bias = np.zeros(len(AAMI_CLASSES))
            bias[s], bias[v] = bs, bv
            key = (round(_objective(_oof_confusion(data, oof, bias, gate)), 6), -(abs(bs) + abs(bv)))
            if key > best_key:
                best, best_key = bias, key
    goal = best_key[0]
    best_acc = (_oof_confusion(data, oof, best, gate).accuracy(), 0.0)
    chosen = best
    for bf in _BIAS_GRID:
        bias = best.copy()
        bias[f] = bf
        c = _oof_confusion(data, oof, bias, gate)
        key = (round(c.accuracy(), 6), -abs(bf))
        if round(_objective(c), 6) >= goal and key > best_acc:
            chosen, best_acc = bias, key
    return chosen, _oof_confusion(data, oof, chosen, gate)


def _gate_note(gate: ClassGate | None, keys: dict[float | None, float]) -> str:
    tried = ", ".join(f"{'no gate' if k is None else f'< {k:g}'} {100 * v:.1f}" for k, v in keys.items())
    chosen = "no gate" if gate is None else f"S is ruled out where `{GATE_FEATURE}` < {gate.below:g}"
    return ("Two-stage S decision: the network proposes, the rhythm context vetoes. Where the recent on-time "
            f"beats' P waves do not match the template (`{GATE_FEATURE}` below a threshold: atrial "
            "fibrillation or flutter, where prematurity means little), S may be ruled out. The threshold "
            "was chosen before the class bias, on the same out-of-fold predictions, as the one with the "
            f"highest mean S +P at S Se {', '.join(f'{100 * v:.0f}' for v in _MATCHED_SE)} % (the S "
            f"threshold moved to match each sensitivity); tried: {tried} %. Chosen: {chosen}.")


def _labels(clf: BeatClassifier) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.int64]]:
    return lambda rows: clf.predict(rows)[0]


def figures(c: Confusion) -> str:
    return "  ".join(f"{k} Se {100 * c.sensitivity(k):5.1f} +P {100 * c.predictivity(k):5.1f}"
                     for k in AAMI_CLASSES[:4]) + f"  accuracy {100 * c.accuracy():5.2f}"


def export(ens: Ensemble, out: Path, cv: Confusion) -> tuple[Path, Path]:
    """Write ``beats-v2.onnx`` and its int8 twin (dynamic quantisation of the MatMul weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "model_version": MODEL_NAME, "feature_set": FEATURE_SET, "n_features": str(len(FEATURE_NAMES)),
        "classes": ",".join(AAMI_CLASSES), "trained_on": "MIT-BIH Arrhythmia DS1 (de Chazal 2004), MLII",
        "config": repr(asdict(CONFIG)), "class_bias": ",".join(f"{b:g}" for b in ens.class_bias),
        "s_gate": "none" if ens.gate is None else f"S ruled out where {GATE_FEATURE} < {ens.gate.below:g}",
        "ds1_cv": figures(cv),
    }
    doc = f"Vigil AAMI beat classifier (N S V F Q); see {MODEL_NAME}.md"
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
    gate, gate_keys = tune_gate(data, oof)
    print(f"S gate on {GATE_FEATURE} (mean S +P at S Se {', '.join(f'{100 * v:.0f}' for v in _MATCHED_SE)} %, "
          f"DS1 CV): " + ", ".join(f"{'none' if k is None else f'< {k}'}: {100 * v:.1f}" for k, v in gate_keys.items())
          + f" -> {'none' if gate is None else f'< {gate.below}'}")
    bias, cv = tune_bias(data, oof, gate)
    print(f"class bias (tuned on DS1 CV): {dict(zip(AAMI_CLASSES, bias.tolist(), strict=True))}")
    print(f"DS1 6-fold CV by record: {figures(cv)}\n{cv.table()}\n", flush=True)

    x, y, groups = _xy([data[r] for r in DS1])
    ens = train_ensemble(x, y, len(AAMI_CLASSES), CONFIG, groups)
    ens.class_bias = bias
    ens.gate = gate
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
                            s_irregular_max=S_IRREGULAR_MAX, ds2_looks=DS2_LOOKS,
                            gate_note=_gate_note(gate, gate_keys), development=DEVELOPMENT, previous=PREVIOUS)
    digest = hashlib.sha256(card.read_bytes()).hexdigest()[:16]
    print(f"wrote {fp32}, {int8}, {card} (sha256 {digest}...) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
