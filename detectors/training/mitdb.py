"""MIT-BIH Arrhythmia Database records through Vigil's streaming chain, labelled and
scored the AAMI way; shared by the training script, ``bench/detectors.py`` and the tests.

Record groups follow de Chazal et al. (2004): DS1 trains, DS2 tests, and the four
paced records are left out of both (AAMI practice). Only 11 of the 22 DS2 records are
in the shared data folder; `DS2_PRESENT` names them, and every DS2 figure is on those.

Labels come from matching the chain's detected beats to the reference annotations
one-to-one within 150 ms (ANSI/AAMI EC57; nearest unmatched detection first, as
`processors.evaluate.match_beats`). A detection that matches no reference beat is an
artefact: it is labelled Q (unclassifiable), which is what the classifier should say
about it. Detections inside ventricular flutter episodes (``[`` .. ``]``), which carry
no beat labels, are neither trained on nor scored.

Scoring is strict, over the whole chain: a reference beat the detector missed is a
false negative of its class, and an artefact detection given class c is a false
positive of c. `Confusion` keeps the counts; Se = TP / (TP + FN), +P = TP / (TP + FP).

References: de Chazal P, O'Dwyer M, Reilly RB. IEEE Trans Biomed Eng 51(7):1196-1206
(2004). ANSI/AAMI EC57:2012, Testing and reporting performance results of cardiac
rhythm and ST segment measurement algorithms.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detectors.beat_classifier import AAMI_CLASSES
from detectors.beat_features import BeatFeatureStream, BeatRows
from detectors.training.resample import DEFAULT_ROUNDS, bootstrap_interval
from processors.ecg import EcgAnalyzer
from processors.evaluate import flutter_episodes

__all__ = [
    "AAMI_CLASSES", "AAMI_OF_SYMBOL", "ARTEFACT", "DS1", "DS2", "DS2_PRESENT", "PACED", "ChainOutput", "Confusion", "Record",
    "RecordData", "UNSCORED", "chain_features", "class_intervals", "class_intervals_text", "data_dir", "label_beats", "load_record",
    "pooled", "record_data", "score", "training_targets",
]

AAMI_OF_SYMBOL = {**dict.fromkeys("NLRej", "N"), **dict.fromkeys("AaJS", "S"), **dict.fromkeys("VE", "V"),
                  "F": "F", **dict.fromkeys("/fQ", "Q")}
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203", "205",
       "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212", "213", "214", "219",
       "221", "222", "228", "231", "232", "233", "234")
DS2_PRESENT = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210")
PACED = ("102", "104", "107", "217")
ARTEFACT = len(AAMI_CLASSES)
"""Label of a detection that matches no reference beat (trained on as Q)."""
UNSCORED = -1
"""Label of a detection inside a flutter episode: neither trained on nor scored."""


def data_dir() -> Path:
    """``$VIGIL_DATA_DIR``, else the ``shared/data`` folder beside the repository."""
    return Path(os.environ.get("VIGIL_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))


@dataclass(frozen=True)
class Record:
    name: str
    signal: npt.NDArray[np.float64]
    """One lead, mV."""
    fs: float
    lead: str
    ref_samples: npt.NDArray[np.int64]
    """Reference beats with an AAMI class (0-based samples)."""
    ref_classes: npt.NDArray[np.int64]
    """Index into `AAMI_CLASSES` of each reference beat."""
    excluded: list[tuple[int, int]]


def load_record(name: str, *, channel: int | None = None, folder: Path | None = None) -> Record:
    """Read ``mitdb/NAME``; ``channel`` None picks the MLII lead (lead 1 in record 114,
    lead 0 elsewhere), the lead the model is trained for."""
    import wfdb

    path = str((folder or data_dir() / "mitdb") / name)
    if channel is None:
        names = list(wfdb.rdheader(path).sig_name)
        channel = names.index("MLII") if "MLII" in names else 0
    rec = wfdb.rdrecord(path, channels=[channel])
    ann = wfdb.rdann(path, "atr")
    keep = [(int(s), AAMI_CLASSES.index(AAMI_OF_SYMBOL[c])) for s, c in zip(ann.sample, ann.symbol, strict=True)
            if c in AAMI_OF_SYMBOL]
    return Record(name, np.ascontiguousarray(rec.p_signal[:, 0], dtype=np.float64), float(rec.fs),
                  str(rec.sig_name[0]), np.array([s for s, _ in keep], dtype=np.int64),
                  np.array([c for _, c in keep], dtype=np.int64), flutter_episodes(ann.sample, ann.symbol))


@dataclass(frozen=True)
class ChainOutput:
    rows: BeatRows
    quality: list[str]
    """Signal-quality label of each beat's window (``ok`` = usable), as `EcgAnalyzer` gives it."""


