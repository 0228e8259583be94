"""streams.kafka_consumer: Faust's consumer with the fetch wait as a setting, and
resume offsets sought after Faust's own seek."""

from __future__ import annotations

from typing import Any

import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

from streams.app import WorkerConfig, build_app
from streams.kafka_consumer import consumer_class
from streams.topics import TopicNames


def test_the_worker_app_uses_the_configured_fetch_wait() -> None:
    app = build_app(WorkerConfig(brokers=["127.0.0.1:9"], database_url="postgresql://x/y", topics=TopicNames("t"),
                                 fetch_max_wait_ms=70))
    cls: Any = app.transport.Consumer
    assert issubclass(cls, Consumer) and cls.max_wait_ms == 70
    assert issubclass(cls.Thread, AIOKafkaConsumerThread)


def test_the_aiokafka_consumer_gets_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fake:
        _fetch_max_wait_ms = 1500  # what Faust passes

    monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer", lambda self, transport: Fake())
    thread_cls: Any = consumer_class(40).Thread  # type: ignore[attr-defined]
    thread = object.__new__(thread_cls)  # no service started: only the factory method is exercised
    assert thread._create_worker_consumer(None)._fetch_max_wait_ms == 40


def test_a_wait_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        consumer_class(0)


@pytest.mark.asyncio
async def test_resume_offsets_are_sought_after_fausts_own_seek(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any, int]] = []

    async def faust_seek(self: Any) -> None:
        calls.append(("faust", None, -1))

    async def seek(self: Any, tp: Any, offset: int) -> None:
        calls.append(("seek", tp, offset))

    monkeypatch.setattr(Consumer, "perform_seek", faust_seek)
    cls: Any = consumer_class(100)
    monkeypatch.setattr(cls, "seek", seek)
    monkeypatch.setattr(cls, "assignment", lambda self: {"a/0", "a/1"})
    consumer = object.__new__(cls)  # no service started: only perform_seek is exercised
    consumer.resume_at = {"a/0": 0, "a/1": 17, "gone/0": 5}  # gone/0: revoked since
    await consumer.perform_seek()
    assert calls[0] == ("faust", None, -1)
    assert sorted(calls[1:]) == [("seek", "a/0", 0), ("seek", "a/1", 17)]
    assert consumer.resume_at == {}
    calls.clear()
    await consumer.perform_seek()  # the next rebalance seeks only where it is told again
    assert calls == [("faust", None, -1)]


def test_static_membership_is_opt_in() -> None:
    def conf(**kw: Any) -> Any:
        return build_app(WorkerConfig(brokers=["127.0.0.1:9"], database_url="postgresql://x/y",
                                      topics=TopicNames("t"), **kw)).conf

    assert conf().consumer_group_instance_id is None
    assert conf(instance_id="bed-ward-3").consumer_group_instance_id == "bed-ward-3"
