"""The 3-broker Apache Kafka cluster that the fault tests use: replication factor 3,
min.insync.replicas 2, so losing one broker loses no acknowledged write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from vigil.services.kafka import KafkaCluster, java_available

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_three_brokers_survive_losing_one(tmp_path: Path) -> None:
    if not java_available():
        pytest.fail("Java 17 and Maven (or KAFKA_HOME) are needed for the Apache Kafka cluster")
    cluster = KafkaCluster.start(tmp_path, brokers=3)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        try:
            meta = await admin.describe_cluster()
            assert sorted(b["node_id"] for b in meta["brokers"]) == [1, 2, 3]
        finally:
            await admin.close()

        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait("replicated", f"before-{i}".encode(), key=b"k")
            cluster.kill_node(2)
            # acks=all still succeeds with 2 of 3 replicas in sync.
            for i in range(20):
                await producer.send_and_wait("replicated", f"after-{i}".encode(), key=b"k")
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer("replicated", bootstrap_servers=cluster.bootstrap,
                                    auto_offset_reset="earliest", group_id=f"check-{os.getpid()}")
        await consumer.start()
        try:
            values: list[bytes] = []
            while len(values) < 40:
                batch = await consumer.getmany(timeout_ms=10_000)
                assert batch, f"no records within 10 s after {len(values)}"
                values += [r.value for records in batch.values() for r in records if r.value is not None]
        finally:
            await consumer.stop()
        assert values == [f"before-{i}".encode() for i in range(20)] + [f"after-{i}".encode() for i in range(20)]
        cluster.start_node(2)  # a killed broker restarts from its data folder
        assert cluster.node(2).process is not None and cluster.node(2).process.running()
    finally:
        cluster.stop()
