"""The worker's lethal-arrhythmia and ECG-noise alarms on real recordings. Figures only.

Each record goes through exactly what the worker runs for one patient:
`streams.ecg_pipeline.process_chunk`, fed 1-s chunks of int16 counts (5 uV each;
a missing sample is sent as 0, as the wire format has no "missing"), with the
shipped beat classifier. Its AlertRaised events are then held against the
record's reference annotations. With ``--leads 1`` the patient's monitor sends one
lead (the first named below); with ``--leads 2`` (both, by default, one after the
other) it sends the record's first two ECG leads, and the worker fuses them
(`detectors.lead_fusion`). Sets (``--sets``, all by default):

- ``mitdb``: the MIT-BIH Arrhythmia Database records present, lead MLII (second: V1,
  V2, V4 or V5);
- ``noise``: 24 of them (`NOISE_RECORDS`) with noise of the MIT-BIH Noise Stress Test
  Database added: muscle artefact (``ma``) at 0 and 6 dB and baseline wander (``bw``)
  at 0 dB, the decibels being the ratio of the signal's standard deviation to the
  added noise's (the noise records' first channel on the first lead, the second on
  the second);
- ``nstdb``: that database's own records 118e_6, 118e00, 118e12 and 118e24 (electrode
  motion at -6 to 24 dB on record 118, which holds no VT);
- ``challenge``: the 2015 challenge's VT alarm records, lead II (or the first ECG
  lead; second: the next ECG lead), whole records.

What is counted:

- **VT runs found**: a reference run of 5 or more ventricular beats (AAMI V: V, E)
  some 5 consecutive of which are faster than 100 bpm (the 2015 challenge's VT
  definition) is found when a VT alarm is raised from 2 s before it to 10 s after
  it. High-priority alarms latch until acknowledged, so a nurse acknowledges every
  alarm `ACK_AFTER_S` after it is raised: a latched alarm then ends once its
  condition has, and a later run raises a new one. (``--no-ack``: nobody
  acknowledges, and the counts are floors, as this benchmark gave them before.)
- **VT false**: VT alarms outside every such run and outside ventricular flutter
  or fibrillation episodes (VT alarms inside those are counted apart: a lethal
  alarm on a lethal rhythm).
- **challenge**: a VT alarm between 16 s before the monitor's alarm (300 s into the
  record) and 10 s after it (only the long records go on after it); for the true
  alarms that is a VT found, for the false ones a false alarm repeated. VT alarms
  earlier in the records are counted too, without a verdict.
- VF and ECG-noise alarms raised, for every set; VF alarms from 2 s before to 10 s
  after a reference flutter or fibrillation episode are counted apart.
- every alarm raised, by condition. None of these records holds an asystole, and
  the MIT-BIH and noise records hold no extreme bradycardia (under 40 bpm), so such
  alarms there are false.

    .venv/bin/python bench/ecg_alarms.py                    # every set, one and two leads, about 15 min
    .venv/bin/python bench/ecg_alarms.py --sets mitdb challenge

Data: ``$VIGIL_DATA_DIR`` (default ../shared/data next to the repo).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

# Run as a script, this folder is sys.path[0], and bench/detectors.py would shadow the
# `detectors` package: drop that entry (the project is installed in the venv).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from detectors.alarm_inputs import Acknowledge, AlarmInputs  # noqa: E402
from detectors.beat_classifier import AAMI_CLASSES, shared_classifier  # noqa: E402
from detectors.training.mitdb import data_dir, load_record  # noqa: E402
from detectors.training.vt_eval import load_answers  # noqa: E402
from detectors.vt_triage import VT_ALARM  # noqa: E402
from streams.ecg_codec import EcgChunk, Lead  # noqa: E402
from streams.ecg_pipeline import ENGINE, EcgPatient, process_chunk  # noqa: E402
from streams.vitals_pipeline import SourceRef  # noqa: E402

DATA = data_dir()
SETS = ("mitdb", "noise", "nstdb", "challenge")
NOISE_RECORDS = ("100", "101", "103", "105", "106", "112", "113", "115", "116", "117", "121", "122", "123",
                 "200", "201", "202", "203", "205", "208", "210", "215", "220", "223", "230")
NOISES = (("ma", 0.0), ("ma", 6.0), ("bw", 0.0))
V = AAMI_CLASSES.index("V")
UV = 0.005  # mV per count
T0_US = 1_764_122_400_000_000
FloatArray = npt.NDArray[np.float64]


ACK_AFTER_S = 10
"""Seconds from an alarm to its acknowledgement at the bedside."""


def alarms(leads: Sequence[FloatArray], fs: int, *, ack: bool = True) -> list[tuple[float, str]]:
    """(seconds from the start, condition) of every AlertRaised of the worker's ECG
    pipeline for one patient whose monitor sends ``leads`` (the first as II, the
    second as V1); with ``ack``, each alarm is acknowledged `ACK_AFTER_S` after it."""
    state: EcgPatient | None = None
    out: list[tuple[float, str]] = []
    classifier = shared_classifier()
    due: list[tuple[int, str]] = []  # (chunk before which to acknowledge, alert id)
    offset = 0
    for t in range(min(x.shape[0] for x in leads) // fs):
        if state is not None and due and due[0][0] <= t:
            now, acks = (T0_US + t * 1_000_000) / 1e6, [Acknowledge(a, "bench") for d, a in due if d <= t]
            due = [(d, a) for d, a in due if d > t]
            state.alarms, _ = ENGINE.step(state.alarms, AlarmInputs(commands=acks), now=now)
        for x, code in zip(leads, (Lead.II, Lead.V1), strict=False):
            part = x[t * fs:(t + 1) * fs]
            counts = np.clip(np.round(np.nan_to_num(part) / UV), -32767, 32767).astype(np.int16)
            chunk = EcgChunk("p1", "bench", code, fs, t, T0_US + t * 1_000_000, counts, UV)
            state, events = process_chunk(state, chunk, SourceRef("ecg", 0, offset), classifier)
            offset += 1
            raised = [e for e in events if e.event_type == "AlertRaised"]
            out += [((e.occurred_at.timestamp() * 1e6 - T0_US) / 1e6, str(e.payload["condition"])) for e in raised]
            if ack:
                due += [(t + 1 + ACK_AFTER_S, str(e.payload["alert_id"])) for e in raised]
    return out


def mitdb_truth(rec: str) -> tuple[list[FloatArray], int, list[tuple[float, float]], list[tuple[float, float]]]:
    """An MIT-BIH record's MLII lead and its other lead, its rate, its VT runs and its
    flutter/fibrillation episodes (seconds)."""
    r = load_record(rec)
    other = leads(DATA / "mitdb" / rec, 2)[0][1]
    fs = int(r.fs)
    runs, current = [], []
    for sample, cls in zip(r.ref_samples.tolist(), r.ref_classes.tolist(), strict=True):
        if cls == V:
            current.append(sample)
        else:
            runs.append(current)
            current = []
    runs.append(current)
    vt = [(run[0] / fs, run[-1] / fs) for run in runs
          if len(run) >= 5 and any(60 * 4 * fs / (run[i + 4] - run[i]) > 100 for i in range(len(run) - 4))]
    return [r.signal, other], fs, vt, [(a / fs, b / fs) for a, b in r.excluded]


_PREFERRED = ("MLII", "II", "I", "III", "V", "aVF", "V1", "V2", "V4", "V5", "aVR", "aVL", "MCL", "MCL1")


def leads(path: Path, n: int, channel: str | None = None) -> tuple[list[FloatArray], int]:
    """The first ``n`` ECG leads of a WFDB record, the one named ``channel`` (or the
    first of `_PREFERRED`) first, then the others in `_PREFERRED` order."""
    import wfdb

    rec = wfdb.rdrecord(str(path))
    names = list(rec.sig_name)
    ecg = [c for c in _PREFERRED if c in names]
    if channel in names:
        ecg = [channel, *(c for c in ecg if c != channel)]
    return [np.asarray(rec.p_signal[:, names.index(c)], dtype=np.float64) for c in ecg[:n]], int(rec.fs)


def mitdb_records() -> list[str]:
    return sorted(p.stem for p in (DATA / "mitdb").glob("*.hea"))


Truth = list[tuple[float, float]]


def annotated(records: list[str], n: int) -> Iterator[tuple[list[FloatArray], int, Truth, Truth]]:
    for rec in records:
        xs, fs, vt_runs, lethal = mitdb_truth(rec)
        yield xs[:n], fs, vt_runs, lethal


def noisy(records: list[str], n: int) -> Iterator[tuple[list[FloatArray], int, Truth, Truth]]:
    import wfdb

    noise = {kind: wfdb.rdrecord(str(DATA / "nstdb" / kind)).p_signal.T for kind, _ in NOISES}  # noise1, noise2
    for rec in records:
        xs, fs, vt_runs, lethal = mitdb_truth(rec)
        for kind, db in NOISES:
            mixed = []
            for x, ns in zip(xs[:n], noise[kind], strict=False):
                ns = ns[:x.shape[0]]
                gain = np.std(x[:ns.shape[0]]) / np.std(ns) / 10 ** (db / 20)
                mixed.append(x[:ns.shape[0]] + gain * ns)
            yield mixed, fs, vt_runs, lethal


def score_annotated(items: Iterator[tuple[list[FloatArray], int, Truth, Truth]], *, ack: bool = True) -> Counter[str]:
    c: Counter[str] = Counter()
    for xs, fs, vt_runs, lethal in items:
        raised = alarms(xs, fs, ack=ack)
        vt = [t for t, cond in raised if cond == "ventricular_tachycardia"]
        c["records"] += 1
        c["hours"] += xs[0].shape[0] / fs / 3600
        c["vt runs"] += len(vt_runs)
        c["vt runs found"] += sum(any(a - 2 <= t <= b + 10 for t in vt) for a, b in vt_runs)
        for t in vt:
            if any(a - 2 <= t <= b + 10 for a, b in vt_runs):
                continue
            c["vt in flutter/VF" if any(a - 2 <= t <= b + 10 for a, b in lethal) else "vt false"] += 1
        vf = [t for t, cond in raised if cond == "ventricular_fibrillation"]
        c["vf alarms"] += len(vf)
        c["vf in flutter/VF"] += sum(any(a - 2 <= t <= b + 10 for a, b in lethal) for t in vf)
        c["noise alarms"] += sum(cond == "ecg_noise" for _, cond in raised)
        c.update(f"alarm {cond}" for _, cond in raised)
    return c


def score_challenge(n: int, *, ack: bool = True) -> Counter[str]:
    root = DATA / "challenge2015"
    truth = {name: true for name, (kind, true) in load_answers(root).items()
             if kind == VT_ALARM and (root / f"{name}.hea").exists()}
    c: Counter[str] = Counter()
    for name, true in sorted(truth.items()):
        xs, fs = leads(root / name, n, "II")
        raised = alarms(xs, fs, ack=ack)
        vt = [t for t, cond in raised if cond == "ventricular_tachycardia"]
        kind = "true" if true else "false"
        c[f"{kind} alarms"] += 1
        c[f"{kind}: VT alarm near it"] += any(284 <= t <= 310 for t in vt)
        c[f"{kind}: VT alarms before 280 s"] += sum(t < 280 for t in vt)
        c["vf alarms"] += sum(cond == "ventricular_fibrillation" for _, cond in raised)
        c["noise alarms"] += sum(cond == "ecg_noise" for _, cond in raised)
        c.update(f"alarm {cond}" for _, cond in raised)
    return c


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--no-ack", dest="ack", action="store_false",
                        help="nobody acknowledges: an alarm latched stays, and later ones are not raised")
    parser.add_argument("--leads", nargs="+", type=int, choices=(1, 2), default=[1, 2],
                        help="ECG leads the monitor sends (each count given is run)")
    args = parser.parse_args()
    who = f"each alarm acknowledged {ACK_AFTER_S} s after it" if args.ack else "no alarm acknowledged"
    print(f"ECG alarms of the worker's pipeline (process_chunk, 1-s chunks, shipped classifier, {who}); "
          f"data {DATA}")
    for name in args.sets:
        for n in args.leads:
            began = time.perf_counter()
            c = score_set(name, n, args.ack)
            took = time.perf_counter() - began
            head = f"  {name}, {n} lead{'s' if n > 1 else ''}"
            if name == "challenge":
                print(f"{head}: {c['true alarms']} true VT alarms, VT alarm near {c['true: VT alarm near it']}; "
                      f"{c['false alarms']} false ones, VT alarm near {c['false: VT alarm near it']}; VT alarms "
                      f"before 280 s {c['true: VT alarms before 280 s']} (true records) + "
                      f"{c['false: VT alarms before 280 s']} (false); VF alarms {c['vf alarms']}, noise alarms "
                      f"{c['noise alarms']}  [{took:.0f} s]")
            else:
                print(f"{head}: {c['records']} records, {c['hours']:.1f} h; VT runs found {c['vt runs found']} of "
                      f"{c['vt runs']}, VT false {c['vt false']}, VT in flutter/VF {c['vt in flutter/VF']}; "
                      f"VF alarms {c['vf alarms']} ({c['vf in flutter/VF']} in flutter/VF), "
                      f"noise alarms {c['noise alarms']}  [{took:.0f} s]")
            by_condition = sorted((k.removeprefix("alarm "), v) for k, v in c.items() if k.startswith("alarm "))
            print("      alarms raised: " + (", ".join(f"{k} {v}" for k, v in by_condition) or "none"))
    return 0


def score_set(name: str, n: int, ack: bool) -> Counter[str]:
    if name == "mitdb":
        return score_annotated(annotated(mitdb_records(), n), ack=ack)
    if name == "noise":
        return score_annotated(noisy([r for r in NOISE_RECORDS if (DATA / "mitdb" / f"{r}.hea").exists()], n),
                               ack=ack)
    if name == "nstdb":
        return score_annotated(((*leads(DATA / "nstdb" / rec, n), [], []) for rec in ("118e_6", "118e00", "118e12",
                                                                                        "118e24")
                                if (DATA / "nstdb" / f"{rec}.hea").exists()), ack=ack)
    return score_challenge(n, ack=ack)


if __name__ == "__main__":
    raise SystemExit(main())
