"""Throughput and latency of the PostgreSQL event store (`event_store.postgres`).

Starts a private PostgreSQL cluster in a temp dir (fsync on, like production) unless
``--database-url`` points at one, migrates a single database (fresh when private;
stream ids are unique per run, so an existing one can be reused), and prints:

  batched append    events/s, 100 / 1 000 / 10 000 events per append_batch (50 streams)
  single append     events/s, 1 and 16 concurrent writers, one stream each
  subscription      commit -> delivery latency p50/p99 at ~200 events/s
  read_all          events/s of read_all_pages(0, 10 000) over the whole log (each page is read
                    while the one before is handled); then
                    again, reading every field of every event (a RecordedEvent decodes
                    its payload, metadata and times on first access)
  replay            events/s of PostgresProjector.rebuild() over the whole log, into a
                    schema of its own (bench_<run id>)
                    (an in-process fold of latest vitals if event_store.projections is absent)
  verify            events/s of recorder.verify() over the whole log
  bytes/event       pg_total_relation_size(events partitions + event_ids + streams) / count

The header states the event (a VitalsObserved of ~80 B payload and ~85 B metadata)
and the load average: the machine may be shared, and every figure here is CPU-bound.
So the batched, read_all and verify lines also give CPU time per event: this
process's, and (private cluster only) the server's, i.e. the postmaster and all its
children, background writers and autovacuum included.
Batched rates count only the time inside append_batch (events are built outside
it); single-event rates are events / wall time. Nothing is asserted; figures only.

    .venv/bin/python bench/event_store.py            # ~40 s-2 min
    .venv/bin/python bench/event_store.py --quick    # ~15-30 s
    .venv/bin/python bench/event_store.py --timescaledb   # the same on TimescaleDB's schema
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

# Run as a script, this file's folder is sys.path[0] and its name would shadow the
# `event_store` package: drop that entry (the project is installed in the venv).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from event_store.events import AppendRequest, NewEvent, RecordedEvent  # noqa: E402
from event_store.integrity import encode_json  # noqa: E402
from event_store.postgres import PostgresRecorder  # noqa: E402
from vigil.runtime import tune_gc  # noqa: E402
from vigil.services.postgres import PostgresCluster  # noqa: E402
from vigil.services.process import cpu_seconds, parent_pid  # noqa: E402
import contextlib

RUN = uuid.uuid4().hex[:6]  # keeps stream ids unique when --database-url is reused
_offsets: dict[int, int] = {}


def vitals(stream: str, patient: str, partition: int) -> NewEvent:
    offset = _offsets[partition] = _offsets.get(partition, -1) + 1
    return NewEvent(
        event_id=uuid.uuid4(), stream_id=stream, event_type="VitalsObserved", occurred_at=datetime.now(UTC),
        payload={"patient_id": patient, "hr": random.randint(55, 120), "spo2": random.randint(88, 100),
                 "rr": random.randint(10, 24), "sbp": random.randint(95, 150), "dbp": random.randint(55, 95),
                 "temp": round(random.uniform(36.0, 38.5), 1)},
        metadata={"source": {"topic": "vigil.vitals", "partition": partition, "offset": offset},
                  "device_id": f"mon-{patient}"},
    )


def batch(tag: str, size: int, streams: int = 50) -> list[AppendRequest]:
    per = max(1, size // streams)
    return [
        AppendRequest(f"patient-{RUN}.{tag}.p{s:04d}",
                      tuple(vitals(f"patient-{RUN}.{tag}.p{s:04d}", f"p{s:04d}", s % 6) for _ in range(per)))
        for s in range(min(streams, size))
    ]


def line(label: str, value: str) -> None:
    print(f"  {label:<44} {value}", flush=True)


class Cpu:
    """CPU seconds used by this process and, for a private cluster, by the server (its
    postmaster and every child, read from /proc: Linux only). On a shared machine CPU
    per event says more than events/s, which other processes' load slows down."""

    def __init__(self, postmaster: int | None) -> None:
        self._postmaster = postmaster
        self._seen: dict[int, float] = {}  # pid -> CPU seconds when last read (backends come and go)

    def server(self) -> float:
        if self._postmaster is None:
            return float("nan")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            pid = int(stat.parent.name)
            try:
                if pid == self._postmaster or parent_pid(pid) == self._postmaster:
                    self._seen[pid] = cpu_seconds(pid)
            except (OSError, IndexError):
                continue  # the process ended meanwhile
        return sum(self._seen.values())

    @staticmethod
    def per_event(client: float, server: float, events: int) -> str:
        text = f"CPU/event: client {client / events * 1e6:.1f} us"
        return text if server != server else f"{text} + server {server / events * 1e6:.1f} us"  # nan: unknown


