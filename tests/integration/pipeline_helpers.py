"""Shared machinery for the pipeline fault, scaling and fuzz tests (real Kafka and
PostgreSQL, workers as child processes).

The pattern these tests share: publish one deterministic input, run it once through
an undisturbed worker into one database and once through workers that are
disturbed (killed, joined, left, their broker or database taken away) into another
database, then compare the two stores. Event ids derive from the source topic,
partition and offset, so two consumer groups reading the same topics must end with
the same events, byte for byte, if nothing was lost or duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.structs import TopicPartition

from event_store.postgres import PostgresRecorder
from streams.app import CHANGELOG_CONFIG
from streams.ecg_pipeline import SUMMARY_S, first_summary_s
from streams.metrics import serving_port
from streams.topics import TopicNames
from streams.ward import SimulatedWard
from tests.conftest import scratch_database
from vigil.services.process import ManagedProcess

__all__ = [
    "WARD_START_US", "StoreContents", "WardFeed", "assert_same_store", "caught_up", "committed_offsets", "contents",
    "create_topics", "faust_topics", "group_members", "http_get", "metrics_port", "migrate", "progress",
    "scratch_database", "start_worker", "stop_all", "wait_for", "wait_until",
]

WARD_START_US = 1_764_122_400_000_000
"""Fixed device time of second 0: the input is byte-identical in every run."""
HR_LIMIT = 130


def start_worker(bootstrap: str, database_url: str, prefix: str, log: Path, *, group: str,
                 state_dir: Path, partitions: int | None = None, store: str = "memory",
                 metrics_port: int | None = None) -> ManagedProcess:
    """``vigil worker`` as a child process, configured through ``VIGIL_*`` variables
    (and ``--partitions`` when given: it must match the input topics). Each worker
    gets its own state folder: workers of one group on one machine must not share
    Faust's data folder. ``store``: ``VIGIL_WORKER_STORE``. ``metrics_port``: serve
    /metrics there (0: any free port; `metrics_port` reads it from the log)."""
    env = dict(os.environ) | {
        "VIGIL_WORKER_STORE": store,
        "VIGIL_KAFKA_URL": f"kafka://{bootstrap}",
        "VIGIL_DATABASE_URL": database_url,
        "VIGIL_TOPIC_PREFIX": prefix,
        "VIGIL_KAFKA_EMBEDDED": "0",
        "VIGIL_WORKER_GROUP": group,
        "VIGIL_STATE_DIR": str(state_dir),
        "VIGIL_HR_HIGH_LIMIT": str(HR_LIMIT),
    } | ({} if metrics_port is None else {"VIGIL_WORKER_METRICS_PORT": str(metrics_port)})
    args = [] if partitions is None else ["--partitions", str(partitions)]
    return ManagedProcess.start("worker", [sys.executable, "-m", "vigil", "worker", *args], log, env=env)


async def metrics_port(worker: ManagedProcess, timeout: float = 60.0) -> int:
    """The port of ``worker``'s metrics server, from the line its log gives it on."""
    port: int = await wait_until("the worker's metrics server",
                                 lambda: serving_port(worker.log_path.read_text(errors="replace")), timeout, worker)
    return port


async def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of ``GET path`` on localhost."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        answer = (await asyncio.wait_for(reader.read(), 30)).decode()
    finally:
        writer.close()
    head, _, body = answer.partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


async def stop_all(workers: Sequence[ManagedProcess]) -> None:
    """SIGTERM every worker at once (each gets its own grace period), off the event loop."""
    await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))


async def migrate(*urls: str) -> None:
    for url in urls:
        store = await PostgresRecorder.connect(url)
        try:
            await store.migrate()
        finally:
            await store.close()


def progress(url: str) -> tuple[int, int]:
    """(VitalsObserved events, waveform rows) in the store."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        (vitals,) = conn.execute("SELECT count(*) FROM events WHERE event_type = 'VitalsObserved'").fetchone() or (0,)
        (waves,) = conn.execute("SELECT count(*) FROM waveforms").fetchone() or (0,)
    return int(vitals), int(waves)


async def wait_until(what: str, check: Callable[[], Any], timeout: float, *workers: ManagedProcess,
                     interval: float = 0.3) -> Any:
    """Poll the sync or async ``check`` until it returns something truthy and return
    that; on timeout fail with the workers' log tails."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {w.log_path.name} (running={w.running()}):\n{w.log_tail(40)}" for w in workers)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})\n{tails}")
        await asyncio.sleep(interval)


