"""What one patient-second costs the worker, apart from Faust, Kafka and PostgreSQL.

Generates N simulated patients (`streams.ward.SimulatedWard`: a 1-s int16 ECG chunk
and a vitals message per patient per second, scenarios compressed so that patients
deteriorate during the run), then runs, in this process, everything the worker
does for those messages that is pure:

  decode     `decode_ecg_chunk` + `decode_vitals`
  ecg        `streams.ecg_pipeline.process_chunk` + `waveform_of`, with the beat
             classifier the worker runs (``--beat-model``, default fp32; ``off``: none)
  vitals     `streams.vitals_pipeline.vitals_to_events`, with the bookkeeping of
             `streams.app` (stale check, `VitalsPatient`)
  snapshot   `EcgPatient.snapshot` + `VitalsPatient.encode` once per patient every
             ``--checkpoint`` seconds (the worker's checkpoint interval), so per
             patient-second it is a tenth of one snapshot by default; spread over
             the interval as the worker spreads them (`streams.states.share_of`),
             or all in its last second with ``--burst`` (as before)
  sink       the store's pure steps for one batch of a second's events:
             `streams.sink` request grouping, `event_store.base.prepare` (JSON +
             leaf hash), `assign` and `chain` (rows as COPY takes them), and the
             waveform rows' source JSON

and prints CPU time (``time.process_time``, so other processes on the machine do not
count) in ms per patient-second for each and in total, the CPU of the median and the
busiest ward second, plus what a restore costs
(after a crash or a rebalance; not in the total). Messages are generated before
timing starts; the first ``--warmup`` seconds are processed but not timed (numba
compilation, learning periods). With ``--profile``, a cProfile of the timed part,
top 20 by own time (the figures above it then include the profiler's overhead).
With ``--stages``, the CPU of each stage of the ECG chain and of the alarm engine
over the timed part, per patient-second (`STAGES`: each stage's method wrapped with
a CPU clock, which adds about a microsecond per call; indented stages are parts of
the one above them). Nothing is asserted. On a shared machine, compare runs made
back to back: CPU time per call still grows with the load on the other cores.

The garbage collector runs as in the worker: the worker's young-generation threshold
(`vigil.runtime.WORKER_GC_GEN0_THRESHOLD`; ``VIGIL_GC_GEN0`` overrides it), with the
generated ward frozen out of its sight (`gc.freeze`), since in the worker messages
come and go instead of waiting in a list for the whole run.

    .venv/bin/python bench/worker_cpu.py --patients 200 --seconds 60
    .venv/bin/python bench/worker_cpu.py --patients 100 --seconds 30 --profile
    .venv/bin/python bench/worker_cpu.py --patients 300 --seconds 20 --stages
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import io
import json
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script, this folder is sys.path[0], and bench/event_store.py would shadow
# the `event_store` package: drop that entry (the project is installed in the venv).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from detectors.alarms import AlarmEngine  # noqa: E402
from detectors.arrhythmia import ArrhythmiaDetector  # noqa: E402
from detectors.beat_classifier import BeatClassifier, shared_classifier  # noqa: E402
from detectors.beat_features import BeatFeatureStream  # noqa: E402
from detectors.ecg_activity import ActivityMeter  # noqa: E402
from detectors.vf import VfDetector  # noqa: E402
from event_store.base import assign, chain, prepare  # noqa: E402
from event_store.events import NewEvent  # noqa: E402
from event_store.integrity import GENESIS  # noqa: E402
from event_store.waveforms import WaveformChunk  # noqa: E402
from processors.ecg import EcgAnalyzer  # noqa: E402
from processors.qrs import QrsDetector  # noqa: E402
from processors.sqi import SignalQuality  # noqa: E402
from streams.ecg_codec import decode_ecg_chunk  # noqa: E402
from streams.ecg_pipeline import ENGINE, EcgPatient, process_chunk, warm_up, waveform_of  # noqa: E402
from streams.sink import SinkItem, _requests  # noqa: E402
from streams.states import CHECKPOINT_INTERVAL_S, share_of  # noqa: E402
from streams.topics import TopicNames  # noqa: E402
from streams.vitals_codec import Rejected, decode_vitals  # noqa: E402
from streams.vitals_pipeline import SourceRef, VitalsPatient, vitals_to_events  # noqa: E402
from streams.ward import SimulatedWard  # noqa: E402
from vigil.runtime import WORKER_GC_GEN0_THRESHOLD, tune_gc  # noqa: E402

START_US = 1_764_122_400_000_000
COMPONENTS = ("decode", "ecg", "vitals", "snapshot", "sink")
STAGES: tuple[tuple[str, type, str], ...] = (
    ("ECG analyzer (QRS, SQI, RR)", EcgAnalyzer, "feed"),
    ("  QRS detector", QrsDetector, "feed"),
    ("  signal quality", SignalQuality, "feed"),
    ("beat features", BeatFeatureStream, "feed"),
    ("beat classifier", BeatClassifier, "predict"),
    ("arrhythmia detector", ArrhythmiaDetector, "feed"),
    ("  VF detector", VfDetector, "feed"),
    ("  activity meter", ActivityMeter, "feed"),
    ("alarm engine (ECG and vitals)", AlarmEngine, "step"),
)
"""(label, class, method) timed by ``--stages``."""


class StageClock:
    """While on, every call of a `STAGES` method adds its CPU time to its stage."""

    def __init__(self) -> None:
        self.cpu = dict.fromkeys((label for label, _, _ in STAGES), 0.0)
        self.on = False
        for label, cls, name in STAGES:
            setattr(cls, name, self._clocked(label, getattr(cls, name)))

    def _clocked(self, label: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def clocked(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return method(*args, **kwargs)
            t0 = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.cpu[label] += time.process_time() - t0

        return clocked


class Worker:
    """The pure part of `streams.app`'s agents, with a CPU clock per component."""

    def __init__(self, topics: TopicNames, engine: AlarmEngine, checkpoint_s: int,
                 classifier: BeatClassifier | None, burst: bool = False) -> None:
        self.burst = burst
        self.classifier = classifier
        self.topics = topics
        self.engine = engine
        self.checkpoint_s = checkpoint_s
        self.ecg: dict[str, EcgPatient] = {}
        self.vitals: dict[str, VitalsPatient] = {}
        self.offsets: Counter[str] = Counter()
        self.cpu = dict.fromkeys(COMPONENTS, 0.0)
        self.events = Counter[str]()
        self.restore_s = 0.0
        self.restores = 0
        self.snapshot_bytes = 0
        self.snapshots = 0
        self.head = 0
        self.head_hash = GENESIS
        self.versions: dict[str, int] = {}
        self.seconds: list[float] = []  # CPU of each timed ward second, all components

    def second(self, t: int, messages: list[tuple[str, bytes, bytes]], timed: bool) -> None:
        clock = time.process_time
        c0 = clock()
        decoded: list[tuple[str, SourceRef, Any]] = []
        for topic, _, value in messages:
            offset = self.offsets[topic]
            self.offsets[topic] += 1
            source = SourceRef(topic, 0, offset)
            if topic == self.topics.ecg:
                decoded.append((topic, source, decode_ecg_chunk(value)))
            else:
                decoded.append((topic, source, decode_vitals(value)))
        c1 = clock()
        items: list[SinkItem] = []
        ecg_cpu = vitals_cpu = 0.0
        for topic, source, message in decoded:
            a = clock()
            if topic == self.topics.ecg:
                key = f"{message.patient_id}/{message.lead.name}"
                state, events = process_chunk(self.ecg.get(key), message, source, self.classifier)
                self.ecg[key] = state
                items.append(SinkItem(events, [waveform_of(message, source)]))
                ecg_cpu += clock() - a
            else:
                key = f"device/{message.patient_id}"
                vstate = self.vitals.get(key) or VitalsPatient(self.engine.new_state(message.patient_id, "ward"))
                ts_ms = round(message.occurred_at.timestamp() * 1000)
                if ts_ms <= vstate.last_ts_ms:
                    raise Rejected("stale_timestamp", "the simulator never sends one")
                alarms, events = vitals_to_events(message, source, vstate.alarms, self.engine)
                self.vitals[key] = VitalsPatient(alarms, source.offset, ts_ms)
                items.append(SinkItem(events))
                vitals_cpu += clock() - a
        c2 = clock()
        last_second = (t + 1) % self.checkpoint_s == 0

        def due(key: str) -> bool:
            if self.burst:
                return last_second
            return share_of(key, self.checkpoint_s) == t % self.checkpoint_s

        for key, e in self.ecg.items():
            if due(key):
                data = e.snapshot()
                self.snapshot_bytes += len(data)
                self.snapshots += 1
        for key, v in self.vitals.items():
            if due(key):
                data = v.encode()
                self.snapshot_bytes += len(data)
                self.snapshots += 1
        c3 = clock()
        self._sink(items)
        c4 = clock()
        if timed:
            self.seconds.append(c4 - c0)
            self.cpu["decode"] += c1 - c0
            self.cpu["ecg"] += ecg_cpu
            self.cpu["vitals"] += vitals_cpu
            self.cpu["snapshot"] += c3 - c2
            self.cpu["sink"] += c4 - c3
            for item in items:
                self.events.update(e.event_type for e in item.events)

    def _sink(self, items: list[SinkItem]) -> None:
        requests = _requests(items)
        events: list[NewEvent] = [e for r in requests for e in r.events]
        now = datetime.now(UTC)
        prepared = prepare(events, now)
        plan = assign(requests, self.head, {s: self.versions.get(s, 0) for s in {r.stream_id for r in requests}}, {})
        rows, self.head_hash = chain(plan, prepared, now, self.head_hash)
        self.head = plan.position
        self.versions.update(plan.streams)
        waves: list[WaveformChunk] = [w for item in items for w in item.waveforms]
        _ = [json.dumps(w.source) for w in waves], rows

    def time_restore(self) -> None:
        ecg = [e.snapshot() for e in self.ecg.values()]
        vitals = [v.encode() for v in self.vitals.values()]
        c0 = time.process_time()
        for data in ecg:
            EcgPatient.restore(data)
        for data in vitals:
            VitalsPatient.decode(data)
        self.restore_s = time.process_time() - c0
        self.restores = len(self.ecg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", type=int, default=200)
    p.add_argument("--seconds", type=int, default=60, help="timed seconds")
    p.add_argument("--warmup", type=int, default=30, help="seconds processed before timing starts")
    p.add_argument("--checkpoint", type=int, default=round(CHECKPOINT_INTERVAL_S),
                   help="seconds between snapshots of a patient's state (default: the worker's interval)")
    p.add_argument("--burst", action="store_true",
                   help="snapshot every patient in the interval's last second, not a share each second")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--profile", action="store_true", help="print a cProfile top 20 of the timed part")
    p.add_argument("--stages", action="store_true", help="print the CPU of each stage of the ECG chain (`STAGES`)")
    p.add_argument("--beat-model", choices=("fp32", "int8", "off"), default="fp32",
                   help="the beat classifier, as `vigil worker --beat-model`")
    args = p.parse_args()
    n, total = args.patients, args.warmup + args.seconds
    topics = TopicNames("bench")
    ward = SimulatedWard(n, seed=args.seed, topics=topics, onset_s=args.warmup + 5, ramp_s=20)
    g0 = time.process_time()
    messages = [ward.second(t, START_US) for t in range(total)]
    # The worker's collector: its young-generation threshold, and the ward made above out
    # of its sight (in the worker, messages come and go; here they wait in a list for the
    # whole run, and the collector would scan them over and over).
    gen0 = tune_gc(default=WORKER_GC_GEN0_THRESHOLD)
    gc.freeze()
    print(f"worker CPU benchmark: {n} patients, {args.warmup} s warm-up + {args.seconds} s timed, "
          f"snapshots every {args.checkpoint} s ({'all at once' if args.burst else 'spread'}), "
          f"beat classifier {args.beat_model}, collector's young threshold {gen0}; "
          f"generating the ward took {time.process_time() - g0:.1f} s CPU")
    classifier = None if args.beat_model == "off" else shared_classifier(args.beat_model)
    warm_up(classifier=classifier)
    worker = Worker(topics, ENGINE, args.checkpoint, classifier, burst=args.burst)
    for t in range(args.warmup):
        worker.second(t, messages[t], timed=False)
    stages = StageClock() if args.stages else None
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    if stages is not None:
        stages.on = True
    for t in range(args.warmup, total):
        worker.second(t, messages[t], timed=True)
    if stages is not None:
        stages.on = False
    if profiler is not None:
        profiler.disable()
    worker.time_restore()
    patient_seconds = n * args.seconds
    print(f"{'component':<10} {'ms per patient-second':>22}")
    for name in COMPONENTS:
        print(f"{name:<10} {1000 * worker.cpu[name] / patient_seconds:22.4f}")
    print(f"{'total':<10} {1000 * sum(worker.cpu.values()) / patient_seconds:22.4f}")
    busy = sorted(worker.seconds)
    print(f"per ward second: median {1000 * busy[len(busy) // 2]:.0f} ms, busiest {1000 * busy[-1]:.0f} ms of CPU "
          f"(a second that needs more than the worker has delays every message behind it)")
    print(f"restore    {1000 * worker.restore_s / max(worker.restores, 1):22.4f} ms per patient, ECG and vitals "
          f"(after a crash or rebalance; not in the total)")
    print(f"snapshots: {worker.snapshot_bytes / max(worker.snapshots, 1):.0f} bytes on average; events per "
          f"patient-second {sum(worker.events.values()) / patient_seconds:.2f}: {dict(sorted(worker.events.items()))}")
    if stages is not None:
        print(f"{'stage':<32} {'ms per patient-second':>22}")
        for label, cpu in stages.cpu.items():
            print(f"{label:<32} {1000 * cpu / patient_seconds:22.4f}")
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
        print(out.getvalue())


if __name__ == "__main__":
    main()
