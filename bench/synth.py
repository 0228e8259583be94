"""Throughput of the synthetic ECG generator (streams/ecg_synth.py) on one core.

For 1, 100 and 1000 patients (one `SyntheticEcg` each, heart rates spread over
55-110 bpm), generates ``--seconds`` of signal in 1-second chunks, patient after
patient as a publisher would, and prints samples per second, the real-time factor
(simulated seconds per wall second for the whole ward) and the cost per
``next_chunk`` call. The numba kernel is compiled (or loaded from its cache) before
timing; building the generators, which runs their 5-s warm-up, is timed apart.
``--artefacts`` turns on noise, baseline wander, motion bursts and PVCs. Prints
figures only, asserts nothing. Real time for 1000 patients at 250 Hz is 250,000
samples/s.

    .venv/bin/python bench/synth.py
    .venv/bin/python bench/synth.py --patients 1000 --seconds 30 --artefacts
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: no hidden threads

# Run as a script, this folder is sys.path[0], and bench/event_store.py would shadow
# the `event_store` package: drop that entry (the project is installed in the venv).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from streams.ecg_synth import EcgConfig, Noise, Rhythm, SyntheticEcg  # noqa: E402


def config(i: int, fs: float, artefacts: bool) -> EcgConfig:
    hr = 55.0 + (i * 37) % 56
    if not artefacts:
        return EcgConfig(sampling_rate=fs, hr_bpm=hr)
    return EcgConfig(sampling_rate=fs, hr_bpm=hr, rhythm=Rhythm(pvc_per_min=2.0),
                     noise=Noise(gaussian_mv=0.03, baseline_wander_mv=0.15, motion_per_min=1.0))


def run(patients: int, seconds: int, fs: float, chunk_s: float, artefacts: bool) -> None:
    t0 = time.perf_counter()
    ward = [SyntheticEcg(config(i, fs, artefacts), seed=42, patient=f"p{i:04d}") for i in range(patients)]
    setup = time.perf_counter() - t0
    chunk = round(chunk_s * fs)
    steps = max(1, round(seconds / chunk_s))
    t0 = time.perf_counter()
    for _ in range(steps):
        for gen in ward:
            gen.next_chunk(chunk)
    elapsed = time.perf_counter() - t0
    samples = patients * steps * chunk
    rate = samples / elapsed
    print(f"{patients:>8}  {rate:>14,.0f}  {rate / (patients * fs):>10.1f}x  "
          f"{elapsed / (patients * steps) * 1e6:>10.1f}  {setup:>9.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", default="1,100,1000", help="comma-separated ward sizes (default 1,100,1000)")
    ap.add_argument("--seconds", type=int, default=10, help="simulated seconds per ward (default 10)")
    ap.add_argument("--sampling-rate", type=float, default=250.0, help="Hz (default 250)")
    ap.add_argument("--chunk-s", type=float, default=1.0, help="chunk duration in seconds (default 1)")
    ap.add_argument("--artefacts", action="store_true", help="noise, wander, motion bursts and PVCs on")
    args = ap.parse_args()
    sizes = [int(s) for s in args.patients.split(",") if s.strip()]

    SyntheticEcg(config(0, args.sampling_rate, args.artefacts)).next_chunk(round(args.sampling_rate))  # compile
    print(f"synthetic ECG, {args.sampling_rate:g} Hz, {args.chunk_s:g}-s chunks, {args.seconds} s per ward, "
          f"artefacts {'on' if args.artefacts else 'off'}, one core")
    print(f"{'patients':>8}  {'samples/s':>14}  {'real time':>11}  {'us/chunk':>10}  {'setup s':>9}")
    for n in sizes:
        run(n, args.seconds, args.sampling_rate, args.chunk_s, args.artefacts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
