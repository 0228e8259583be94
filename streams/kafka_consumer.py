"""Faust's aiokafka consumer, with the fetch wait as a setting and resume offsets
that win over Faust's seek.

Faust builds its consumer with ``fetch_max_wait_ms=1500``, fixed. The broker answers
a fetch as soon as any partition in it has data, or when that wait runs out. But
aiokafka leaves out of each fetch the partitions whose records it has fetched and
Faust has not taken yet, so on a busy worker a fetch often asks only for partitions
that have nothing new (an idle FHIR topic, a quiet partition) and waits out the full
1.5 s while the busy ones fill up. On a ward of 400 beds that held each message
about 1.1 s (median) before the worker saw it, and put alarm latency p99 at 1.8 s
(bench/ward.py); with 100 ms the median was 10 ms. A shorter wait costs one empty
fetch round trip per wait when the topics are idle.

After a rebalance Faust seeks every input partition to the group's committed offset,
but skips one of 0 (as does aiokafka's `seek_to_committed`). The worker puts the
offsets it must resume from in ``resume_at`` while the tables recover, and
`perform_seek` seeks there after Faust's own seek, so they are the last word. Seen
in the kill -9 fault test without it: a worker killed in its first checkpoint round
left checkpoints but no resume offset (so 0), and its successor, though it had
sought to 0 from the recovery callback, read from near the end of the partitions,
skipping messages (we did not find which of Faust's steps moved it).
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

__all__ = ["consumer_class"]


def consumer_class(fetch_max_wait_ms: int) -> type[Consumer]:
    """A Faust consumer class whose aiokafka consumer waits at most ``fetch_max_wait_ms``
    for a fetch, and which seeks to ``resume_at`` after each `perform_seek`. Set it as
    the app's ``transport.Consumer`` before the consumer exists."""
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

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.resume_at: dict[Any, int] = {}  # TP -> offset, for the next perform_seek

        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            return _Thread(self, loop=self.loop, beacon=self.beacon)

        async def perform_seek(self) -> None:
            await super().perform_seek()
            pending, self.resume_at = self.resume_at, {}
            assigned = self.assignment()
            for tp, offset in pending.items():
                if tp in assigned:
                    await self.seek(tp, offset)

    return _Consumer
