"""The thin slice end to end on real services: Kafka -> Faust worker -> PostgreSQL
-> WebSocket gateway -> client. Runs once on Apache Kafka and once on the embedded
Tansu broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from websockets.asyncio.client import connect

from dashboards.config import GatewayConfig
from dashboards.gateway import Gateway
from dashboards.tokens import issue_token
from event_store.postgres import PostgresRecorder
from streams.dead_letter import decode_dead_letter
from streams.topics import TopicNames
from streams.vitals_codec import encode_vitals
from vigil.services.process import ManagedProcess

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

HR_LIMIT = 130
SECRET = "vitals-slice-test-secret-" + "x" * 8
BROKEN = b'{"schema_version": 1, "patient_id": "pB"'


def start_worker(
    bootstrap: str, database_url: str, prefix: str, embedded: bool, log: Path, group: str | None = None
) -> ManagedProcess:
    env = dict(os.environ) | {"VIGIL_WORKER_GROUP": group or f"{prefix}-worker"} | {
        "VIGIL_KAFKA_URL": f"kafka://{bootstrap}",
        "VIGIL_DATABASE_URL": database_url,
        "VIGIL_TOPIC_PREFIX": prefix,
        "VIGIL_KAFKA_EMBEDDED": "1" if embedded else "0",
        "VIGIL_HR_HIGH_LIMIT": str(HR_LIMIT),
    }
    return ManagedProcess.start("worker", [sys.executable, "-m", "vigil", "worker"], log, env=env)


async def receive_until(ws: Any, predicate: Any, timeout: float, seen: list[dict[str, Any]]) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout} s; received {[m.get('event_type', m['type']) for m in seen]}")
        msg = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        seen.append(msg)
        if predicate(msg):
            return msg


async def test_hr_alarm_reaches_websocket_client_exactly_once(
    any_kafka: tuple[str, str], database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    kind, bootstrap = any_kafka
    topics = TopicNames(topic_prefix)
    store = await PostgresRecorder.connect(database_url)
    await store.migrate()
    gateway = Gateway(store, GatewayConfig(jwt_secret=SECRET))
    server = await gateway.start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    worker = start_worker(bootstrap, database_url, topic_prefix, kind == "tansu", tmp_path / "worker.log")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        now = int(time.time() * 1000)
        # pA: normal, then above the limit for 3 s; pB: normal throughout; plus one malformed message.
        # pA stays above the limit longer than the ward's 15 s alarm delay.
        hrs = {"pA": [80, 82, 81] + [150, 152, 151] * 7, "pB": [70, 71, 72] * 8}
        sent_valid = 0
        for second in range(24):
            for pid, series in hrs.items():
                value = encode_vitals(pid, now + second * 1000, {"hr": series[second], "spo2": 97})
                await producer.send_and_wait(topics.vitals, value, key=pid.encode())
                sent_valid += 1
        # One malformed message last in each patient's partition.
        for pid in hrs:
            await producer.send_and_wait(topics.vitals, BROKEN, key=pid.encode())

        seen: list[dict[str, Any]] = []
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(json.dumps({"type": "auth", "last_position": 0,
                                      "token": issue_token(SECRET, "n1", "nurse", ["ward-1"], ttl_s=600)}))
            alarm = await receive_until(
                ws, lambda m: m.get("event_type") == "AlertRaised", timeout=120, seen=seen)
        assert alarm["payload"]["patient_id"] == "pA"
        assert alarm["payload"]["value"] in (150, 151, 152)
        assert alarm["payload"]["limit"] == HR_LIMIT

        # The malformed messages come last in their partitions, so their dead letters
        # mark a worker's way through the topic.
        consumer = AIOKafkaConsumer(topics.dead_letter, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    group_id=f"{topic_prefix}-dlq-check")
        await consumer.start()
        try:
            dead = [await asyncio.wait_for(consumer.getone(), 120) for _ in range(2)]
            # Crash the worker, then run one under a new consumer group with empty table
            # state: it re-processes every message from offset 0, and the store must
            # still hold each event exactly once.
            worker.kill()
            worker = start_worker(bootstrap, database_url, topic_prefix, kind == "tansu",
                                  tmp_path / "worker2.log", group=f"{topic_prefix}-replay")
            dead += [await asyncio.wait_for(consumer.getone(), 120) for _ in range(2)]
        finally:
            await consumer.stop()
        with psycopg.connect(database_url) as conn:
            counts = dict(conn.execute("SELECT event_type, count(*) FROM events GROUP BY event_type").fetchall())
            (alarm_copies,) = conn.execute(
                "SELECT count(*) FROM events WHERE event_id = %s", (alarm["event_id"],)).fetchone() or (0,)
        assert counts.get("VitalsObserved") == sent_valid, worker.log_tail()
        assert counts.get("AlertRaised") == 1
        assert alarm_copies == 1

        # Each malformed message is in the dead-letter topic with its reason and source
        # (once per worker that read it: dead letters are at-least-once).
        for record in dead:
            headers = {k: v.decode() for k, v in record.headers}
            assert headers["reason"] == "malformed_json"
            assert headers["source"].startswith(f"{topics.vitals}/")
            letter = decode_dead_letter(record.value)
            assert (letter.reason, letter.payload) == ("malformed_json", BROKEN)
            assert (letter.source.topic, letter.source.key) == (topics.vitals, record.key)
            assert f"{letter.source.topic}/{letter.source.partition}/{letter.source.offset}" == headers["source"]
        assert sorted(r.key for r in dead) == [b"pA", b"pA", b"pB", b"pB"]
    finally:
        worker.stop()
        await producer.stop()
        server.close()
        await server.wait_closed()
        await gateway.stop()
        await store.close()
