"""Offsets a partition does not deliver, on real Apache Kafka and PostgreSQL.

A device gateway that publishes in Kafka transactions leaves a commit marker after
each transaction: an offset that no consumer ever receives. Here every message comes
in its own transaction, so every message after the first follows such a hole; each
must be applied exactly once, and the worker must keep up. Every tenth transaction is
followed by one that aborts: its reading must never reach the store.

- Read in one go, the consumer sees each hole between two records it delivered, and
  vouches for it (`streams.kafka_consumer`): no message is read again.
- A worker that resumes in the middle starts at the offset after the last message
  applied, which is a marker. Nothing it delivered vouches for that hole, so it reads
  the partition again from there (`streams.states`), finds the offset missing once
  more, and goes on: once, not in a loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from streams.topics import TopicNames
from streams.vitals_codec import encode_vitals
from tests.integration.pipeline_helpers import (
    WARD_START_US,
    contents,
    create_topics,
    dead_letters,
    migrate,
    progress,
    scratch_database,
    start_worker,
    stop_all,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

MESSAGES = 30
ABORTED = {"hr": 150.0, "spo2": 80.0}


async def publish_in_transactions(bootstrap: str, topic: str, prefix: str, *, first: int) -> None:
    """``MESSAGES`` vitals of one patient, seconds ``first`` on, each in its own
    committed transaction."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{prefix}-gateway")
    await producer.start()
    try:
        for i in range(first, first + MESSAGES):
            at_ms = WARD_START_US // 1000 + 1000 * i
            async with producer.transaction():
                value = encode_vitals("p0001", at_ms, {"hr": 70.0 + i % 5, "spo2": 97.0})
                await producer.send_and_wait(topic, value, key=b"p0001")
            if i % 10 == 5:  # then a transaction that aborts: its reading never happened
                await producer.begin_transaction()
                await producer.send_and_wait(topic, encode_vitals("p0001", at_ms + 500, ABORTED), key=b"p0001")
                await producer.abort_transaction()
    finally:
        await producer.stop()


async def test_transaction_markers_lose_nothing_and_are_read_again_only_after_a_resume(
    apache_kafka: str, postgres_server: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = TopicNames(topic_prefix)
    await create_topics(apache_kafka, {topics.vitals: 1, topics.ecg: 1, topics.fhir: 1, topics.dead_letter: 1})
    texts = []
    with scratch_database(postgres_server) as db:
        await migrate(db)
        for run in range(2):
            await publish_in_transactions(apache_kafka, topics.vitals, topic_prefix, first=run * MESSAGES)
            log = tmp_path / f"worker{run}.log"
            worker = start_worker(apache_kafka, db, topic_prefix, log, group=f"{topic_prefix}-g",
                                  state_dir=tmp_path / "state", partitions=1)
            try:
                vitals, _ = await wait_for(db, lambda v, w, n=(run + 1) * MESSAGES: v >= n, 180, worker)
                await asyncio.sleep(3)  # time for a loop to show: a gap read again and again
                texts.append(log.read_text())
                assert worker.running(), worker.log_tail(40)
            finally:
                await stop_all([worker])
        assert progress(db)[0] == vitals == 2 * MESSAGES
        stored = [json.loads(e[3]) for e in contents(db).events.values() if e[1] == "VitalsObserved"]
        assert len(stored) == 2 * MESSAGES and all(v["hr"] != ABORTED["hr"] for v in stored)
    assert await dead_letters(apache_kafka, topics) == 0  # none applied twice (stale timestamp)
    # Message i is at offset 2i, its marker at 2i + 1.
    first, resumed = texts
    assert "arrived after a gap" not in first and "not in the log" not in first, first[-3000:]
    # The second worker resumes at 2 * MESSAGES - 1, the last marker of the first run.
    assert resumed.count("arrived after a gap") == 1, resumed[-3000:]
    assert resumed.count("are not in the log") == 1, resumed[-3000:]
