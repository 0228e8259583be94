"""streams.app: the Faust app the worker builds, as configured (no broker needed)."""

from __future__ import annotations

from typing import Any

import faust

from streams.app import PRODUCER_BUFFER_MESSAGES, WorkerConfig, build_app
from streams.topics import TopicNames


def worker_app(**settings: Any) -> faust.App:
    return build_app(WorkerConfig(brokers=["127.0.0.1:9"], database_url="postgresql://x/y",
                                  topics=TopicNames("t"), **settings))


def test_static_membership_is_opt_in() -> None:
    assert worker_app().conf.consumer_group_instance_id is None
    assert worker_app(instance_id="bed-ward-3").conf.consumer_group_instance_id == "bed-ward-3"


def test_checkpoint_writes_do_not_hold_back_the_agents() -> None:
    """Faust stops handing messages over while its producer buffer holds more than
    ``max_messages`` (100 by default); a checkpoint tick of a large ward writes more."""
    assert worker_app().producer.buffer.max_messages == PRODUCER_BUFFER_MESSAGES >= 1000


def test_fausts_monitor_is_not_a_sensor_of_the_worker() -> None:
    """Its per-message hooks feed Faust's web views, which the worker does not serve."""
    app = worker_app()
    app.on_init_dependencies()
    assert app.monitor not in set(app.sensors)
