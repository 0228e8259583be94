"""streams.recovery_watchdog: which partitions count as a stalled recovery, and the
rejoin it asks for (Faust's recovery and consumer stood in for by fakes)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

from streams.recovery_watchdog import STALL_S, describe_partitions, request_rejoin, stalled_partitions


class _Recovery:
    def __init__(self, started: float | None, remaining: dict[str, int], received: dict[str, float]) -> None:
        self.in_recovery = started is not None
        self._recovery_started_at = started
        self._remaining = Counter(remaining)
        self._active_events_received_at = received

    def active_remaining(self) -> Counter[str]:
        return self._remaining


def test_a_partition_with_records_to_read_and_none_received_is_stalled() -> None:
    recovery = _Recovery(100.0, {"cl/0": 5, "cl/1": 0, "cl/2": 7, "cl/3": 3}, {"cl/2": 100.0 + STALL_S, "cl/3": 101.0})
    now = 100.0 + STALL_S + 1
    # cl/0: nothing since the start; cl/1: nothing left to read; cl/2: a record 1 s ago;
    # cl/3: its last record came STALL_S s ago.
    assert stalled_partitions(recovery, now) == ["cl/0", "cl/3"]
    assert stalled_partitions(recovery, 100.0 + STALL_S - 1) == []  # too early for any


def test_no_recovery_no_stall() -> None:
    assert stalled_partitions(_Recovery(None, {"cl/0": 5}, {}), 1e9) == []


def test_the_description_names_what_the_consumer_knows() -> None:
    consumer: Any = type("Consumer", (), {})()
    consumer.flow_active = True
    consumer._active_partitions, consumer._paused_partitions, consumer._buffered_partitions = {"cl/0"}, set(), set()
    consumer._read_offset = {"cl/0": 12}
    text = describe_partitions(consumer, ["cl/0"])  # no aiokafka consumer behind it: Faust's side only
    assert text == ("flow_active=True; cl/0: faust active=True, paused=False, buffered=False, read_offset=12, "
                    "fetched_records=False")


@pytest.mark.asyncio
async def test_the_rejoin_is_requested_on_the_consumer_threads_loop() -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    called_on: list[int] = []
    done = threading.Event()

    def rejoin() -> None:
        called_on.append(threading.get_ident())
        done.set()

    coordinator = type("Coordinator", (), {"request_rejoin": staticmethod(rejoin)})()
    thread = type("Thread", (), {"thread_loop": loop, "_consumer": type("Ak", (), {"_coordinator": coordinator})()})()
    consumer = type("Consumer", (), {"_thread": thread})()
    try:
        request_rejoin(consumer)
        assert done.wait(5)
        assert called_on == [runner.ident]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
