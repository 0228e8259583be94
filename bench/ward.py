"""Does the pipeline keep up with a ward, and how fast do alarms land?

For each N (``--patients 100,250,500,1000``) this starts from a fresh database and
topic prefix, runs one worker process, and publishes N simulated patients in real
time: a 250 Hz ECG chunk (int16, 1 s) and a 1 Hz vitals message per patient per
second (`streams.ward.SimulatedWard`, scenarios compressed so that patients
deteriorate within the run). Everything runs on this machine: Apache Kafka (one
KRaft node), PostgreSQL, the publisher (in this process) and the worker. The ward
starts once the worker has stored a probe message (it has joined its group), so the
run measures the steady state, not the draining of what piled up while it started.

Printed per N:
  ready        seconds from the worker's start until the probe was stored
  keeps up     lag = messages published - messages whose results are in the store
               (waveform rows + VitalsObserved events), sampled every 2 s over the
               measured part; "yes" if in its last third it stays within 3 s of
               input and stops growing
  lag          median and max of those samples, in seconds of input
  CPU          worker CPU seconds per wall second, and per patient (ms per second of data)
  machine      all cores' busy share over the run (/proc/stat)
  CPU s/s      CPU seconds per wall second of each part: the worker (and its main
               thread apart: the one that runs the event loop and every agent, so
               it cannot pass 1.0), Kafka, PostgreSQL
               (server and backends) and the publisher (this process: the simulated
               devices, stamped, encoded and sent bed by bed as they fall due, and
               its lag sampling)
  latency      device timestamp -> event committed in the store (recorded_at - occurred_at),
               p50 / p99 / max, for alarm events and for all events; with one worker
               and no --crash-at, also the share of alarms within 0.1 / 0.5 / 1 s by the
               worker's own /metrics (`streams.metrics`, scraped as the measure starts and
               ends) beside the same shares from the store
  event loop   (with those scrapes) how late the worker's event loop woke a probe due
               every 50 ms (`streams.loop_delay`): what a message arriving then waited
               before the worker could look at it; the share within 10 / 50 / 250 ms
               and 1 s (a chunk's worth), and the bucket of the longest
  host speed   seconds a fixed pure-Python loop (`host_speed`) took just before and just
               after the run, while nothing else of the benchmark ran: on this shared
               host such a loop ran up to 2.7 times faster on one day than on another
               (and drifted within a day), so compare ward figures only between runs
               whose host speeds are close

The devices' ECG model and vitals scripts run before the worker starts (with
``--render live``, while sending): real bedside devices do not compute on the
server, and a publisher synthesising a 1,000-bed ward as it sent used 0.47 s of
CPU per second, against 0.19 s/s sending it rendered: CPU the worker's host would
otherwise lend the simulator. The bytes sent are the same either way.

Nothing is asserted; figures only. The worker classifies every beat, as by default
(``--beat-model off`` measures it without the classifier).

With ``--crash-at S`` the worker is killed (SIGKILL) S measured seconds in and a new
one started at once; lag is then sampled every second, and a further line gives the
seconds until it stayed within 1 s of input, and the latency of the alarms that
occurred from 1 s before the kill until then.

With ``--workers K`` (real-time runs only) K worker processes share the input
partitions as one consumer group, each with its own state folder, and the measure
starts once the group is stable with all K; CPU is printed per worker. On this 2-core
host (2026-11-27, 60 s runs) two workers kept up with 500, 700 (twice) and 850 beds,
alarm p99 0.21, 0.45 / 1.81 and 2.75 s, the machine 77-97 % busy, but not with
1,000; one worker kept up with 700 in 3 of 7 runs that evening (lag median 0.4-5.9
s, machine 68-78 % busy). The two cores are then the limit, not one worker's event
loop.

With ``--backlog S`` it measures capacity instead: S seconds of the ward are
published at once, then the worker is started, and the line gives how fast it
works through them, in patient-seconds of input per second (after its first result,
so start-up and group join are left out); that over N says how many times real time
one worker runs at that ward size on this host. The patients deteriorate 25 s in, as
in a real-time run with the default warm-up (two runs with the onset at 5 s gave
about 10 % less, not alternated with these).

    .venv/bin/python bench/ward.py --patients 100,250,500,1000 --seconds 60
    .venv/bin/python bench/ward.py --patients 1000 --backlog 60
    .venv/bin/python bench/ward.py --patients 500,850 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

# Run as a script, this folder is sys.path[0], and bench/event_store.py would shadow
# the `event_store` package: drop that entry (the project is installed in the venv).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import psycopg  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from event_store.postgres import PostgresRecorder  # noqa: E402
from streams.gc_pauses import summed_reports  # noqa: E402
from streams.metrics import parse, serving_port  # noqa: E402
from streams.sink import ALARM_EVENTS  # noqa: E402
from streams.topics import TopicNames  # noqa: E402
from streams.vitals_codec import encode_vitals  # noqa: E402
from streams.ward import SimulatedWard, publish_ward, send_second  # noqa: E402
from vigil.services.kafka import KafkaCluster  # noqa: E402
from vigil.services.postgres import PostgresCluster  # noqa: E402
from vigil.services.process import ManagedProcess, cpu_seconds, tree_cpu_seconds  # noqa: E402

PARTITIONS = 4


def machine_busy() -> tuple[float, float]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


HOST_SPEED_LOOPS = 30_000_000


def host_speed(loops: int = HOST_SPEED_LOOPS) -> float:
    """Seconds this process takes for ``loops`` additions in a Python loop: one core's
    speed for the interpreter, as the worker uses it. For the default: 0.78 s before
    and 1.03 s after a 100-bed run, on this project's 2-core host on 2026-11-27."""
    t0 = time.perf_counter()
    total = 0
    for i in range(loops):
        total += i
    return time.perf_counter() - t0


