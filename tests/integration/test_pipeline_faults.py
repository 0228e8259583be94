"""The pipeline under faults, on real Apache Kafka and PostgreSQL. Each test streams a
simulated ward into Kafka while one worker runs undisturbed and another is hurt:

- the worker itself SIGKILLed five times;
- one broker of a 3-broker cluster (replication factor 3, min.insync.replicas 2) SIGKILLed;
- its PostgreSQL stopped for 20 s and started again on the same data folder.

The disturbed store must end exactly as the undisturbed one: same event ids, same
contents, same waveforms, nothing missing, nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rocksdict
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from detectors.beat_classifier import shared_classifier
from streams.states import CHECKPOINT_INTERVAL_S
from streams.topics import TopicNames
from streams.metrics import parse
from tests.integration.pipeline_helpers import (
    WardFeed,
    caught_up,
    committed_offsets,
    create_topics,
    dead_letters,
    faust_topics,
    http_get,
    metrics_port,
    migrate,
    progress,
    same_stores,
    scratch_database,
    start_worker,
    stop_all,
    wait_for,
)
from vigil.services.kafka import KafkaCluster, java_available
from vigil.services.postgres import PostgresCluster
from vigil.services.process import ManagedProcess

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

PATIENTS = 12
PARTITIONS = 4  # the worker's default (`WorkerConfig.partitions`)


def rows_reach(target: int) -> Callable[[int, int], bool]:
    """Progress check: VitalsObserved events plus waveform rows reach ``target``."""
    return lambda vitals, waves: vitals + waves >= target


async def finish(feed: WardFeed, bootstrap: str, runs: list[tuple[str, ManagedProcess]], timeout: float = 180) -> int:
    """Publish a last few seconds, then wait until every run's group (``(group, worker)``)
    has committed all of it, so its store is final; return the VitalsObserved expected."""
    feed.finish(5)
    await feed.done()
    for group, worker in runs:
        await caught_up(bootstrap, group, inputs(feed.topics), timeout, worker)
    return feed.total


def inputs(topics: TopicNames) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in (topics.vitals, topics.ecg, topics.fhir) for p in range(PARTITIONS)]


def check_same(undisturbed_url: str, disturbed_url: str, total: int) -> tuple[int, int]:
    undisturbed = same_stores(undisturbed_url, disturbed_url, total)
    # The worker classified the beats, and every summary names the model file that did.
    model = shared_classifier().provenance
    summaries = [json.loads(e[3]) for e in undisturbed.events.values() if e[1] == "EcgAnalyzed"]
    assert all(p["beat_model"] == {"model_version": model.version, "model_sha256": model.sha256} for p in summaries)
    classified, found = (sum(sum(p["beat_classes"].values()) for p in summaries), sum(p["beats"] for p in summaries))
    assert found > 0 and abs(classified - found) <= len(summaries)  # a beat is classified once the next is known
    return len(undisturbed.events), len(undisturbed.waveforms)


@dataclass
class KilledRun:
    """What `killed_run` saw: the store's progress (VitalsObserved, waveform rows) at
    each kill, what ``observe`` returned then, the VitalsObserved expected in all,
    and the undisturbed store's event and waveform counts."""

    at_kill: list[tuple[int, int]]
    observed: list[Any]
    total: int
    events: int
    waves: int


