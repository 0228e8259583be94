"""The pipeline under faults, on real Apache Kafka and PostgreSQL: a worker killed
with SIGKILL again and again must leave the store exactly as an undisturbed run of
the same input does (same event ids, same content, nothing missing, nothing twice).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from event_store.postgres import PostgresRecorder
from streams.topics import TopicNames
from streams.ward import SimulatedWard
from tests.integration.test_vitals_slice import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

PATIENTS = 12
SECONDS = 60
START_US = 1_764_122_400_000_000  # fixed device time: the input is identical in every run


@pytest.fixture
def second_database(postgres_server: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    base, _, _ = postgres_server.rpartition("/")
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def publish_input(bootstrap: str, topics: TopicNames) -> int:
    ward = SimulatedWard(PATIENTS, seed=7, topics=topics)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent = 0
    try:
        for t in range(SECONDS):
            for topic, key, value in ward.second(t, START_US):
                await producer.send(topic, value=value, key=key)
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def progress(url: str) -> tuple[int, int]:
    """(VitalsObserved events, waveform rows) in the store."""
    with psycopg.connect(url) as conn:
        (vitals,) = conn.execute("SELECT count(*) FROM events WHERE event_type = 'VitalsObserved'").fetchone() or (0,)
        (waves,) = conn.execute("SELECT count(*) FROM waveforms").fetchone() or (0,)
    return vitals, waves


async def wait_for(url: str, done: Any, timeout: float, worker: Any) -> None:
    deadline = time.monotonic() + timeout
    while not done(*progress(url)):
        if time.monotonic() > deadline:
            raise AssertionError(f"stuck at {progress(url)}; worker log:\n{worker.log_tail()}")
        await asyncio.sleep(0.3)


def contents(url: str) -> tuple[dict[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        events = {str(r[0]): tuple(r[1:]) for r in conn.execute(
            "SELECT event_id, stream_id, event_type, occurred_at, payload::text, metadata::text FROM events")}
        waves = conn.execute("SELECT patient_id, lead, starts_at, samples, scale_mv, source::text FROM waveforms "
                             "ORDER BY patient_id, starts_at").fetchall()
    return events, waves


async def test_sigkill_five_times_leaves_exactly_the_undisturbed_events(
    apache_kafka: str, database_url: str, second_database: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = TopicNames(topic_prefix)
    for url in (database_url, second_database):
        store = await PostgresRecorder.connect(url)
        await store.migrate()
        await store.close()
    sent = await publish_input(apache_kafka, topics)
    assert sent == PATIENTS * SECONDS * 2
    total = PATIENTS * SECONDS

    def finished(vitals: int, waves: int) -> bool:
        return vitals == total and waves == total

    # Run A, undisturbed.
    worker = start_worker(apache_kafka, database_url, topic_prefix, False, tmp_path / "a.log", group=f"{topic_prefix}-a")
    try:
        await wait_for(database_url, finished, 300, worker)
        await asyncio.sleep(2.0)  # anything after the last waveform (summaries are in the same batches)
    finally:
        worker.stop()
    undisturbed, undisturbed_waves = contents(database_url)

    # Run B: the same input in a new group and database, killed at five points.
    rng = random.Random(2015)
    kill_at = sorted(rng.sample(range(total // 10, total - total // 10), 5))
    kills = 0
    at_kill: list[tuple[int, int]] = []
    log = tmp_path / "b0.log"
    worker = start_worker(apache_kafka, second_database, topic_prefix, False, log, group=f"{topic_prefix}-b")
    try:
        for k, target in enumerate(kill_at, start=1):
            last = sum(at_kill[-1]) if at_kill else 0
            # Kill once this incarnation has made progress and the run has reached the target.
            await wait_for(second_database,
                           lambda v, w, target=target, last=last: (v + w >= 2 * target and v + w > last)
                           or finished(v, w), 300, worker)
            worker.kill()
            at_kill.append(progress(second_database))
            kills += 1
            worker = start_worker(apache_kafka, second_database, topic_prefix, False, tmp_path / f"b{k}.log",
                                  group=f"{topic_prefix}-b")
        await wait_for(second_database, finished, 300, worker)
        await asyncio.sleep(2.0)
    finally:
        worker.stop()
    assert kills == 5
    # The kills fell mid-run: each found work still to do.
    assert all(v + w < 2 * total for v, w in at_kill), at_kill
    disturbed, disturbed_waves = contents(second_database)

    assert disturbed.keys() == undisturbed.keys(), (
        f"missing {len(undisturbed.keys() - disturbed.keys())}, extra {len(disturbed.keys() - undisturbed.keys())}")
    different = [k for k in undisturbed if undisturbed[k] != disturbed[k]]
    assert not different, (different[:3], [undisturbed[k] for k in different[:1]], [disturbed[k] for k in different[:1]])
    assert disturbed_waves == undisturbed_waves
    kinds = {v[1] for v in undisturbed.values()}
    assert {"VitalsObserved", "EcgAnalyzed"} <= kinds
    ecg_summaries = sum(1 for v in undisturbed.values() if v[1] == "EcgAnalyzed")
    assert ecg_summaries == PATIENTS * (SECONDS // 10)
    print(f"{len(undisturbed)} events, {len(undisturbed_waves)} waveforms; killed at {at_kill}",
          file=sys.stderr)