def run_on_host(run: Coroutine[Any, Any, None]) -> None:
    """Run one ward size, then print the host's speed measured just before and after it."""
    before = host_speed()
    asyncio.run(run)
    print(f"         host speed  : {before:.2f} s before, {host_speed():.2f} s after "
          f"({HOST_SPEED_LOOPS // 1_000_000} M-iteration Python loop)", flush=True)


def pct(values: list[float]) -> str:
    if len(values) < 2:
        return f"n={len(values)}"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49]:7.0f}  p99 {q[98]:7.0f}  max {max(values):7.0f} ms (n={len(values)})"


async def wait_group(bootstrap: str, group: str, members: int, timeout: float = 120.0) -> None:
    """Wait until the consumer group is stable with ``members`` members, as its
    coordinator reports it (DescribeGroups)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        t0 = time.monotonic()
        while True:
            (response,) = await admin.describe_consumer_groups([group])
            (described,) = response.to_object()["groups"]
            if described["state"] == "Stable" and len(described["members"]) == members:
                return
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"group {group} not stable with {members} members within {timeout:.0f} s: "
                                   f"{described['state']}, {len(described['members'])} members")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def wait_ready(producer: AIOKafkaProducer, topics: TopicNames, stored_total: StoredCount,
                     timeout: float = 180.0) -> float:
    """Send one vitals message of a probe patient and wait until its event is stored:
    the worker has then joined its group and processes. Seconds it took."""
    t0 = time.monotonic()
    probe = encode_vitals("ward-probe", time.time_ns() // 1_000_000, {"hr": 70.0})
    await producer.send_and_wait(topics.vitals, probe, key=b"ward-probe")
    while stored_total() < 1:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"the worker stored nothing within {timeout:.0f} s")
        await asyncio.sleep(0.2)
    return time.monotonic() - t0


class StoredCount:
    """Input messages whose results are durable: one waveform row per ECG chunk, one
    VitalsObserved per vitals message. One connection, and the events counted
    incrementally (the store gives positions in commit order), so that sampling it
    every second or two loads the database little: it used to open a connection each
    time (3 ms) and count both tables in full, and a full count of the 55,000
    waveform rows a 1,000-bed run holds at its end took 11-16 ms, with the events
    growing twice as fast. Thread-safe, so the publisher can sample it off its event
    loop."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._lock = threading.Lock()
        self._position = 0
        self._vitals = 0

    def __call__(self) -> int:
        with self._lock:
            vitals, last = self._conn.execute(
                "SELECT count(*) FILTER (WHERE event_type = 'VitalsObserved'), max(position) FROM events "
                "WHERE position > %s", (self._position,)).fetchone() or (0, None)
            (waves,) = self._conn.execute("SELECT count(*) FROM waveforms").fetchone() or (0,)
            self._vitals += int(vitals)
            self._position = self._position if last is None else int(last)
            return int(waves) + self._vitals

    def close(self) -> None:
        self._conn.close()