async def killed_run(kafka: str, server: str, prefix: str, work: Path, *, kills: int, seed: int,
                     linger: tuple[float, float], store: str,
                     observe: Callable[[], Awaitable[Any]]) -> KilledRun:
    """Stream a ward to an undisturbed worker (group ``<prefix>-a``, memory store) and to
    one on ``store`` (group ``<prefix>-b``, state in ``work/state/<group>``) that is
    SIGKILLed ``kills`` times and restarted at once; check that both stores end the same,
    with no dead letter.

    Each kill comes once the incarnation has stored a random 1 to 5 ward seconds' worth
    more, and then lived a random ``linger`` (in checkpoint intervals) longer; the ward
    is still streaming, so every kill falls mid-run. ``observe`` runs right after each
    kill."""
    topics = TopicNames(prefix)
    await create_topics(kafka, {topics.vitals: PARTITIONS, topics.ecg: PARTITIONS, topics.fhir: PARTITIONS,
                                topics.dead_letter: 1})
    feed = WardFeed(kafka, topics, PATIENTS, pace=3.0)
    workers: list[ManagedProcess] = []
    group_a, group_b = f"{prefix}-a", f"{prefix}-b"

    def worker(db: str, group: str, name: str, store: str) -> ManagedProcess:
        workers.append(start_worker(kafka, db, prefix, work / f"{name}.log", group=group,
                                    state_dir=work / "state" / group, store=store))
        return workers[-1]

    with scratch_database(server) as undisturbed_db, scratch_database(server) as killed_db:
        await migrate(undisturbed_db, killed_db)
        rng = random.Random(seed)
        at_kill: list[tuple[int, int]] = []
        observed: list[Any] = []
        try:
            feed.start()
            single = worker(undisturbed_db, group_a, "a", "memory")
            victim = worker(killed_db, group_b, "b0", store)
            for k in range(1, kills + 1):
                last = sum(at_kill[-1]) if at_kill else 0
                await wait_for(killed_db, rows_reach(last + rng.randrange(2 * PATIENTS, 10 * PATIENTS)), 120, victim)
                await asyncio.sleep(rng.uniform(*linger) * CHECKPOINT_INTERVAL_S)
                victim.kill()
                observed.append(await observe())
                at_kill.append(progress(killed_db))
                victim = worker(killed_db, group_b, f"b{k}", store)
            total = await finish(feed, kafka, [(group_a, single), (group_b, victim)])
        finally:
            await feed.stop()
            await stop_all(workers)
        events, waves = check_same(undisturbed_db, killed_db, total)
    assert await dead_letters(kafka, topics) == 0
    print(f"{feed.sent} messages, {events} events, {waves} waveforms; {store} worker killed at {at_kill}, "
          f"observed then {observed}", file=sys.stderr)
    return KilledRun(at_kill, observed, total, events, waves)


async def test_sigkill_five_times_leaves_exactly_the_undisturbed_events(
    apache_kafka: str, postgres_server: str, topic_prefix: str, tmp_path: Path
) -> None:
    async def committed() -> int:  # input offsets the killed worker's group had committed
        offsets = await committed_offsets(apache_kafka, f"{topic_prefix}-b")
        return sum(max(o, 0) for o in offsets.values())

    # Lingering 0 to 1.6 checkpoint intervals, some kills fall before the incarnation's
    # first full checkpoint round and some after (with the seed: 0.12, 1.57, 1.19, 0.14
    # and 0.82 intervals).
    run = await killed_run(apache_kafka, postgres_server, topic_prefix, tmp_path, kills=5, seed=2015,
                           linger=(0.0, 1.6), store="memory", observe=committed)
    at_kill, total = run.at_kill, run.total
    # Every kill fell mid-run, after progress of its own.
    assert len(at_kill) == 5 and all(v + w < 2 * total for v, w in at_kill), at_kill
    assert [sum(p) for p in at_kill] == sorted({sum(p) for p in at_kill}), at_kill
    # Some incarnation got as far as acknowledging a checkpoint round: a later one
    # resumed from checkpoints, not only from the start of the partitions.
    assert any(run.observed), run.observed


