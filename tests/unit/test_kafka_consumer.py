"""streams.kafka_consumer: Faust's consumer with the fetch wait as a setting."""

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