async def batched(rec: PostgresRecorder, cpu: Cpu, size: int, seconds: float) -> None:
    events, spent, client, calls = 0, 0.0, 0.0, 0
    server = cpu.server()
    while spent < seconds or calls < 2:
        reqs = batch(f"b{size}", size)
        t, c = time.perf_counter(), time.process_time()
        await rec.append_batch(reqs)
        spent += time.perf_counter() - t
        client += time.process_time() - c
        events += sum(len(r.events) for r in reqs)
        calls += 1
    server = cpu.server() - server
    line(f"batched append, {size:>6,} events/call", f"{events / spent:>10,.0f} events/s  "
         f"({calls} calls, {spent / calls * 1000:.1f} ms/call, {len(reqs)} streams x {len(reqs[0].events)}; "
         f"{cpu.per_event(client, server, events)})")


async def single(rec: PostgresRecorder, writers: int, seconds: float) -> None:
    counts = [0] * writers
    latencies: list[float] = []

    async def writer(w: int) -> None:
        stream = f"patient-{RUN}.s{writers}.w{w:02d}"
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            e = vitals(stream, f"w{w:02d}", w % 6)
            t = time.perf_counter()
            await rec.append(stream, [e])
            latencies.append((time.perf_counter() - t) * 1000)
            counts[w] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    line(f"single-event append, {writers:>2} writer(s)", f"{sum(counts) / wall:>10,.0f} events/s  "
         f"(append p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms)")


async def subscription(rec: PostgresRecorder, rate: float, seconds: float) -> None:
    after = (await rec.head()).position
    returned: dict[int, float] = {}
    delivered: dict[int, float] = {}
    total = int(rate * seconds)
    done = asyncio.Event()

    async def subscriber() -> None:
        sub = rec.subscribe(after, poll_interval=1.0)
        try:
            async for e in sub:
                delivered[e.position] = time.perf_counter()
                if len(delivered) >= total:
                    done.set()
                    return
        finally:
            await sub.aclose()

    task = asyncio.create_task(subscriber())
    await asyncio.sleep(0.5)  # let it connect and LISTEN
    stream = f"patient-{RUN}.sub"
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        (pos,) = await rec.append(stream, [vitals(stream, "sub", 0)])
        returned[pos] = time.perf_counter()
    achieved = total / (time.perf_counter() - start)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lat = [(delivered[p] - returned[p]) * 1000 for p in returned if p in delivered]
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [float("nan")] * 99
    line("subscription commit->delivery latency", f"p50 {q[49]:.1f} ms  p99 {q[98]:.1f} ms  max {max(lat, default=0):.1f} ms")
    print(f"  {'':<44} (n={len(lat)}/{total} at {achieved:.0f} events/s; from append() return to delivery,"
          " so it includes the post-commit return)")


async def read_pages(rec: PostgresRecorder, fold: Callable[[Sequence[RecordedEvent]], None] | None = None) -> int:
    n = 0
    async with contextlib.aclosing(rec.read_all_pages(0, 10_000)) as pages:
        async for page in pages:
            if fold is not None:
                fold(page)
            n += len(page)
    return n


async def replay(rec: PostgresRecorder, url: str) -> None:
    """Rebuild event_store.projections' ward-status tables (in a private schema) from the
    whole log if that module is there; else fold latest vitals per stream in process."""
    try:
        projector_cls: Any = importlib.import_module("event_store.projections").PostgresProjector
    except (ImportError, AttributeError):
        projector_cls = None
    if projector_cls is not None:
        proj = await projector_cls.connect(url, rec, schema=f"bench_{RUN}")
        try:
            await proj.create_tables()
            t = time.perf_counter()
            reached = await proj.rebuild()
            dt = time.perf_counter() - t
            rows = len(await proj.statuses())
        finally:
            await proj.close()
        line("replay -> PostgresProjector.rebuild()", f"{reached / dt:>10,.0f} events/s  ({reached:,} events -> "
             f"{rows} patient_status rows in {dt:.1f} s, page {getattr(proj, '_page_size', '?')})")
        return
    latest: dict[str, dict[str, Any]] = {}

    def fold(page: Sequence[RecordedEvent]) -> None:
        for e in page:
            if e.event_type == "VitalsObserved":
                latest[e.stream_id] = {**latest.get(e.stream_id, {}), **e.payload, "at": e.occurred_at}

    t = time.perf_counter()
    n = await read_pages(rec, fold)
    dt = time.perf_counter() - t
    line("replay -> in-process fold (no projections)", f"{n / dt:>10,.0f} events/s  "
         f"({n:,} events -> latest vitals of {len(latest)} streams in {dt:.1f} s)")