async def test_sigkill_with_tables_on_rocksdb_leaves_exactly_the_undisturbed_events(
    apache_kafka: str, postgres_server: str, topic_prefix: str, tmp_path: Path
) -> None:
    """As above with the production table store: each restarted worker finds its tables
    on local disk (RocksDB, in its state folder, kept across the kills) and reads only
    the changelog written since."""
    state_b = tmp_path / "state" / f"{topic_prefix}-b"

    async def tables() -> int:  # RocksDB databases in the killed worker's state folder
        return len(list(state_b.glob("worker/*/v*/tables/*.db")))

    run = await killed_run(apache_kafka, postgres_server, topic_prefix, tmp_path, kills=3, seed=2016,
                           linger=(0.5, 1.6), store="rocksdb", observe=tables)
    at_kill, total = run.at_kill, run.total
    assert len(at_kill) == 3 and all(v + w < 2 * total for v, w in at_kill), at_kill
    # The tables were on disk at every kill: one RocksDB database per table and
    # partition (2 tables x 4 partitions), not in memory.
    assert all(n >= 2 * PARTITIONS for n in run.observed), (run.observed, sorted(state_b.rglob("*.db")))
    # Each database knows how far into the changelog it is (Faust's persisted
    # offset): a restarted worker reads the changelog from there, not from its start.
    for path in state_b.glob("worker/*/v*/tables/*.db"):
        db = rocksdict.Rdict(str(path), access_type=rocksdict.AccessType.read_only(),
                             options=rocksdict.Options(raw_mode=True))
        try:
            assert int(db.get(b"__faust\x00offset__") or -1) > 0, path
        finally:
            db.close()


async def test_losing_one_of_three_brokers_loses_nothing(
    postgres_server: str, topic_prefix: str, tmp_path: Path
) -> None:
    if not java_available():
        pytest.fail("Java 17 and Maven (or KAFKA_HOME) are needed for the Apache Kafka cluster")
    topics = TopicNames(topic_prefix)
    groups = {"a": f"{topic_prefix}-a", "b": f"{topic_prefix}-b"}
    cluster = await asyncio.to_thread(KafkaCluster.start, tmp_path / "kafka", 3)
    workers: list[ManagedProcess] = []
    feed = WardFeed(cluster.bootstrap, topics, PATIENTS, pace=3.0)

    def worker(db: str, run: str) -> ManagedProcess:
        workers.append(start_worker(cluster.bootstrap, db, topic_prefix, tmp_path / f"{run}.log", group=groups[run],
                                    state_dir=tmp_path / "state" / run))
        return workers[-1]

    try:
        # The worker cannot be told a replication factor (it declares its topics with 1),
        # so every topic it would create is created first, with 3 replicas; it keeps them.
        changelogs = [t for g in groups.values() for t in faust_topics(g) if t.endswith("-changelog")]
        leaders = [t for g in groups.values() for t in faust_topics(g) if t.endswith("__leader")]
        await create_topics(cluster.bootstrap, {
            topics.vitals: PARTITIONS, topics.ecg: PARTITIONS, topics.fhir: PARTITIONS, topics.dead_letter: 1,
            **dict.fromkeys(changelogs, PARTITIONS), **dict.fromkeys(leaders, 1)}, replication=3, compacted=changelogs)
        with scratch_database(postgres_server) as undisturbed_db, scratch_database(postgres_server) as hurt_db:
            await migrate(undisturbed_db, hurt_db)
            feed.start()
            hurt = worker(hurt_db, "b")
            await wait_for(hurt_db, lambda v, w: v >= 5 * PATIENTS, 120, hurt)
            # Take away the broker that coordinates the worker's group (and leads some
            # of its partitions), while the ward streams on.
            admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
            await admin.start()
            try:
                victim = await admin.find_coordinator(groups["b"])
            finally:
                await admin.close()
            cluster.kill_node(victim)
            at_kill = progress(hurt_db)
            await wait_for(hurt_db, lambda v, w: v > at_kill[0] + 10 * PATIENTS and w > at_kill[1], 180, hurt)
            total = await finish(feed, cluster.bootstrap, [(groups["b"], hurt)])
            assert hurt.running(), hurt.log_tail()

            # The undisturbed run reads the same topics once the cluster is whole again.
            await asyncio.to_thread(cluster.start_node, victim)
            single = worker(undisturbed_db, "a")
            await caught_up(cluster.bootstrap, groups["a"], inputs(topics), 180, single)
            await stop_all(workers)
            events, waves = check_same(undisturbed_db, hurt_db, total)

        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics()
        finally:
            await admin.close()
        ours = {t["topic"]: [len(p["replicas"]) for p in t["partitions"]] for t in described
                if t["topic"].startswith(topic_prefix)}
        assert set(ours) >= {topics.vitals, topics.ecg, topics.dead_letter, *changelogs}, sorted(ours)
        assert all(set(replicas) == {3} for replicas in ours.values()), ours
        assert await dead_letters(cluster.bootstrap, topics) == 0
    finally:
        await feed.stop()
        await stop_all(workers)
        await asyncio.to_thread(cluster.stop)
    print(f"{feed.sent} messages, {events} events, {waves} waveforms; broker {victim} killed at {at_kill}",
          file=sys.stderr)