def worker_cpu(pid: int) -> npt.NDArray[np.float64]:
    """CPU seconds the worker has used so far: (all its threads, its main thread). The
    main thread runs the event loop and every agent, so it alone cannot pass one core."""
    return np.array([cpu_seconds(pid), cpu_seconds(pid, thread=pid)])


class MachineCpu:
    """CPU seconds per wall second, from a `start` to a `stop`, of the services (each a
    process and its descendants: the broker, the database) and of this publisher
    (with its lag sampler). The worker's is measured apart, as it may be restarted."""

    def __init__(self, services: dict[str, int]) -> None:
        self._services = services  # name -> pid
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {name: tree_cpu_seconds(pid) for name, pid in self._services.items()} | {
            "publisher": time.process_time()}

    def start(self) -> None:
        self._t0, self._cpu0 = time.monotonic(), self._now()

    def stop(self) -> str:
        elapsed = time.monotonic() - self._t0
        return ", ".join(f"{name} {(cpu - self._cpu0[name]) / elapsed:4.2f}" for name, cpu in self._now().items())


def worker_command(beat_model: str) -> list[str]:
    return [sys.executable, "-m", "vigil", "worker", "--beat-model", beat_model]


async def _fresh_ward(bootstrap: str, server_url: str, patients: int, work: Path,
                      tag: str) -> tuple[str, TopicNames, dict[str, str]]:
    """A new database and topic prefix for one run: its URL, topics and the worker's environment."""
    prefix = f"ward{patients}{tag}x{int(time.time())}"
    topics = TopicNames(prefix)
    base, _, _ = server_url.rpartition("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{prefix}"')
    url = f"{base}/{prefix}"
    store = await PostgresRecorder.connect(url)
    await store.migrate()
    await store.close()
    env = dict(os.environ) | {"VIGIL_KAFKA_URL": f"kafka://{bootstrap}", "VIGIL_DATABASE_URL": url,
                              "VIGIL_TOPIC_PREFIX": prefix, "VIGIL_WORKER_GROUP": f"{prefix}-worker",
                              "VIGIL_STATE_DIR": str(work / "state"),
                              # info: the worker's periodic report, whose collector pauses are printed below
                              "VIGIL_WORKER_LOGLEVEL": os.environ.get("VIGIL_WORKER_LOGLEVEL", "info")}
    # Create the topics with the worker's partition count before it subscribes.
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (topics.vitals, topics.ecg, topics.fhir,
                                                                  topics.dead_letter)])
    await admin.close()
    return url, topics, env


