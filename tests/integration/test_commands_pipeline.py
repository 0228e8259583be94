"""A care-team command reaches the worker's alarm engine: acknowledging a latched
alarm whose condition has ended clears it, and the worker logs that consequence
(with the command as its cause), on real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from event_store.events import NewEvent
from event_store.postgres import PostgresRecorder
from streams.topics import TopicNames
from streams.vitals_codec import encode_vitals
from tests.integration.test_vitals_slice import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

SICK = {"hr": 120, "spo2": 90, "rr": 26, "sbp": 95, "dbp": 60, "temp": 39.2}
WELL = {"hr": 72, "spo2": 98, "rr": 15, "sbp": 125, "dbp": 78, "temp": 36.9}


async def wait_for_event(store: PostgresRecorder, match: object, timeout: float = 90.0) -> NewEvent | object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in await store.read_stream("patient-pA"):
            if match(e):  # type: ignore[operator]
                return e
        await asyncio.sleep(0.3)
    raise AssertionError("timed out; stream holds " + str([e.event_type for e in await store.read_stream("patient-pA")]))


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[PostgresRecorder]:
    recorder = await PostgresRecorder.connect(database_url)
    await recorder.migrate()
    yield recorder
    await recorder.close()


@pytest_asyncio.fixture
async def producer(apache_kafka: str) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(bootstrap_servers=apache_kafka, acks="all")
    await started.start()
    yield started
    await started.stop()


async def send_reading(producer: AIOKafkaProducer, topics: TopicNames, now_ms: int, t: int,
                       values: dict[str, float]) -> None:
    """Patient pA's vitals ``t`` seconds after ``now_ms`` (on oxygen when ``SICK``)."""
    await producer.send_and_wait(topics.vitals, encode_vitals("pA", now_ms + t * 1000, dict(values),
                                                              oxygen=values is SICK, acvpu="A"), key=b"pA")


async def latch_an_alarm(store: PostgresRecorder, producer: AIOKafkaProducer, topics: TopicNames,
                         now_ms: int) -> str:
    """5 s at NEWS2 high risk, then 5 s well: the high-priority alarm stays latched.
    Returns its alert id once the worker has stored the last reading."""
    for t in range(10):
        await send_reading(producer, topics, now_ms, t, SICK if t < 5 else WELL)
    raised = await wait_for_event(store, lambda e: e.event_type == "AlertRaised"
                                  and e.payload["condition"] == "news2_high")
    await wait_for_event(store, lambda e: e.event_type == "VitalsObserved" and e.payload["hr"] == WELL["hr"])
    return str(raised.payload["alert_id"])  # type: ignore[attr-defined]


def acknowledgement(alert_id: str) -> NewEvent:
    """Nurse Ada's acknowledgement, as the gateway appends it."""
    return NewEvent(uuid.uuid4(), f"alert-{alert_id}", "AlertAcknowledged", datetime.now(UTC),
                    {"alert_id": alert_id, "patient_id": "pA", "by": "nurse.ada", "role": "nurse"},
                    metadata={"actor": "nurse.ada", "role": "nurse"})


async def test_acknowledging_a_latched_alarm_clears_it_in_the_worker(
    apache_kafka: str, database_url: str, topic_prefix: str, tmp_path: Path, store: PostgresRecorder,
    producer: AIOKafkaProducer,
) -> None:
    topics = TopicNames(topic_prefix)
    worker = start_worker(apache_kafka, database_url, topic_prefix, False, tmp_path / "worker.log")
    try:
        alert_id = await latch_an_alarm(store, producer, topics, int(time.time() * 1000))
        assert not [e for e in await store.read_stream("patient-pA")
                    if e.event_type == "AlertResolved" and e.payload["alert_id"] == alert_id]  # latched
        await asyncio.sleep(2.0)  # the worker's command follower is subscribed by now
        ack = acknowledgement(alert_id)
        await store.append(ack.stream_id, [ack], expected_version=0)
        resolved = await wait_for_event(store, lambda e: e.event_type == "AlertResolved"
                                        and e.payload["alert_id"] == alert_id)
        assert resolved.payload["reason"] == "acknowledged"  # type: ignore[attr-defined]
        assert resolved.metadata["causation_id"] == str(ack.event_id)  # type: ignore[attr-defined]
        assert resolved.metadata["actor"] == "nurse.ada"  # type: ignore[attr-defined]
    finally:
        worker.stop()


async def test_an_acknowledgement_given_while_no_worker_runs_reaches_the_restored_state(
    apache_kafka: str, database_url: str, topic_prefix: str, tmp_path: Path, store: PostgresRecorder,
    producer: AIOKafkaProducer,
) -> None:
    """The worker stops with a latched alarm; the care team acknowledges it while no
    worker runs; the restarted worker restores the patient from its checkpoint and
    gives it the acknowledgement before its next reading: the alarm clears, once."""
    topics = TopicNames(topic_prefix)
    worker = start_worker(apache_kafka, database_url, topic_prefix, False, tmp_path / "worker-1.log")
    try:
        now = int(time.time() * 1000)
        alert_id = await latch_an_alarm(store, producer, topics, now)
        worker.stop()  # SIGTERM: the worker checkpoints every state on its way out
        ack = acknowledgement(alert_id)
        await store.append(ack.stream_id, [ack], expected_version=0)
        worker = start_worker(apache_kafka, database_url, topic_prefix, False, tmp_path / "worker-2.log")
        await send_reading(producer, topics, now, 10, WELL)
        resolved = await wait_for_event(store, lambda e: e.event_type == "AlertResolved"
                                        and e.payload["alert_id"] == alert_id)
        assert resolved.payload["reason"] == "acknowledged"  # type: ignore[attr-defined]
        assert resolved.metadata["causation_id"] == str(ack.event_id)  # type: ignore[attr-defined]
        await send_reading(producer, topics, now, 11, WELL)
        await wait_for_event(store, lambda e: e.event_type == "VitalsObserved" and e.occurred_at.timestamp()
                             >= (now + 11_000) / 1000)
        assert [e.event_type for e in await store.read_stream("patient-pA")
                if e.payload.get("alert_id") == alert_id] == ["AlertRaised", "AlertResolved"]
    finally:
        worker.stop()
