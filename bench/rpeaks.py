"""R-peak detection: Vigil's streaming detector against NeuroKit2 and wfdb's XQRS.

Scoring follows ANSI/AAMI EC57 beat-by-beat comparison: lead 0 (physical units), beat
labels ``NLRBAaJSVrFejnE/fQ?``, one-to-one matching within 150 ms, detections inside
ventricular flutter episodes (``[`` .. ``]``) not scored (`processors.evaluate`).
Unlike bxb's default, the MIT-BIH records are scored from the first sample (no
5-minute learning period is left out). Prints, asserting nothing:

  1. Se / +P / FN / FP per MIT-BIH Arrhythmia record and a GROSS row (summed counts) for
     Vigil (`ecg_findpeaks` fed 1-second chunks, as the worker does), NeuroKit2
     (``ecg_clean`` + ``ecg_peaks``, method "neurokit") and XQRS (``xqrs_detect``).
  2. Throughput, samples/s on one core (BLAS/numba threads pinned to 1), counting only
     the detection calls (best of 3 per record; XQRS once); Vigil whole-record and in
     1-second chunks, numba compiled beforehand.
  3. Vigil's cost per `QrsDetector.feed()` call with 250-sample chunks (mean, p50, p99).
  4. Noise stress (Vigil also as "usable" beats: those the worker's chain keeps outside
     windows its signal-quality index rejects; the rest become a technical condition): nstdb 118e24/12/00/_6 (electrode motion, made by nst; reference =
     118's beats), and mitdb 118 and 119 with the nstdb ``ma`` (muscle) and ``bw``
     (baseline wander) records added at 12, 6 and 0 dB the way nstdbgen does: clean for
     the first 5 minutes, then alternating 2-minute noisy and clean segments, offsets
     chosen so the signal has no step where the gain changes. The SNR follows the
     definition of the WFDB ``nst`` program as described in its manual, signal power
     S = (peak-to-peak QRS amplitude)^2 / 8 over noise power N, approximated the way nst
     measures both (with ``sigamp``): the amplitude is the 5%-trimmed mean of max - min
     within +-50 ms of the first 300 non-ventricular beats; N is the square of the
     5%-trimmed mean RMS of noise channel 0 over its first 300 one-second windows, each
     window's own mean removed (so baseline wander weighs far less than in a plain mean
     square: 13 dB less for ``bw``, 7.5 dB for ``ma``); noise gain
     sqrt(S / (N * 10^(SNR/10))). Measured this way, the em noise nst added to the
     nstdb 118e records comes out 4.5 dB above nominal in all four (nst measured the
     ``em`` record's first 5 minutes, not present here, probably quieter than later on).
     Moody GB, Muldrow WE, Mark RG. A noise stress test for arrhythmia detectors.
     Computers in Cardiology 11:381-384 (1984). Noise cases are scored from 5:00 on
     (noisy and clean segments together, as bxb is run on nstdb).

Data: ``$VIGIL_DATA_DIR`` (default ../shared/data next to the repo), folders mitdb/ and
nstdb/. NeuroKit2 is optional (``pip install neurokit2==0.2.13``; or --no-neurokit).

    .venv/bin/python bench/rpeaks.py                  # all 37 records, ~2 min on one core (XQRS dominates)
    .venv/bin/python bench/rpeaks.py --quick          # first 5 min per record, fewer noise cases
    .venv/bin/python bench/rpeaks.py --records 105,203,208 --no-xqrs
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # "per core": no hidden threads in any detector

# Run as a script, this folder is sys.path[0], and bench/event_store.py would shadow
# the `event_store` package: drop that entry (the project is installed in the venv).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

from processors.ecg import EcgAnalyzer  # noqa: E402
from processors.evaluate import BeatScore, flutter_episodes, match_beats  # noqa: E402
from processors.qrs import QrsDetector, ecg_findpeaks  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("VIGIL_DATA_DIR", REPO.parent / "shared" / "data"))
BEATS = frozenset("NLRBAaJSVrFejnE/fQ?")
Signal = npt.NDArray[np.float64]
Peaks = npt.NDArray[np.int64]
Detector = Callable[[Signal, float], Peaks]


@dataclass
class Record:
    x: Signal
    fs: float
    ref: Peaks
    labels: str  # label of each reference beat
    excluded: list[tuple[int, int]]


def load(path: Path, sampto: int | None = None, ann: Path | None = None) -> Record:
    import wfdb

    rec = wfdb.rdrecord(str(path), channels=[0], sampto=sampto)
    a = wfdb.rdann(str(ann or path), "atr", sampto=sampto)
    beats = [(s, c) for s, c in zip(a.sample, a.symbol, strict=True) if c in BEATS]
    ref = np.array([s for s, _ in beats], dtype=np.int64)
    x = np.ascontiguousarray(rec.p_signal[:, 0], dtype=np.float64)
    return Record(x, float(rec.fs), ref, "".join(c for _, c in beats), flutter_episodes(a.sample, a.symbol))


def vigil(x: Signal, fs: float) -> Peaks:
    return ecg_findpeaks(x, sampling_rate=fs, chunk_size=round(fs))


def vigil_whole(x: Signal, fs: float) -> Peaks:
    return ecg_findpeaks(x, sampling_rate=fs)


def vigil_usable(x: Signal, fs: float) -> Peaks:
    """The beats the worker's chain (`EcgAnalyzer`) reports as usable: detected beats
    outside windows labelled noise, flat, saturated, leads-off or suspect (an implausibly
    short RR interval)."""
    analyzer, step = EcgAnalyzer(fs), round(fs)
    usable = [b.sample for i in range(0, x.shape[0], step) for b in analyzer.feed(x[i:i + step]).beats if b.usable]
    return np.asarray(usable, dtype=np.int64)


def usable_gross(records: list[str], sampto: int | None) -> None:
    total = BeatScore(0, 0, 0)
    for name in records:
        r = load(DATA / "mitdb" / name, sampto)
        total = total + score(r, vigil_usable(r.x, r.fs))
    print(f"Vigil usable beats only (quality-gated), GROSS over {len(records)} records: "
          f"Se {total.sensitivity * 100:.2f}%  +P {total.positive_predictivity * 100:.2f}%  "
          f"FN {total.fn}  FP {total.fp}\n")


def neurokit(x: Signal, fs: float) -> Peaks:
    nk = importlib.import_module("neurokit2")  # optional dependency; untyped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nk.ecg_clean(x, sampling_rate=fs, method="neurokit")
        _, info = nk.ecg_peaks(cleaned, sampling_rate=fs, method="neurokit")
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


def xqrs(x: Signal, fs: float) -> Peaks:
    from wfdb import processing

    return np.asarray(processing.xqrs_detect(sig=x, fs=fs, verbose=False), dtype=np.int64)


def timed(fn: Detector, x: Signal, fs: float, repeat: int) -> tuple[Peaks, float]:
    best = float("inf")
    peaks = np.empty(0, dtype=np.int64)
    for _ in range(repeat):
        t0 = time.perf_counter()
        peaks = fn(x, fs)
        best = min(best, time.perf_counter() - t0)
    return peaks, best


def score(r: Record, peaks: Peaks, start: int = 0) -> BeatScore:
    ref = r.ref[r.ref >= start]
    return match_beats(ref, peaks[peaks >= start], round(0.15 * r.fs), excluded=r.excluded)


def cells(s: BeatScore) -> str:
    return f"{100 * s.sensitivity:7.2f} {100 * s.positive_predictivity:7.2f} {s.fn:5d} {s.fp:5d}"


def header(first: str, width: int, names: list[str]) -> str:
    top = (f"{'':{width}}" + "".join(f" | {n:^27}" for n in names)).rstrip()
    sub = f"{first:<{width}}" + " | " + " | ".join(f"{'Se%':>7} {'+P%':>7} {'FN':>5} {'FP':>5}" for _ in names)
    return f"{top}\n{sub}\n{'-' * len(sub)}"


def per_record(records: list[str], detectors: dict[str, Detector], sampto: int | None
               ) -> tuple[dict[str, float], int]:
    """Table 1; returns seconds spent per detector (incl. 'Vigil whole') and samples."""
    names = list(detectors)
    print(f"1. MIT-BIH Arrhythmia Database, lead 0, {f'first {sampto} samples' if sampto else 'whole records'}")
    print(header("record  beats", 13, names))
    total = {n: BeatScore(0, 0, 0) for n in names}
    secs = {n: 0.0 for n in [*names, "Vigil whole"]}
    samples, mismatch = 0, []
    for name in records:
        r = load(DATA / "mitdb" / name, sampto)
        samples += r.x.shape[0]
        row = []
        for n, fn in detectors.items():
            peaks, dt = timed(fn, r.x, r.fs, 1 if n == "XQRS" else 3)
            secs[n] += dt
            s = score(r, peaks)
            total[n] += s
            row.append(cells(s))
            if n == "Vigil":
                whole, dt = timed(vigil_whole, r.x, r.fs, 3)
                secs["Vigil whole"] += dt
                if not np.array_equal(whole, peaks):
                    mismatch.append(name)
        print(f"{name:<6} {r.ref.shape[0]:6d} | " + " | ".join(row), flush=True)
    gross = total[names[0]]
    print(f"{'GROSS':<6} {gross.tp + gross.fn:6d} | "
          + " | ".join(cells(total[n]) for n in names))
    print(f"Vigil whole-record and 1-s chunked output identical on {len(records) - len(mismatch)}/{len(records)}"
          f" records{' (differ: ' + ', '.join(mismatch) + ')' if mismatch else ''}\n")
    return secs, samples


def throughput(secs: dict[str, float], samples: int) -> None:
    print(f"2. Throughput over {samples:,} samples, one core, detection calls only")
    print(f"{'detector':<20} {'seconds':>9} {'M samples/s':>12} {'x real time (360 Hz)':>21} {'/ NeuroKit2':>12}")
    order = ["Vigil whole", "Vigil", *[n for n in secs if n not in ("Vigil", "Vigil whole")]]
    nk_rate = samples / secs["NeuroKit2"] if "NeuroKit2" in secs else None
    for n in order:
        rate = samples / secs[n]
        label = {"Vigil": "Vigil (1-s chunks)", "Vigil whole": "Vigil (whole record)"}.get(n, n)
        ratio = f"{rate / nk_rate:11.{2 if rate >= 0.1 * nk_rate else 4}f}x" if nk_rate else f"{'-':>12}"
        print(f"{label:<20} {secs[n]:9.3f} {rate / 1e6:12.2f} {rate / 360:21,.0f} {ratio}")
    print()


def chunk_cost(name: str, sampto: int | None, size: int = 250) -> None:
    r = load(DATA / "mitdb" / name, sampto)
    QrsDetector(r.fs).feed(r.x[: 4 * size])  # warm-up (numba is compiled by now; caches, allocator)
    det = QrsDetector(r.fs)
    us = []
    for i in range(0, r.x.shape[0] - size + 1, size):
        chunk = r.x[i:i + size]
        t0 = time.perf_counter_ns()
        det.feed(chunk)
        us.append((time.perf_counter_ns() - t0) / 1000)
    a = np.array(us)
    print(f"3. Vigil QrsDetector.feed(), {size}-sample chunks of mitdb {name} ({a.shape[0]} calls, "
          f"{size / r.fs * 1000:.0f} ms of signal each)")
    print(f"   mean {a.mean():8.1f} us   p50 {np.percentile(a, 50):8.1f} us   p99 {np.percentile(a, 99):8.1f} us"
          f"   max {a.max():8.1f} us   ({a.mean() * 1000 / size:.0f} ns/sample)\n")


def trimmed_mean(values: npt.ArrayLike) -> float:
    a = np.sort(np.asarray(values, dtype=np.float64))
    k = a.shape[0] // 20
    return float(a[k:a.shape[0] - k].mean())


def add_noise(r: Record, noise: Signal, snr_db: float, seg: int, start: int) -> Signal:
    """``r.x`` plus scaled noise in alternating ``seg``-sample segments from ``start`` (nst style)."""
    half, sec = round(0.05 * r.fs), round(r.fs)
    normal = [b for b, c in zip(r.ref, r.labels, strict=True) if c in "NLRBAaJSjen" and b >= half][:300]
    qrs_pp = trimmed_mean([np.ptp(r.x[b - half:b + half + 1]) for b in normal])
    w = noise[: min(300, noise.shape[0] // sec) * sec].reshape(-1, sec)
    noise_rms = trimmed_mean(np.sqrt(np.mean((w - w.mean(axis=1, keepdims=True)) ** 2, axis=1)))
    gain = np.sqrt(qrs_pp**2 / 8 / (noise_rms**2 * 10 ** (snr_db / 10)))
    nz = np.resize(noise, r.x.shape[0])  # nst rewinds a shorter noise record
    y, a_prev, b = r.x.copy(), 0.0, 0.0
    for k, t0 in enumerate(range(start, r.x.shape[0], seg)):
        a = gain if k % 2 == 0 else 0.0
        b += (a_prev - a) * nz[t0]  # no step where the gain changes
        y[t0:t0 + seg] += a * nz[t0:t0 + seg] + b
        a_prev = a
    return y


def noise_table(detectors: dict[str, Detector], quick: bool) -> None:
    import wfdb

    names = list(detectors)
    minutes = 9 if quick else None
    sampto = round(minutes * 60 * 360) if minutes else None
    nst = DATA / "nstdb"
    span = f"5:00-{minutes}:00" if minutes else "5:00-end"
    print(f"4. Noise stress, lead 0, scored {span}")
    print(header("case", 16, names))
    cases: list[tuple[str, Record]] = []
    for rec in (("118e12", "118e00") if quick else ("118e24", "118e12", "118e00", "118e_6")):
        ann = nst / rec if (nst / f"{rec}.atr").exists() else DATA / "mitdb" / "118"
        cases.append((f"nstdb {rec} em", load(nst / rec, sampto, ann)))
    noises = {k: wfdb.rdrecord(str(nst / k), channels=[0], physical=False).d_signal[:, 0].astype(np.float64)
              for k in ("ma", "bw")}  # digital units: the header gain is 0, and scale does not matter
    for rec in ("118", "119"):
        clean = load(DATA / "mitdb" / rec, sampto)
        seg, start = round(120 * clean.fs), round(300 * clean.fs)
        cases.append((f"{rec} clean", clean))
        for kind, noise in noises.items():
            for snr in ((6,) if quick else (12, 6, 0)):
                x = add_noise(clean, noise, snr, seg, start)
                cases.append((f"{rec} {kind} {snr:+d} dB", Record(x, clean.fs, clean.ref, clean.labels, clean.excluded)))
    for label, r in cases:
        start = round(300 * r.fs)
        row = [cells(score(r, fn(r.x, r.fs), start)) for fn in detectors.values()]
        print(f"{label:<16} | " + " | ".join(row), flush=True)
    print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", help="comma-separated mitdb records (default: all in mitdb/RECORDS)")
    p.add_argument("--quick", action="store_true", help="first 5 minutes of each record, fewer noise cases")
    p.add_argument("--no-neurokit", action="store_true", help="skip NeuroKit2")
    p.add_argument("--no-xqrs", action="store_true", help="skip XQRS everywhere")
    p.add_argument("--xqrs-noise", action="store_true", help="also run XQRS on the noise cases (slow)")
    args = p.parse_args()

    records = args.records.split(",") if args.records else (DATA / "mitdb" / "RECORDS").read_text().split()
    sampto = round(300 * 360) if args.quick else None
    detectors: dict[str, Detector] = {"Vigil": vigil}
    if not args.no_neurokit:
        try:
            nk = importlib.import_module("neurokit2")
            print(f"NeuroKit2 {nk.__version__}", end=", ")
        except ImportError:
            sys.exit("neurokit2 is not installed: pip install neurokit2==0.2.13, or pass --no-neurokit")
        detectors["NeuroKit2"] = neurokit
    if not args.no_xqrs:
        import wfdb

        print(f"wfdb {wfdb.__version__} (XQRS)", end=", ")
        detectors["XQRS"] = xqrs
    print(f"data {DATA}\n")
    warm = np.sin(np.arange(3600) / 9.0) ** 15  # compile numba / load modules outside the timings
    for fn in [vigil_whole, *detectors.values()]:
        fn(warm, 360.0)

    secs, samples = per_record(records, detectors, sampto)
    usable_gross(records, sampto)
    throughput(secs, samples)
    chunk_cost("208" if "208" in records else records[0], sampto)
    noise: dict[str, Detector] = {"Vigil": vigil, "Vigil usable": vigil_usable}
    noise |= {n: fn for n, fn in detectors.items() if n not in ("Vigil", "XQRS") or (n == "XQRS" and args.xqrs_noise)}
    noise_table(noise, args.quick)


if __name__ == "__main__":
    main()
