"""The beat classifier's model card (Mitchell et al. 2019), written by the training run
itself so its figures are always those of the files beside it.

Reference: Mitchell M, Wu S, Zaldivar A, et al. Model cards for model reporting.
FAT* '19, 220-229 (2019).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detectors.beat_classifier import AAMI_CLASSES, MODEL_NAME, ModelProvenance
from detectors.beat_features import FEATURE_NAMES, FEATURE_SET
from detectors.training.mitdb import DS1, DS2, DS2_PRESENT, PACED, Confusion, class_intervals_text
from detectors.training.mlp import MlpConfig

__all__ = ["write_model_card"]


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}"


def _figures_table(rows: Mapping[str, Confusion]) -> list[str]:
    head = "| | " + " | ".join(f"{k} Se | {k} +P" for k in AAMI_CLASSES[:4]) + " | accuracy |"
    out = [head, "|---" * (2 + 2 * 4) + "|"]
    for name, c in rows.items():
        cells = " | ".join(f"{_pct(c.sensitivity(k))} | {_pct(c.predictivity(k))}" for k in AAMI_CLASSES[:4])
        out.append(f"| {name} | {cells} | {100 * c.accuracy():.2f} |")
    return out


def _confusion(c: Confusion) -> list[str]:
    cols = (*AAMI_CLASSES, "missed")
    out = ["| reference \\ predicted | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in zip((*AAMI_CLASSES, "no beat"), c.counts, strict=True):
        out.append(f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |")
    return out


def write_model_card(path: Path, *, config: MlpConfig, folds: Sequence[Sequence[str]],
                     bias: npt.NDArray[np.float64], cv: Confusion,
                     ds2: Mapping[str, tuple[ModelProvenance, Confusion]], per_record: Mapping[str, Confusion],
                     train_counts: npt.NDArray[np.int64], sizes: Mapping[str, int], s_irregular_max: float,
                     ds2_looks: str, gate_note: str, development: Sequence[str], previous: str) -> Path:
    fp32, fp32_c = ds2["fp32"]
    int8, int8_c = ds2["int8"]
    counts = ", ".join(f"{k} {int(n)}" for k, n in zip(AAMI_CLASSES, train_counts, strict=True))
    lines = [
        f"# Model card: {MODEL_NAME} (AAMI heartbeat classes)",
        "",
        "Written by `python -m detectors.training.train_beats`; do not edit by hand, rerun it.",
        "",
        "## Model",
        "",
        "| file | version | bytes | sha256 |",
        "|---|---|---|---|",
        f"| `{MODEL_NAME}.onnx` | {fp32.version} | {sizes['fp32']} | `{fp32.sha256}` |",
        f"| `{MODEL_NAME}.int8.onnx` | {int8.version} | {sizes['int8']} | `{int8.sha256}` |",
        "",
        f"An ensemble of {config.members} one-hidden-layer perceptrons ({len(FEATURE_NAMES)} inputs, "
        f"{config.hidden} ReLU units, 5 softmax outputs), each trained on a random "
        f"{round(100 * config.record_share)} % of the training records, probabilities averaged; input standardisation "
        "(median, interquartile range, clipped to +-10), the decision `argmax(log p + class_bias)` and the "
        "S gate below are in the graph, so the file alone decides (`probabilities` are the ensemble's, "
        "before the bias and the gate). The int8 file is the same model with its MatMul weights "
        "quantised dynamically to int8 (`onnxruntime.quantization.quantize_dynamic`). Outputs: `label` "
        "(index into N S V F Q) and `probabilities`. Inference needs only numpy and onnxruntime "
        "(`detectors.beat_classifier.BeatClassifier`); events record `model_version` and `model_sha256`.",
        "",
        "## Intended use",
        "",
        "Labelling each beat that Vigil's streaming chain (`processors.ecg.EcgAnalyzer`) finds on an "
        "MLII-like lead of an adult ECG, at the worker, one beat behind real time (a beat's label needs "
        "the next beat). It supports rhythm review and ectopy counts by clinicians; it is decision support, "
        "not a diagnosis, and not an alarm on its own. Q means \"unclassifiable\": the model was taught to "
        "give it to detections that match no annotated beat, so count Q beats as neither normal nor ectopic.",
        "",
        "## Data",
        "",
        "MIT-BIH Arrhythmia Database (Moody & Mark 2001; PhysioNet, ODC-By 1.0), 360 Hz, the MLII lead "
        "(channel 1 in record 114, channel 0 elsewhere). Beats are those the streaming chain detects, fed "
        "in 1-second chunks; each is labelled with the reference annotation within 150 ms (one-to-one, "
        "nearest first); a detection matching none is trained on as Q; detections in ventricular flutter "
        "episodes are left out. AAMI mapping: N = N L R e j; S = A a J S; V = V E; F = F; Q = / f Q.",
        "",
        f"- Training: DS1 of de Chazal et al. (2004), {len(DS1)} records: {' '.join(DS1)}; "
        f"training rows per class: {counts}.",
        f"- Test: DS2, of which {len(DS2_PRESENT)} of {len(DS2)} records are in the data folder: "
        f"{' '.join(DS2_PRESENT)}. Not present: {' '.join(r for r in DS2 if r not in DS2_PRESENT)}.",
        f"- Excluded (paced, AAMI practice): {' '.join(PACED)}.",
        "",
        "## Features",
        "",
        f"Feature set `{FEATURE_SET}` (`detectors/beat_features.py`), {len(FEATURE_NAMES)} columns, all "
        "computed causally with a one-beat delay and relative to the same patient's recent past, so "
        "that they carry the rhythm and the shape, not the patient: RR before and after the beat over "
        "the median of the last 16 and 256 RR, their ratio, the pre-RR over the previous RR, the "
        "irregularity of the last 16 and 64 RR and their share of premature intervals, prematurity as a "
        "z-score against the recent RR spread; against a template (sample-wise median of the last 16 "
        "on-time beats, after aligning the beat to it within +-60 ms), the template's P-wave amplitude, "
        "correlations and RMS differences over the P, QRS and T regions, amplitude, area, slope and "
        "QRS-width ratios; and the rhythm context of the patient's recent on-time beats (no labels used): "
        "the median P-region correlation with the template over the last 16 and 64 beats (high in sinus "
        "rhythm, low in atrial fibrillation, whose f waves are not locked to the QRS), the median P-region "
        "RMS difference and QRS correlation over the last 16 (the patient's own noise level), and the "
        "median RR change between consecutive on-time beats over the last 32 pairs (irregularity that "
        "isolated premature beats do not inflate). No raw waveform samples: on DS1 cross-validation they "
        "cost S +P.",
        "",
        "`" + "`, `".join(FEATURE_NAMES) + "`",
        "",
        "## Training",
        "",
        f"numpy, fixed seeds, one BLAS thread (reproducible to the byte). Configuration: `{asdict(config)}`. "
        "Class weights: inverse class frequency to the power `class_power`. S beats in an irregular rhythm "
        f"(`irregularity` > {s_irregular_max}, nearly all aberrated beats in atrial fibrillation) are not "
        "trained on, as they teach the model to call fibrillation S; they are still scored. Only DS1 is used for any "
        "choice: the class bias (S and V log-probability offsets) maximises, over a grid, the sum for S "
        "and V of min(Se / target Se, +P / target +P, 1) on the out-of-fold predictions of a 6-fold "
        f"cross-validation by record (folds: {'; '.join(' '.join(f) for f in folds)}); the F offset "
        "then maximises accuracy without lowering that sum. "
        f"Class bias: {dict(zip(AAMI_CLASSES, (round(float(b), 3) for b in bias), strict=True))}.",
        "",
        gate_note,
        "",
        "### How this model was chosen (DS1 cross-validation only)",
        "",
        *development,
        "",
        "## Metrics",
        "",
        "Strict, over the whole chain: a reference beat the detector missed is a false negative of its "
        "class, and a detection matching no reference beat counts as a false positive of the class it was "
        "given (none if Q). Se = TP / (TP + FN), +P = TP / (TP + FP), accuracy = reference beats given "
        "their own class / all reference beats. Percentages.",
        "",
        *_figures_table({"DS1, 6-fold CV by record (out-of-fold)": cv, f"DS2 present ({len(DS2_PRESENT)}), "
                         "fp32": fp32_c, f"DS2 present ({len(DS2_PRESENT)}), int8": int8_c}),
        "",
        "Targets asked for on DS2: V Se >= 90 and +P >= 90; S Se >= 70 and +P >= 50 (de Chazal 2004 "
        "reached S Se 75.9, +P 38.5 on the full DS2).",
        "",
        "Against those targets, DS2 fp32 (two decimals, so that the verdict matches the figure): " + "; ".join(
            f"{k} Se {100 * fp32_c.sensitivity(k):.2f} ({'met' if fp32_c.sensitivity(k) >= se else 'NOT met'}), "
            f"+P {100 * fp32_c.predictivity(k):.2f} ({'met' if fp32_c.predictivity(k) >= pp else 'NOT met'})"
            for k, (se, pp) in (("V", (0.90, 0.90)), ("S", (0.70, 0.50)))) + ".",
        "",
        f"How far these figures could move with other patients (95 % intervals when the {len(per_record)} "
        "records are resampled with replacement and pooled again, `detectors.training.resample`): "
        + class_intervals_text(list(per_record.values())) + ".",
        "",
        previous,
        "",
        f"Use of DS2: {ds2_looks}",
        "",
        "DS2, fp32, confusion (rows: reference; columns: prediction):",
        "",
        *_confusion(fp32_c),
        "",
        "DS2 per record, fp32:",
        "",
        *_figures_table(per_record),
        "",
        "DS1 cross-validation, confusion:",
        "",
        *_confusion(cv),
        "",
        "Inference speed: `.venv/bin/python bench/detectors.py` (fp32 against int8).",
        "",
        "## Limits",
        "",
        "- Evaluated on 11 of the 22 DS2 records (the rest are not in the data folder); DS2 here has few "
        "S beats (most in 100, 200 and 202), so its S figures move by several points per dozen beats. "
        "DS1 cross-validation is harder (it includes 201, 203, 207, 208, 209) and is the better guide to "
        "unseen patients with frequent ectopy.",
        "- 47 patients, one database, one lead type (MLII), 360 Hz Holter recordings from the 1970s; "
        "other leads, sampling rates (the features are resampled to a 5 ms grid, but only 360 Hz was "
        "tested), paediatric patients, pacemakers (paced records excluded) are outside what was tested.",
        "- F (fusion) is learnt from a few hundred beats, most from one record (208): treat F labels as "
        "unreliable. Q has almost no annotated examples; it mostly marks artefact detections.",
        "- S in atrial fibrillation or flutter, and S runs (SVT), are the hardest cases: RR prematurity, "
        "the main S cue, means little when the rhythm is irregular. Where the S gate applies (recent P "
        "waves unlike the template's), no beat is called S at all: aberrated supraventricular beats in "
        "atrial fibrillation come out N, V or F, and a patient whose template lost its P wave for another "
        "reason (noise, a low-amplitude P, a wandering baseline) loses S detection while it lasts.",
        "- Beats in windows the chain's signal-quality index flags are classified all the same; the "
        "alarm logic should discount them (`Beat.usable`).",
        "- Not a medical device; no clinical validation.",
        "",
        "## References",
        "",
        "- de Chazal P, O'Dwyer M, Reilly RB. Automatic classification of heartbeats using ECG morphology "
        "and heartbeat interval features. IEEE Trans Biomed Eng 51(7):1196-1206 (2004).",
        "- Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database. IEEE Eng Med Biol "
        "20(3):45-50 (2001).",
        "- ANSI/AAMI EC57:2012, testing and reporting performance results of cardiac rhythm and ST segment "
        "measurement algorithms.",
        "- Goldberger AL et al. PhysioBank, PhysioToolkit, and PhysioNet. Circulation 101(23):e215-e220 "
        "(2000).",
        "",
    ]
    path.write_text("\n".join(lines))
    return path
