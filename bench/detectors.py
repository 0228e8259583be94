"""Detectors: accuracy and speed of Vigil's decision layer (``detectors/``). Prints, asserting nothing:

  1. Beat classifier (``detectors/models/beats-v2*.onnx``) on the MIT-BIH DS2 records
     present in the data folder (de Chazal 2004's test set; the model never saw them),
     through the worker's chain: `EcgAnalyzer` + `BeatFeatureStream`, lead MLII, 1-second
     chunks. Se / +P for V and S (and N, F), accuracy, per record and gross, fp32 against
     int8. Scoring is strict (`detectors.training.mitdb`): beats the detector missed are
     false negatives, detections matching no reference beat within 150 ms count against
     the class they were given. Then how often fp32 and int8 agree.
  2. Beat classifier inference throughput: rows/s through `BeatClassifier.predict` on one
     core (intra/inter-op threads 1), in batches of 1, 8 (several seconds of beats, as a
     worker chunk brings) and all rows at once, best of 3; and, for scale, the cost of the
     features themselves (`BeatFeatureStream` over one record, beats given).
  3. NEWS2 scorings/s: `score_news2` over 100,000 seeded random observations spanning
     every band, one core; and through `parse_observation` (the CLI's path) as well.
  4. VT alarm triage (`detectors.vt_triage`) on the ventricular-tachycardia records of
     data/challenge2015, with the 2015 Challenge score (TP+TN)/(TP+TN+FP+5 FN): on the
     held-out half (the figure to quote), pooled 5-fold cross-validation, the tuning half
     and, in-sample, all records; each names its records (`detectors.training.vt_eval`).

Data: ``$VIGIL_DATA_DIR`` (default ../shared/data next to the repo), folders mitdb/ and
challenge2015/.

    .venv/bin/python bench/detectors.py                 # all DS2 records present (~1 min)
    .venv/bin/python bench/detectors.py --records 100,200
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # "per core": no hidden threads

# Run as a script, this folder is sys.path[0], and bench/event_store.py would shadow
# the `event_store` package: drop that entry (the project is installed in the venv).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import numpy as np  # noqa: E402

from detectors.beat_classifier import AAMI_CLASSES, BeatClassifier, model_path  # noqa: E402
from detectors.beat_features import beat_features  # noqa: E402
from detectors.training.mitdb import (  # noqa: E402
    DS2_PRESENT, Confusion, RecordData, class_intervals_text, data_dir, load_record, pooled, record_data,
)

REPO = Path(__file__).resolve().parent.parent


def _pct(x: float) -> str:
    return f"{'-':>6}" if x != x else f"{100 * x:6.1f}"  # nan: no such beats on either side


def _figures(c: Confusion) -> str:
    return "  ".join(f"{_pct(c.sensitivity(k))} {_pct(c.predictivity(k))}" for k in ("V", "S", "N", "F")) \
        + f"  {100 * c.accuracy():7.2f}"


# --- 1. beat classifier accuracy -------------------------------------------------------------

def beat_accuracy(data: list[RecordData], models: dict[str, BeatClassifier]) -> None:
    print(f"1. Beat classifier on MIT-BIH DS2 (records present: {' '.join(d.name for d in data)}), "
          "strict scoring, %")
    for name, clf in models.items():
        print(f"   {name}: {clf.path.name}, {clf.path.stat().st_size:,} bytes, version {clf.model_version}, "
              f"sha256 {clf.model_sha256}")
        print(f"      class bias {clf.metadata.get('class_bias', '?')}; S gate: {clf.metadata.get('s_gate', 'none')}")
        print(f"      DS1 6-fold CV by record (from the file): {clf.metadata.get('ds1_cv', '?')}")
    head = "  ".join(f"{k + ' Se':>6} {k + ' +P':>6}" for k in ("V", "S", "N", "F")) + f"  {'acc':>7}"
    print(f"{'record':<8} {'model':<5} {'beats':>6}  {head}")
    per_record: dict[str, list[Confusion]] = {name: [] for name in models}
    labels: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for d in data:
        for name, clf in models.items():
            predicted, _ = clf.predict(d.rows.features)
            labels[name].append(predicted)
            c = Confusion.empty()
            c.add(d.labels, predicted, d.missed)
            per_record[name].append(c)
            print(f"{d.name:<8} {name:<5} {len(d.rows):6d}  {_figures(c)}")
    detections = sum(len(d.rows) for d in data)
    totals = {name: pooled(parts) for name, parts in per_record.items()}
    for name, c in totals.items():
        print(f"{'GROSS':<8} {name:<5} {detections:6d}  {_figures(c)}")
    for name, parts in per_record.items():
        print(f"{name}: 95 % intervals, records resampled with replacement: {class_intervals_text(parts)}")
    if len(models) == 2:
        a, b = (np.concatenate(v) for v in labels.values())
        changed = np.flatnonzero(a != b)
        moves = ", ".join(f"{AAMI_CLASSES[int(a[i])]}->{AAMI_CLASSES[int(b[i])]}" for i in changed[:10])
        print(f"fp32 and int8 agree on {a.shape[0] - changed.shape[0]}/{a.shape[0]} beats"
              f"{' (' + moves + (' ...' if changed.shape[0] > 10 else '') + ')' if moves else ''}")
    for name, c in totals.items():
        print(f"\n{name} confusion (rows: reference, columns: prediction):\n{c.table()}")
    print()


# --- 2. beat classifier throughput -----------------------------------------------------------

def beat_throughput(data: list[RecordData], models: dict[str, BeatClassifier], repeat: int = 3) -> None:
    rows = np.concatenate([d.rows.features for d in data])
    print(f"2. Beat classifier inference, one core, {rows.shape[0]} rows, best of {repeat}")
    print(f"{'model':<6} {'batch':>7} {'rows/s':>12} {'us/row':>9}")
    for name, clf in models.items():
        clf.predict(rows[:64])  # warm-up: first-run allocations
        for batch in (1, 8, rows.shape[0]):
            n = min(rows.shape[0], 2000) if batch == 1 else rows.shape[0]
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                for i in range(0, n, batch):
                    clf.predict(rows[i:min(i + batch, n)])
                best = min(best, time.perf_counter() - t0)
            label = "all" if batch == rows.shape[0] else str(batch)
            print(f"{name:<6} {label:>7} {n / best:12,.0f} {best / n * 1e6:9.2f}")
    first = data[0]
    signal = load_record(first.name).signal
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        beat_features(signal, first.rows.samples, sampling_rate=first.fs)
        best = min(best, time.perf_counter() - t0)
    print(f"features: BeatFeatureStream over record {first.name}, {len(first.rows)} beats: "
          f"{len(first.rows) / best:,.0f} beats/s ({best / len(first.rows) * 1e6:.0f} us/beat)")
    print()


# --- 3. NEWS2 scorings/s ---------------------------------------------------------------------

def news2_throughput(n: int = 100_000) -> None:
    from detectors.news2 import Acvpu, News2Observation, parse_observation, score_news2

    rng = np.random.default_rng(2017)
    docs = [{"rr": int(rng.integers(4, 40)), "spo2": int(rng.integers(80, 101)), "spo2_scale": int(rng.integers(1, 3)),
             "oxygen": bool(rng.integers(0, 2)), "sbp": int(rng.integers(70, 230)), "hr": int(rng.integers(30, 160)),
             "acvpu": str(rng.choice(["A", "C", "V", "P", "U"])), "temp": round(float(rng.uniform(34.0, 40.5)), 1)}
            for _ in range(n)]
    observations = [News2Observation(d["rr"], d["spo2"], d["spo2_scale"], d["oxygen"], d["sbp"], d["hr"],
                                     Acvpu(d["acvpu"]), d["temp"]) for d in docs]
    t0 = time.perf_counter()
    risks: dict[str, int] = {}
    for obs in observations:
        r = score_news2(obs).risk
        risks[r] = risks.get(r, 0) + 1
    scored = time.perf_counter() - t0
    t0 = time.perf_counter()
    for d in docs:
        score_news2(parse_observation(d))
    parsed = time.perf_counter() - t0
    print(f"3. NEWS2, {n:,} seeded random observations, one core")
    print(f"   score_news2                  {n / scored:12,.0f} scorings/s")
    print(f"   parse_observation + score    {n / parsed:12,.0f} scorings/s")
    print(f"   risk bands: {dict(sorted(risks.items()))}\n")


# --- 4. VT alarm triage score ----------------------------------------------------------------

def vt_triage() -> None:
    from detectors.training.vt_eval import challenge_score

    root = data_dir() / "challenge2015"
    print(f"4. VT alarm triage on {root}")
    if not root.is_dir():
        print("   no challenge2015 folder: skipped\n")
        return
    challenge_score(root)
    print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", help=f"comma-separated mitdb records (default: DS2 present, {','.join(DS2_PRESENT)})")
    p.add_argument("--models", default="fp32,int8", help="comma-separated: fp32, int8 (default both)")
    args = p.parse_args()
    mitdb = data_dir() / "mitdb"
    if not mitdb.is_dir():
        sys.exit(f"no MIT-BIH records at {mitdb}: set VIGIL_DATA_DIR to the folder holding mitdb/")
    records = args.records.split(",") if args.records else list(DS2_PRESENT)
    models = {v: BeatClassifier(model_path("int8" if v == "int8" else "fp32")) for v in args.models.split(",")}
    print(f"data {data_dir()}")
    t0 = time.perf_counter()
    data = [record_data(r) for r in records]
    print(f"chain (EcgAnalyzer + BeatFeatureStream) over {len(records)} records: {time.perf_counter() - t0:.1f} s\n")
    beat_accuracy(data, models)
    beat_throughput(data, models)
    news2_throughput()
    vt_triage()


if __name__ == "__main__":
    main()