async def test_database_down_for_20_s_holds_back_and_catches_up(
    apache_kafka: str, postgres_server: str, topic_prefix: str, tmp_path: Path, pg_home: Path
) -> None:
    topics = TopicNames(topic_prefix)
    await create_topics(apache_kafka, {topics.vitals: PARTITIONS, topics.ecg: PARTITIONS, topics.fhir: PARTITIONS,
                                       topics.dead_letter: 1})
    # A private server: stopping the session's would break the other tests.
    pg = await asyncio.to_thread(PostgresCluster.start, pg_home / "pg", database="vigil", durable=False)
    feed = WardFeed(apache_kafka, topics, PATIENTS, pace=3.0)
    workers: list[ManagedProcess] = []

    def worker(db: str, run: str, metrics_port: int | None = None) -> ManagedProcess:
        workers.append(start_worker(apache_kafka, db, topic_prefix, tmp_path / f"{run}.log",
                                    group=f"{topic_prefix}-{run}", state_dir=tmp_path / "state" / run,
                                    metrics_port=metrics_port))
        return workers[-1]

    try:
        with scratch_database(postgres_server) as undisturbed_db:
            await migrate(undisturbed_db, pg.url)
            feed.start()
            single = worker(undisturbed_db, "a")
            hurt = worker(pg.url, "b", metrics_port=0)
            await wait_for(pg.url, lambda v, w: v >= 5 * PATIENTS, 120, hurt)
            port = await metrics_port(hurt)
            readiness = [await http_get(port, "/readyz")]
            before = progress(pg.url)
            await asyncio.to_thread(pg.stop)
            down_from = feed.seconds
            await asyncio.sleep(15)
            readiness.append(await http_get(port, "/readyz"))
            retries_while_down = parse((await http_get(port, "/metrics"))[1])["vigil_worker_sink_retries_total"]
            await asyncio.sleep(5)
            down_until = feed.seconds
            pg = await asyncio.to_thread(PostgresCluster.start, pg_home / "pg", port=pg.port, database="vigil",
                                         durable=False)
            after = await wait_for(pg.url, lambda v, w: v > before[0] + 10 * PATIENTS and w > before[1], 120, hurt)
            readiness.append(await http_get(port, "/readyz"))
            total = await finish(feed, apache_kafka, [(f"{topic_prefix}-a", single), (f"{topic_prefix}-b", hurt)])
            assert hurt.running(), hurt.log_tail()
            await stop_all(workers)
            events, waves = check_same(undisturbed_db, pg.url, total)
    finally:
        await feed.stop()
        await stop_all(workers)
        await asyncio.to_thread(pg.stop)
    # The ward kept streaming while the database was down, and the worker held it back.
    assert down_until > down_from
    log = hurt.log_path.read_text(errors="replace")
    held = [line for line in log.splitlines() if "event store unavailable, holding" in line]
    assert held, hurt.log_tail()
    assert await dead_letters(apache_kafka, topics) == 0
    # Its /readyz said so: ready, then not while the store refused writes, then ready again.
    assert readiness[0] == (200, "ready\n") and readiness[2] == (200, "ready\n"), readiness
    assert readiness[1][0] == 503 and "the event store has refused writes for" in readiness[1][1], readiness
    assert retries_while_down[frozenset()] >= 1
    print(f"{feed.sent} messages, {events} events, {waves} waveforms; store at {before} when stopped, "
          f"{after} soon after restart; ward seconds {down_from}-{down_until} published while down; "
          f"{len(held)} back-pressure warnings, first: {held[0][-160:]}", file=sys.stderr)
