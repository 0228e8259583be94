"""Offsets a partition does not deliver, on real Apache Kafka and PostgreSQL.

A device gateway that publishes in Kafka transactions leaves a commit marker after
each transaction: an offset that no consumer ever receives. The worker takes any
offset past the next one expected for a possible loss, reads the partition again
from there (`streams.states`), finds the offset missing from the log once more, and
goes on. Here every message comes in its own transaction, so every message after
the first follows a gap: each must be applied exactly once, each gap read again
exactly once (a second time would be a loop), and the worker must keep up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from streams.topics import TopicNames
from streams.vitals_codec import encode_vitals
from tests.integration.pipeline_helpers import (
    WARD_START_US,
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


async def publish_in_transactions(bootstrap: str, topic: str, prefix: str) -> None:
    """``MESSAGES`` vitals of one patient, each in its own committed transaction."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{prefix}-gateway")
    await producer.start()
    try:
        for i in range(MESSAGES):
            async with producer.transaction():
                value = encode_vitals("p0001", WARD_START_US // 1000 + 1000 * i, {"hr": 70.0 + i % 5, "spo2": 97.0})
                await producer.send_and_wait(topic, value, key=b"p0001")
    finally:
        await producer.stop()


async def test_transaction_markers_are_read_again_once_and_lose_nothing(
    apache_kafka: str, postgres_server: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = TopicNames(topic_prefix)
    await create_topics(apache_kafka, {topics.vitals: 1, topics.ecg: 1, topics.fhir: 1, topics.dead_letter: 1})
    await publish_in_transactions(apache_kafka, topics.vitals, topic_prefix)
    log = tmp_path / "worker.log"
    with scratch_database(postgres_server) as db:
        await migrate(db)
        worker = start_worker(apache_kafka, db, topic_prefix, log, group=f"{topic_prefix}-g",
                              state_dir=tmp_path / "state", partitions=1)
        try:
            vitals, _ = await wait_for(db, lambda v, w: v >= MESSAGES, 180, worker)
            await asyncio.sleep(3)  # time for a loop to show: a gap read again and again
            text = log.read_text()
            assert worker.running(), worker.log_tail(40)
        finally:
            await stop_all([worker])
        assert progress(db)[0] == vitals == MESSAGES
    assert await dead_letters(apache_kafka, topics) == 0  # none applied twice (stale timestamp)
    # Message i is at offset 2i, its marker at 2i + 1: each of the gaps before messages
    # 1 to MESSAGES - 1 is read again once and found missing from the log.
    assert text.count("arrived after a gap") == MESSAGES - 1, text[-3000:]
    assert text.count("are not in the log") == MESSAGES - 1, text[-3000:]