def chain_features(signal: npt.NDArray[np.float64], fs: float, *, chunk_s: float = 1.0) -> ChainOutput:
    """The worker's chain over a whole record in ``chunk_s`` chunks: `EcgAnalyzer` finds the
    beats, `BeatFeatureStream` turns them into feature rows."""
    analyzer, stream = EcgAnalyzer(fs), BeatFeatureStream(fs)
    step = max(1, round(chunk_s * fs))
    parts: list[BeatRows] = []
    quality: dict[int, str] = {}
    for i in range(0, signal.shape[0], step):
        chunk = signal[i:i + step]
        beats = analyzer.feed(chunk).beats
        quality.update((b.sample, b.quality) for b in beats)
        parts.append(stream.feed(chunk, [b.sample for b in beats]))
    parts.append(stream.flush())
    rows = BeatRows(np.concatenate([p.samples for p in parts]), np.concatenate([p.features for p in parts]))
    return ChainOutput(rows, [quality[int(s)] for s in rows.samples])


def label_beats(record: Record, detected: npt.NDArray[np.int64], tolerance_s: float = 0.15
                ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """(label of each detection, which reference beats were found).

    The label is the matched reference beat's class index, `ARTEFACT` for a detection
    that matches none, or `UNSCORED` for such a detection inside a flutter episode.
    """
    tol = round(tolerance_s * record.fs)
    det = np.asarray(detected, dtype=np.int64)
    labels = np.full(det.shape[0], ARTEFACT, dtype=np.int64)
    found = np.zeros(record.ref_samples.shape[0], dtype=bool)
    used = np.zeros(det.shape[0], dtype=bool)
    start = 0
    for i, r in enumerate(record.ref_samples.tolist()):
        while start < det.shape[0] and det[start] < r - tol:
            start += 1
        best, best_d = -1, tol + 1
        k = start
        while k < det.shape[0] and det[k] <= r + tol:
            d = abs(int(det[k]) - r)
            if not used[k] and d < best_d:
                best, best_d = k, d
            k += 1
        if best >= 0:
            used[best] = True
            found[i] = True
            labels[best] = record.ref_classes[i]
    for lo, hi in record.excluded:
        labels[(det >= lo) & (det <= hi) & ~used] = UNSCORED
    return labels, found


def training_targets(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Class indices to train on: artefacts become Q; `UNSCORED` stays (drop those rows)."""
    return np.where(labels == ARTEFACT, AAMI_CLASSES.index("Q"), labels)


_NONE = ARTEFACT  # row: a detection with no reference beat; column: a missed reference beat


@dataclass
class Confusion:
    """Counts: rows are the reference (N S V F Q, then "no beat"), columns the
    prediction (N S V F Q, then "missed by the detector")."""

    counts: npt.NDArray[np.int64]

    @classmethod
    def empty(cls) -> Confusion:
        return cls(np.zeros((_NONE + 1, _NONE + 1), dtype=np.int64))

    def add(self, labels: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64],
            missed: npt.NDArray[np.int64] | None = None) -> None:
        """Count detections (``labels`` from `label_beats`, ``predicted`` class indices)
        and the classes of the reference beats the detector ``missed``."""
        keep = labels != UNSCORED
        np.add.at(self.counts, (labels[keep], np.asarray(predicted)[keep]), 1)
        if missed is not None:
            np.add.at(self.counts, (missed, np.full(missed.shape[0], _NONE)), 1)

    def __iadd__(self, other: Confusion) -> Confusion:
        self.counts = self.counts + other.counts
        return self

    def sensitivity(self, cls: str) -> float:
        c = AAMI_CLASSES.index(cls)
        total = int(self.counts[c].sum())
        return float(self.counts[c, c]) / total if total else float("nan")

    def predictivity(self, cls: str) -> float:
        c = AAMI_CLASSES.index(cls)
        total = int(self.counts[:, c].sum())
        return float(self.counts[c, c]) / total if total else float("nan")

    def accuracy(self) -> float:
        """Share of reference beats (detected or not) given their own class."""
        ref = self.counts[:_NONE]
        return float(np.trace(ref[:, :_NONE])) / float(ref.sum()) if ref.sum() else float("nan")

    def table(self) -> str:
        head = "ref\\pred " + " ".join(f"{c:>6}" for c in (*AAMI_CLASSES, "missed"))
        lines = [head]
        for i, name in enumerate((*AAMI_CLASSES, "none")):
            lines.append(f"{name:<9}" + " ".join(f"{int(v):6d}" for v in self.counts[i]))
        return "\n".join(lines)


def pooled(parts: Iterable[Confusion]) -> Confusion:
    """The sum of per-record confusions."""
    total = Confusion.empty()
    for part in parts:
        total += part
    return total


def class_intervals(per_record: Sequence[Confusion], classes: Sequence[str] = ("V", "S"), *,
                    rounds: int = DEFAULT_ROUNDS) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """``{class: ((Se low, high), (+P low, high))}``: 95 % intervals of the pooled figures
    when the records are resampled (`detectors.training.resample`), as shares."""
    def of_pooled(figure: Callable[[Confusion, str], float], cls: str) -> Callable[[Sequence[Confusion]], float]:
        return lambda sample: figure(pooled(sample), cls)

    return {k: (bootstrap_interval(per_record, of_pooled(Confusion.sensitivity, k), rounds=rounds),
                bootstrap_interval(per_record, of_pooled(Confusion.predictivity, k), rounds=rounds)) for k in classes}


def class_intervals_text(per_record: Sequence[Confusion]) -> str:
    """`class_intervals` as the model card and ``bench/detectors.py`` print them, in percent."""
    return "; ".join(f"{k} Se {100 * se[0]:.1f}-{100 * se[1]:.1f}, +P {100 * pp[0]:.1f}-{100 * pp[1]:.1f}"
                     for k, (se, pp) in class_intervals(per_record).items())


@dataclass(frozen=True)
class RecordData:
    """One record through the chain, ready to train on or score."""

    name: str
    fs: float
    rows: BeatRows
    labels: npt.NDArray[np.int64]
    """`label_beats` label of each row."""
    missed: npt.NDArray[np.int64]
    """Classes of the reference beats the detector did not find."""
    quality: list[str]


def record_data(name: str, *, channel: int | None = None, folder: Path | None = None) -> RecordData:
    record = load_record(name, channel=channel, folder=folder)
    out = chain_features(record.signal, record.fs)
    labels, found = label_beats(record, out.rows.samples)
    return RecordData(name, record.fs, out.rows, labels, record.ref_classes[~found], out.quality)


def score(data: Iterable[RecordData], predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.int64]]
          ) -> Confusion:
    """Confusion of ``predict`` (rows -> class indices) over whole records, missed beats included."""
    total = Confusion.empty()
    for d in data:
        total.add(d.labels, predict(d.rows.features), d.missed)
    return total