async def timed_read(rec: PostgresRecorder, cpu: Cpu, label: str,
                     fold: Callable[[Sequence[RecordedEvent]], None] | None = None) -> None:
    t, c, server = time.perf_counter(), time.process_time(), cpu.server()
    total = await read_pages(rec, fold)
    dt, c, server = time.perf_counter() - t, time.process_time() - c, cpu.server() - server
    line(label, f"{total / dt:>10,.0f} events/s  ({total:,} events in {dt:.1f} s; {cpu.per_event(c, server, total)})")


async def measure(url: str, quick: bool, postmaster: int | None = None) -> None:
    secs = 1.0 if quick else 4.0
    cpu = Cpu(postmaster)
    rec = await PostgresRecorder.connect(url, max_size=20)
    await rec.migrate()
    info = await asyncpg.connect(url)
    try:
        version, fsync, sync = [await info.fetchval(f"SHOW {name}") for name in
                                ("server_version", "fsync", "synchronous_commit")]
        timescale = await info.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        schema = (f"TimescaleDB {timescale} ({await info.fetchval('SHOW timescaledb.license')} license) hypertables"
                  if timescale else "native partitions")
        print(f"cores={os.cpu_count()}  PostgreSQL {version}  fsync={fsync} synchronous_commit={sync}"
              f"  mode={'quick' if quick else 'default'}  load average {os.getloadavg()[0]:.1f} at start")
        print(f"schema: {schema}")
        print(f"gc young-generation threshold {gc.get_threshold()[0]:,} (vigil.runtime.tune_gc, as in every vigil "
              "process; --python-gc keeps CPython's 700)")
        sample = [vitals("patient-x", "p0001", 0) for _ in range(1000)]
        payload, metadata = (statistics.fmean(len(encode_json(getattr(e, f)).encode()) for e in sample)
                             for f in ("payload", "metadata"))
        print(f"event: VitalsObserved, {payload:.0f} B payload + {metadata:.0f} B metadata (JSON text); "
              "batches spread over 50 streams")
        for size in (100, 1_000, 10_000):
            await batched(rec, cpu, size, secs)
        for writers in (1, 16):
            await single(rec, writers, secs)
        await subscription(rec, 200.0, 2.0 if quick else 5.0)
        await timed_read(rec, cpu, "read_all_pages, 10 000/page")
        vigil_gc = gc.get_threshold()
        gc.set_threshold(700, *vigil_gc[1:])
        try:
            await timed_read(rec, cpu, "  the same, CPython's default gc (700)")
        finally:
            gc.set_threshold(*vigil_gc)

        def touch(page: Sequence[RecordedEvent]) -> None:
            for e in page:
                e.payload, e.metadata, e.occurred_at, e.recorded_at  # noqa: B018 - decoded on first access

        await timed_read(rec, cpu, "read_all_pages, every field decoded", touch)
        await replay(rec, url)
        t, c, server = time.perf_counter(), time.process_time(), cpu.server()
        report = await rec.verify()
        dt, c, server = time.perf_counter() - t, time.process_time() - c, cpu.server() - server
        line("verify (hash chain)", f"{report.events / dt:>10,.0f} events/s  "
             f"(ok={report.ok}, {report.events:,} events in {dt:.1f} s; {cpu.per_event(c, server, report.events)})")
        size = await info.fetchval(
            ("SELECT hypertable_size('events')" if timescale else
             "SELECT (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('events'))")
            + " + pg_total_relation_size('event_ids') + pg_total_relation_size('streams')")
        count = await info.fetchval("SELECT count(*) FROM events")
        line("bytes per event on disk", f"{size / count:>10,.0f} B  ({size / 2**20:.1f} MiB / {count:,} events, "
             "heap+TOAST+indexes of events partitions, event_ids, streams)")
        print(f"load average {os.getloadavg()[0]:.1f} at end (other processes share the {os.cpu_count()} cores)")
    finally:
        await info.close()
        await rec.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", help="use this database instead of a private cluster")
    p.add_argument("--quick", action="store_true", help="~15-30 s run: ~1 s per append figure")
    p.add_argument("--python-gc", action="store_true", help="keep CPython's default gc thresholds")
    p.add_argument("--timescaledb", action="store_true",
                   help="the private cluster preloads TimescaleDB, so the log is a hypertable (scripts/install-timescaledb.sh)")
    args = p.parse_args()
    if not args.python_gc:
        tune_gc()
    if args.database_url:
        asyncio.run(measure(args.database_url, args.quick))
        return
    with tempfile.TemporaryDirectory() as tmp:
        pg = PostgresCluster.start(Path(tmp) / "pg", database="bench", durable=True, timescaledb=args.timescaledb)
        try:
            postmaster = int((pg.datadir / "data" / "postmaster.pid").read_text().split()[0])
            asyncio.run(measure(pg.url, args.quick, postmaster))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