async def wait_for(url: str, done: Callable[[int, int], bool], timeout: float, *workers: ManagedProcess) -> tuple[int, int]:
    """Wait until ``done(vitals, waveforms)`` holds for the store at ``url``."""
    seen: list[tuple[int, int]] = []

    def check() -> tuple[int, int] | None:
        seen[:] = [progress(url)]
        return seen[0] if done(*seen[0]) else None

    try:
        result: tuple[int, int] = await wait_until(f"store progress at {url.rpartition('/')[2]}", check, timeout,
                                                   *workers)
    except AssertionError as e:
        raise AssertionError(f"store stuck at (VitalsObserved, waveforms) = {seen}: {e}") from None
    return result


async def caught_up(bootstrap: str, group: str, partitions: Sequence[TopicPartition], timeout: float,
                    *workers: ManagedProcess) -> None:
    """Wait until ``group`` has committed each of ``partitions`` up to its end. The
    worker commits a message only once its events are durable, so the group's store
    is then complete, whether or not it holds what it should."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(partitions))
    finally:
        await consumer.stop()
    lag: dict[TopicPartition, int] = {}

    async def done() -> bool:
        committed = await committed_offsets(bootstrap, group)
        lag.clear()
        lag.update({tp: end - max(committed.get(tp, 0), 0) for tp, end in ends.items()
                    if committed.get(tp, 0) < end})
        return not lag

    try:
        await wait_until(f"{group} to commit everything", done, timeout, *workers)
    except AssertionError as e:
        raise AssertionError(f"{group} still lags {sorted(lag.items())}: {e}") from None


@dataclass(frozen=True)
class StoreContents:
    events: dict[str, tuple[Any, ...]]
    """event_id -> (stream_id, event_type, occurred_at, payload, metadata), store-independent fields."""
    waveforms: list[tuple[Any, ...]]

    def count(self, event_type: str) -> int:
        return sum(1 for e in self.events.values() if e[1] == event_type)


def contents(url: str) -> StoreContents:
    with psycopg.connect(url) as conn:
        events = {str(r[0]): tuple(r[1:]) for r in conn.execute(
            "SELECT event_id, stream_id, event_type, occurred_at, payload::text, metadata::text FROM events")}
        waves = conn.execute("SELECT patient_id, lead, starts_at, samples, scale_mv, source::text FROM waveforms "
                             "ORDER BY patient_id, lead, starts_at").fetchall()
    return StoreContents(events, waves)


def assert_same_store(undisturbed: StoreContents, disturbed: StoreContents) -> None:
    """Same event ids with the same contents, same waveform rows: nothing missing, nothing extra."""
    missing = undisturbed.events.keys() - disturbed.events.keys()
    extra = disturbed.events.keys() - undisturbed.events.keys()
    assert not missing and not extra, (
        f"missing {len(missing)} (e.g. {[undisturbed.events[k] for k in sorted(missing)[:2]]}), "
        f"extra {len(extra)} (e.g. {[disturbed.events[k] for k in sorted(extra)[:2]]})")
    different = [k for k in undisturbed.events if undisturbed.events[k] != disturbed.events[k]]
    assert not different, (different[:3], [undisturbed.events[k] for k in different[:1]],
                           [disturbed.events[k] for k in different[:1]])
    def keyed(rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        return {(r[0], r[1], r[2]): r for r in rows}  # (patient, lead, start) is the table's key

    before, after = keyed(undisturbed.waveforms), keyed(disturbed.waveforms)
    lost, added = before.keys() - after.keys(), after.keys() - before.keys()
    assert not lost and not added, (f"waveforms missing {len(lost)} (e.g. {[before[k][-1] for k in sorted(lost)[:3]]}), "
                                    f"extra {len(added)}")
    assert disturbed.waveforms == undisturbed.waveforms


def summaries_due(waveforms: list[tuple[Any, ...]]) -> int:
    """ECG summaries a ward's 1-s chunks (full-disclosure rows) call for: per patient
    and lead, the first after `first_summary_s` seconds, then one per `SUMMARY_S`."""
    seconds = Counter((r[0], r[1]) for r in waveforms)
    due = 0
    for (patient, lead), n in seconds.items():
        first = first_summary_s(patient, lead)
        due += 0 if n < first else 1 + (n - first) // SUMMARY_S
    return due


def same_stores(undisturbed_url: str, other_url: str, total: int) -> StoreContents:
    """The other run stored exactly the undisturbed run's events and waveforms, and the
    undisturbed run holds every reading (``total``) and ECG summary; its contents."""
    undisturbed = contents(undisturbed_url)
    assert_same_store(undisturbed, contents(other_url))
    assert undisturbed.count("VitalsObserved") == total == len(undisturbed.waveforms)
    assert undisturbed.count("EcgAnalyzed") == summaries_due(undisturbed.waveforms) > 0
    assert undisturbed.count("AlertRaised") > 0  # so "the same events" covers alarms: none re-raised or missed
    return undisturbed


async def dead_letters(bootstrap: str, topics: TopicNames) -> int:
    """How many messages the dead-letter topic holds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topics.dead_letter, 0)])
    finally:
        await consumer.stop()
    return sum(ends.values())