async def run_backlog(bootstrap: str, server_url: str, patients: int, backlog: int, work: Path,
                      beat_model: str) -> None:
    """Publish ``backlog`` seconds of the ward at once, then start the worker and time
    how fast it stores their results (see the module docstring)."""
    url, topics, env = await _fresh_ward(bootstrap, server_url, patients, work, "b")
    ward = SimulatedWard(patients, seed=11, topics=topics, onset_s=25, ramp_s=20)
    published = await publish_ward(bootstrap, ward, seconds=backlog, realtime=False,
                                   start_us=time.time_ns() // 1000 - backlog * 1_000_000)
    worker = ManagedProcess.start("worker", worker_command(beat_model), work / f"{topics.prefix}.log", env=env)
    stored_total = StoredCount(url)
    t_start = time.monotonic()
    first = None
    cpu_first = np.zeros(2)
    stored = 0
    try:
        while stored < published and time.monotonic() - t_start < 600:
            await asyncio.sleep(0.5)
            stored = stored_total()
            if first is None and stored:
                first, stored_first, cpu_first = time.monotonic(), stored, worker_cpu(worker.pid)
        done = time.monotonic()
        cpu = worker_cpu(worker.pid)
    finally:
        stored_total.close()
        log_tail = worker.log_tail()
        worker.stop()
    if first is None or stored < published:
        print(f"N={patients:5d}  backlog {backlog} s: {stored} of {published} messages stored within 600 s; "
              f"worker log:\n{log_tail}")
        return
    if stored - stored_first < published / 2:
        print(f"N={patients:5d}  backlog {backlog} s: {stored_first} of {published} messages were stored by the first "
              f"look ({first - t_start:.1f} s after the start); too little left to time: give a longer backlog")
        return
    rate = (stored - stored_first) / 2 / (done - first)
    total, main = (cpu - cpu_first) / (done - first)
    print(f"N={patients:5d}  backlog {backlog} s ({published} messages): first result after {first - t_start:.1f} s, "
          f"the rest in {done - first:.1f} s: {rate:,.0f} patient-seconds per second = {rate / patients:.2f} x real "
          f"time; worker CPU {total:4.2f} s/s (main thread {main:4.2f})", flush=True)


async def run_one(bootstrap: str, server_url: str, services: dict[str, int], patients: int, seconds: int,
                  warmup: int, work: Path, profile: Path | None = None, beat_model: str = "fp32",
                  crash_at: int | None = None, static: bool = False, render_ahead: bool = True,
                  workers: int = 1) -> None:
    """One real-time run; ``services`` are the pids of the broker and the database,
    whose CPU is printed beside the workers'. With ``workers`` > 1, that many worker
    processes share the input partitions as one group; the measure starts once the
    group is stable with all of them (not with --crash-at, which kills the first)."""
    url, topics, env = await _fresh_ward(bootstrap, server_url, patients, work, "")
    prefix = topics.prefix
    # One worker that runs throughout also reports its own alarm latency (`streams.metrics`).
    scrape = workers == 1 and crash_at is None
    buckets0 = buckets1 = None
    if scrape:
        env["VIGIL_WORKER_METRICS_PORT"] = "0"
    if static:
        env["VIGIL_WORKER_INSTANCE"] = f"{prefix}-worker-0"  # the restarted worker takes the same id
    ward = SimulatedWard(patients, seed=11, topics=topics, onset_s=warmup + 5, ramp_s=20)
    if render_ahead:
        # The devices' waveforms and vitals scripts are synthesised before the run;
        # the publisher then stamps, encodes and sends them in real time.
        c0, w0 = time.process_time(), time.monotonic()
        ward.render(warmup + seconds)
        print(f"N={patients:5d}  devices rendered ahead: {warmup + seconds} s in {time.monotonic() - w0:.1f} s "
              f"({time.process_time() - c0:.1f} s CPU)", flush=True)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=1_048_576)
    await producer.start()
    command = worker_command(beat_model)
    began_ready = time.monotonic()
    if profile is not None:
        command[1:1] = ["-m", "cProfile", "-o", str(profile / f"worker-{patients}.prof")]
    # Each further worker keeps its own state folder, as separate hosts would.
    procs = [ManagedProcess.start("worker", command, work / f"{prefix}.log", env=env)] + [
        ManagedProcess.start(f"worker{i}", command, work / f"{prefix}-w{i}.log",
                             env=env | {"VIGIL_STATE_DIR": str(work / f"state-w{i}")}) for i in range(1, workers)]
    # The ward starts once the worker works: its start-up (process, group join) is not
    # a backlog for the measured part to drain (--crash-at measures that case).
    stored_total = StoredCount(url)
    ready_s = await wait_ready(producer, topics, stored_total)
    if workers > 1:
        await wait_group(bootstrap, env["VIGIL_WORKER_GROUP"], workers)
        ready_s = time.monotonic() - began_ready
    start_us = time.time_ns() // 1000
    began = time.monotonic()
    published = 1  # the probe
    lags_at: dict[int, float] = {}  # second -> lag in seconds of input
    machine_cpu = MachineCpu(services)
    busy0 = None
    cpu0 = [np.zeros(2) for _ in procs]  # each worker's worker_cpu when the measure starts
    cpu_killed = np.zeros(2)  # what the worker killed by --crash-at used of the measure
    crash_t = None if crash_at is None else warmup + crash_at
    after_crash: list[tuple[int, float]] = []  # (seconds since the crash, lag in seconds of input)
    samplers: set[asyncio.Task[None]] = set()

    def sample_lag(published_by_now: int, since_crash: int | None, sampled_t: int | None) -> None:
        # Counted in a thread, so that the publisher keeps its send times meanwhile.
        async def count() -> None:
            lag = (published_by_now - await asyncio.to_thread(stored_total)) / (2 * patients)
            if since_crash is not None:
                after_crash.append((since_crash, lag))
            if sampled_t is not None:
                lags_at[sampled_t] = lag

        task = asyncio.create_task(count())
        samplers.add(task)
        task.add_done_callback(samplers.discard)

    t_measure = 0.0
    try:
        for t in range(warmup + seconds):
            # Each bed sends at its own phase within the second (device time = send time).
            published += await send_second(producer, ward.timed_messages(t, start_us), start_us=start_us,
                                          began=began)
            await producer.flush()
            if t == warmup:
                cpu0, busy0, t_measure = [worker_cpu(w.pid) for w in procs], machine_busy(), time.monotonic()
                machine_cpu.start()
                if scrape:
                    buckets0 = await asyncio.to_thread(worker_histograms, procs[0].log_path)
            if t == crash_t:
                # kill -9 mid-run, and start a new worker at once (as a supervisor would).
                cpu_killed = worker_cpu(procs[0].pid) - cpu0[0]
                procs[0].kill()
                procs[0] = ManagedProcess.start("worker", command, work / f"{prefix}-restarted.log", env=env)
                cpu0[0] = np.zeros(2)
            since_crash = t - crash_t if crash_t is not None and t > crash_t else None  # sampled every second
            sampled = t > warmup and t % 2 == 0
            if sampled or since_crash is not None:
                sample_lag(published, since_crash, t if sampled else None)
            await asyncio.sleep(max(0.0, began + t + 1 - time.monotonic()))
        elapsed = time.monotonic() - t_measure
        if scrape:
            buckets1 = await asyncio.to_thread(worker_histograms, procs[0].log_path)
        used = [worker_cpu(w.pid) - c for w, c in zip(procs, cpu0, strict=True)]  # (all threads, main thread)
        used[0] = used[0] + cpu_killed
        busy1 = machine_busy()
        parts = machine_cpu.stop()
        machine = (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]) if busy0 else float("nan")
        drain0 = time.monotonic()
        while stored_total() < published:
            if time.monotonic() - drain0 > 120:
                break
            await asyncio.sleep(1.0)
        drain = time.monotonic() - drain0
    finally:
        await asyncio.gather(*samplers, return_exceptions=True)
        stored_total.close()
        await producer.stop()
        log_tail = procs[0].log_tail()
        for w in procs:
            w.stop()
        gc_line = summed_reports("".join(w.log_path.read_text(errors="replace") for w in procs)) or \
            "no report in the worker log (it reports every 30 s, at log level info)"
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT event_type, extract(epoch FROM recorded_at - occurred_at) * 1000 FROM events "
            "WHERE occurred_at >= to_timestamp(%s)", (start_us / 1e6 + warmup,)).fetchall()
    alarm = [float(ms) for kind, ms in rows if kind in ALARM_EVENTS]
    every = [float(ms) for _, ms in rows]
    lags = [lags_at[t] for t in sorted(lags_at)]
    after_crash.sort()
    tail = lags[len(lags) * 2 // 3:] or [0.0]
    keeps = max(tail) <= 3.0 and tail[-1] <= max(tail[0], 1.0) + 0.5
    total = sum(float(u[0]) for u in used)
    who = f"{workers} workers" if workers > 1 else "worker"
    print(f"N={patients:5d}  {who} ready after {ready_s:.1f} s; keeps up: {'yes' if keeps else 'NO '}  "
          f"lag median {statistics.median(lags or [0]):5.1f} s "
          f"max {max(lags or [0]):5.1f} s  drain {drain:5.1f} s  {who} CPU {total / elapsed:4.2f} s/s "
          f"({1000 * total / elapsed / patients:5.2f} ms per patient-second)  machine busy {100 * machine:3.0f} %")
    print("         CPU s/s     : " + ", ".join(f"worker{i or ''} {u[0] / elapsed:4.2f} (main thread {u[1] / elapsed:4.2f})"
                                               for i, u in enumerate(used)) + f", {parts}")
    print(f"         alarm events: {pct(alarm)}")
    if scrape:
        report_alarm_metric(buckets0, buckets1, alarm)
        report_loop_delay(buckets0, buckets1)
    print(f"         all events  : {pct(every)}", flush=True)
    print(f"         gc pauses   : {gc_line}")
    by_type: dict[str, list[float]] = {}
    for kind, ms in rows:
        by_type.setdefault(kind, []).append(float(ms))
    for kind, values in sorted(by_type.items(), key=lambda kv: -len(kv[1]))[:6]:
        print(f"           {kind:<18}: {pct(values)}")
    if crash_t is not None:
        report_crash(url, start_us, crash_t, after_crash)
    if not every:
        print(f"         no events stored; worker log:\n{log_tail}")


ALARM_HISTOGRAM = "vigil_worker_alarm_latency_seconds_bucket"
LOOP_HISTOGRAM = "vigil_worker_event_loop_delay_seconds_bucket"
Buckets = dict[str, dict[float, float]]


def worker_histograms(log: Path) -> Buckets | None:
    """The worker's alarm latency and event loop delay histograms from its /metrics
    (metric -> cumulative count by bound, +Inf included), or None if its log names no
    metrics port."""
    port = serving_port(log.read_text(errors="replace"))
    if port is None:
        return None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        figures = parse(answer.read().decode())
    return {name: {float(dict(labels)["le"]): count for labels, count in figures[name].items()}
            for name in (ALARM_HISTOGRAM, LOOP_HISTOGRAM)}


def measured(before: Buckets, after: Buckets, name: str) -> dict[float, float]:
    """Histogram ``name``'s cumulative counts by bound over the measured part: the
    later scrape's less the earlier's."""
    return {bound: count - before[name][bound] for bound, count in after[name].items()}


def report_alarm_metric(before: Buckets | None, after: Buckets | None, alarm_ms: list[float]) -> None:
    """The worker's own alarm latency over the measured part (two scrapes of its
    /metrics: alarms committed in between), beside the store's (alarms that occurred
    in it; recorded_at, when their batch began, rather than its commit)."""
    if before is None or after is None:
        print("         worker /metrics: not found in its log")
        return
    counts = measured(before, after, ALARM_HISTOGRAM)
    n = counts[float("inf")]
    bounds = (0.1, 0.5, 1.0)
    share = [100 * counts[b] / n if n else float("nan") for b in bounds]
    store = [100 * sum(ms <= 1000 * b for ms in alarm_ms) / len(alarm_ms) if alarm_ms else float("nan")
             for b in bounds]
    print(f"         alarms, worker /metrics: {n:.0f}, within 0.1 / 0.5 / 1 s: {share[0]:.1f} / {share[1]:.1f} / "
          f"{share[2]:.1f} % (store: {len(alarm_ms)}, {store[0]:.1f} / {store[1]:.1f} / {store[2]:.1f} %)")


def report_loop_delay(before: Buckets | None, after: Buckets | None) -> None:
    """The worker's event loop delay over the measured part (`streams.loop_delay`):
    the share of its probe's wake-ups within 10 / 50 / 250 ms and 1 s (a chunk), and
    the bucket of the longest."""
    if before is None or after is None:
        return
    counts = measured(before, after, LOOP_HISTOGRAM)
    n = counts[float("inf")]
    if not n:
        return
    shares = " / ".join(f"{100 * counts[b] / n:.1f}" for b in (0.01, 0.05, 0.25, 1.0))
    bounds = sorted(counts)
    top = next(b for b in bounds if counts[b] == n)
    below = max((b for b in bounds if b < top), default=0.0)
    longest = f"over {1000 * below:g}" if math.isinf(top) else f"{1000 * below:g}-{1000 * top:g}"
    print(f"         event loop  : {n:.0f} probe wake-ups, within 10 / 50 / 250 / 1,000 ms late: {shares} %; "
          f"longest delay {longest} ms")


def report_crash(url: str, start_us: int, crash_t: int, behind: list[tuple[int, float]]) -> None:
    """After a kill -9 at ward second ``crash_t`` (``behind``: seconds since it, lag):
    how long until the restarted worker caught up, and what alarm latency the
    patients saw meanwhile."""
    caught = next((s for s, _ in behind if all(lag <= 1.0 for s2, lag in behind if s2 >= s)), None)
    crash_us = start_us + crash_t * 1_000_000
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM recorded_at - occurred_at) * 1000 FROM events WHERE event_type IN "
            "('AlertRaised', 'AlertResolved', 'AlertEscalated') AND occurred_at >= to_timestamp(%s) "
            "AND occurred_at < to_timestamp(%s)",
            ((crash_us - 1_000_000) / 1e6, (crash_us + 1_000_000 * (caught or len(behind))) / 1e6)).fetchall()
    print(f"         kill -9 at second {crash_t}: lag max {max((lag for _, lag in behind), default=0.0):5.1f} s, "
          f"caught up (lag <= 1 s from then on) "
          f"{'after ' + str(caught) + ' s' if caught is not None else 'NOT within the run'}; alarms occurring "
          f"from 1 s before the kill until then: {pct([float(ms) for (ms,) in rows])}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", default="100,250,500,1000", help="comma-separated ward sizes")
    p.add_argument("--seconds", type=int, default=60, help="measured seconds per size")
    p.add_argument("--warmup", type=int, default=20, help="seconds before measuring (group join, JIT, caches)")
    p.add_argument("--profile", type=Path, help="run the worker under cProfile, writing worker-N.prof here")
    p.add_argument("--beat-model", choices=("fp32", "int8", "off"), default="fp32",
                   help="the worker's beat classifier (vigil worker --beat-model; default fp32, as the worker)")
    p.add_argument("--crash-at", type=int, metavar="S",
                   help="kill -9 the worker S measured seconds in, start a new one at once, and report how long "
                        "it took to catch up")
    p.add_argument("--backlog", type=int, metavar="S",
                   help="measure capacity: publish S seconds of the ward at once, then time the worker through them")
    p.add_argument("--render", choices=("ahead", "live"), default="ahead",
                   help="synthesise the devices' ECG and vitals before the run (ahead, default) or while sending "
                        "(live: the publisher then costs about 0.3 s more CPU per second at 1,000 beds)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes in the group (default 1); real-time runs without --crash-at or --profile")
    p.add_argument("--static", action="store_true",
                   help="give the worker a static group membership id (VIGIL_WORKER_INSTANCE), kept on restart")
    p.add_argument("--store", choices=("memory", "rocksdb"), default="memory",
                   help="the worker's table store (VIGIL_WORKER_STORE); with --crash-at, rocksdb lets the restarted "
                        "worker find its tables on disk")
    args = p.parse_args()
    os.environ["VIGIL_WORKER_STORE"] = args.store  # the worker's environment starts from this one
    if args.backlog is not None and (args.crash_at is not None or args.profile or args.static or args.backlog < 1):
        p.error("--backlog takes a positive number of seconds and goes with none of --crash-at, --profile, --static")
    if args.workers < 1 or (args.workers > 1 and (args.backlog is not None or args.crash_at is not None
                                                  or args.profile or args.static)):
        p.error("--workers takes a positive number, and more than 1 goes with none of --backlog, --crash-at, "
                "--profile, --static")
    if args.crash_at is not None and not 0 <= args.crash_at < args.seconds:
        p.error("--crash-at must fall within the measured seconds")
    sizes = [int(n) for n in args.patients.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pg = PostgresCluster.start(work / "pg", database="bench", durable=True)
        kafka = KafkaCluster.start(work / "kafka")
        broker = kafka.nodes[0].process
        assert broker is not None
        services = {"Kafka": broker.pid, "PostgreSQL": pg.process.pid}
        try:
            run = (f"capacity through a backlog of {args.backlog} s" if args.backlog else
                   f"{args.seconds} s measured after {args.warmup} s warm-up")
            workers = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
            print(f"ward benchmark: {run}; {os.cpu_count()} cores; Kafka 1 node, PostgreSQL, publisher and {workers} "
                  f"on this machine; beat classifier {args.beat_model}; table store {args.store}")
            for n in sizes:
                if args.backlog:
                    run_on_host(run_backlog(kafka.bootstrap, pg.url, n, args.backlog, work, args.beat_model))
                    continue
                run_on_host(run_one(kafka.bootstrap, pg.url, services, n, args.seconds, args.warmup, work,
                                    args.profile, args.beat_model, args.crash_at, args.static,
                                    args.render == "ahead", args.workers))
        finally:
            kafka.stop()
            pg.stop()


if __name__ == "__main__":
    main()
