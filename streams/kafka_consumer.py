"""Faust's aiokafka consumer, with the fetch wait as a setting.

Faust builds its consumer with ``fetch_max_wait_ms=1500``, fixed. The broker answers
a fetch as soon as any partition in it has data, or when that wait runs out. But
aiokafka leaves out of each fetch the partitions whose records it has fetched and
Faust has not taken yet, so on a busy worker a fetch often asks only for partitions
that have nothing new (an idle FHIR topic, a quiet partition) and waits out the full
1.5 s while the busy ones fill up. On a ward of 400 beds that held each message
about 1.1 s (median) before the worker saw it, and put alarm latency p99 at 1.8 s
(bench/ward.py); with 100 ms the median was 10 ms. A shorter wait costs one empty
fetch round trip per wait when the topics are idle.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

__all__ = ["consumer_class"]


def consumer_class(fetch_max_wait_ms: int) -> type[Consumer]:
    """A Faust consumer class whose aiokafka consumer waits at most ``fetch_max_wait_ms``
    for a fetch. Set it as the app's ``transport.Consumer`` before the consumer exists."""
    if fetch_max_wait_ms < 1:
        raise ValueError(f"fetch_max_wait_ms must be positive, got {fetch_max_wait_ms}")

    class _Thread(AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka hands this to its Fetcher when the consumer starts.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class _Consumer(Consumer):
        Thread = _Thread
        max_wait_ms = fetch_max_wait_ms

        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            return _Thread(self, loop=self.loop, beacon=self.beacon)

    return _Consumer