def faust_topics(group: str) -> list[str]:
    """The topics a worker of consumer group ``group`` creates besides the input topics
    and the dead-letter topic: its two table changelogs and Faust's leader topic."""
    return [f"{group}-vitals-state-changelog", f"{group}-ecg-state-changelog", f"{group}-__assignor-__leader"]


async def create_topics(bootstrap: str, topics: Mapping[str, int], *, replication: int = 1,
                        compacted: Sequence[str] = ()) -> None:
    """Create ``name -> partitions`` topics (``compacted`` ones configured as the worker
    makes its changelogs, `streams.app.CHANGELOG_CONFIG`) and wait until every
    partition has a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([
            NewTopic(name, partitions, replication,
                     topic_configs=dict(CHANGELOG_CONFIG) if name in compacted else {})
            for name, partitions in topics.items()])
        errors = [(t, code, msg) for t, code, msg in response.topic_errors if code not in (0, 36)]  # 36: exists
        assert not errors, errors

        async def all_led() -> bool:
            described = await admin.describe_topics(list(topics))
            return all(not t["error_code"] and len(t["partitions"]) == topics[t["topic"]]
                       and all(p["leader"] >= 0 for p in t["partitions"]) for t in described)

        await wait_until(f"leaders for {sorted(topics)}", all_led, 60)
    finally:
        await admin.close()


async def group_members(bootstrap: str, group: str) -> tuple[str, dict[str, set[TopicPartition]]]:
    """The consumer group's state and each member's assigned partitions, as the group
    coordinator reports them (DescribeGroups)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (described,) = response.to_object()["groups"]
    members: dict[str, set[TopicPartition]] = {}
    for m in described["members"]:
        raw = m["member_assignment"]
        members[m["member_id"]] = set(ConsumerProtocolMemberAssignment.decode(raw).partitions()) if raw else set()
    return str(described["state"]), members


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


class WardFeed:
    """Publishes a `SimulatedWard` second by second at ``pace`` ward seconds per real
    second, until `finish` says how many more seconds to send. One idempotent
    producer, so each message lands exactly once, in order, at the same offset for
    every consumer group that later reads the topics."""

    def __init__(self, bootstrap: str, topics: TopicNames, patients: int, *, pace: float, seed: int = 7,
                 max_seconds: int = 900) -> None:
        self._bootstrap = bootstrap
        self.topics = topics
        # Patients deteriorate from the 5th ward second over 15 s (the scripts' own onsets
        # come minutes in, after most runs end): the first alarms come 12 ward seconds in
        # (seed 7, 12 beds), so even the shortest fault run (37 ward seconds) raises and
        # holds alarms across its fault, and the stores compared hold them.
        self._ward = SimulatedWard(patients, seed=seed, topics=topics, onset_s=5, ramp_s=15)
        self.patients = patients
        self._pace = pace
        self._limit = max_seconds
        self.seconds = 0
        """Ward seconds published so far (all of them once `done` returned)."""
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ward-feed")

    def finish(self, more_seconds: int) -> None:
        """Publish ``more_seconds`` more ward seconds, then stop."""
        self._limit = min(self._limit, self.seconds + more_seconds)

    async def done(self) -> int:
        """Wait for the last second to be acknowledged by the brokers; return messages sent."""
        assert self._task is not None
        await self._task
        return self.sent

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def total(self) -> int:
        """VitalsObserved events (and waveform rows) the published input yields."""
        return self.patients * self.seconds

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True,
                                    linger_ms=5, request_timeout_ms=60_000)
        await producer.start()
        began = time.monotonic()
        try:
            while self.seconds < self._limit:
                batch = [await producer.send(topic, value=value, key=key)
                         for topic, key, value in self._ward.second(self.seconds, WARD_START_US)]
                await asyncio.gather(*batch)
                self.sent += len(batch)
                self.seconds += 1
                await asyncio.sleep(max(0.0, began + self.seconds / self._pace - time.monotonic()))
        finally:
            await producer.stop()
