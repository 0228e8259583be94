"""streams.sink: while the store refuses writes, the sink holds its items, retries, and
says since when (the worker's /readyz reports it); the items are written once it is back.
It times each alarm event from its device time to the commit that stored it, once.

Pure unit tests: the store is a stand-in that refuses a given number of writes (the
real database going away is the pipeline fault test's), or the in-memory recorder."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from event_store.events import Appended, AppendRequest, NewEvent
from event_store.memory import MemoryRecorder
from event_store.exceptions import StoreUnavailable
from streams.sink import BatchingSink, SinkItem

pytestmark = pytest.mark.asyncio


class Store:
    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.appended: list[AppendRequest] = []
        self.gate = asyncio.Event()  # set: the refusals may end

    async def append_batch(self, requests: list[AppendRequest]) -> Appended:
        if self.refusals:
            self.refusals -= 1
            if not self.refusals:
                await self.gate.wait()
            raise StoreUnavailable("connection refused")
        self.appended += requests
        return Appended({e.event_id: i + 1 for i, e in enumerate(e for r in requests for e in r.events)}, 1)

    async def write(self, chunks: list[Any]) -> None:
        pass


def event(kind: str = "VitalsObserved", at: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> NewEvent:
    return NewEvent(event_id=uuid.uuid4(), stream_id="patient-p1", event_type=kind, occurred_at=at,
                    payload={"patient_id": "p1"})


async def test_the_sink_says_since_when_the_store_refuses_writes() -> None:
    store = Store(refusals=2)
    sink = BatchingSink(store, store)  # type: ignore[arg-type]  # the stand-in is both
    durable: list[int] = []

    async def on_durable() -> None:
        durable.append(1)

    await sink.put(SinkItem([event()], on_durable=on_durable))
    before = time.monotonic()
    drain = asyncio.create_task(sink.drain())
    while store.refusals > 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # within the first back-off
    since = sink.stats.unavailable_since
    assert since is not None and before <= since <= time.monotonic()
    assert not durable and not store.appended
    store.gate.set()
    await asyncio.wait_for(drain, 10)
    assert sink.stats.unavailable_since is None
    assert sink.stats.retries == 2 and len(store.appended) == 1 and durable == [1]


async def test_alarm_latency_counts_each_alarm_the_batch_stored_once() -> None:
    recorder = MemoryRecorder()
    sink = BatchingSink(recorder, Store(refusals=0))  # type: ignore[arg-type]  # (the stand-in writes no waveforms)
    now = datetime.now(UTC)
    raised = event("AlertRaised", now - timedelta(seconds=0.3))
    resolved = event("AlertResolved", now - timedelta(seconds=7))
    await sink.put(SinkItem([event(at=now), raised, resolved]))
    await sink.drain()
    h = sink.stats.alarm_latency
    assert h.count == 2 and dict(zip(h.bounds, h.counts[:-1], strict=True)) == {
        **dict.fromkeys(h.bounds, 0), 0.5: 1, 10.0: 1}
    assert 7.3 <= h.sum < 8.0
    # The same events again (the input read again after a restart) are not new: not counted.
    late = event("AlertEscalated", now - timedelta(seconds=61))
    await sink.put(SinkItem([raised, resolved, late]))
    await sink.drain()
    assert h.count == 3 and h.counts[-1] == 1  # only the escalation, past the last bound
    assert len(await recorder.read_all(0)) == 4


async def test_put_blocks_once_max_pending_items_wait_and_resumes_when_the_store_is_back() -> None:
    """Back-pressure: the agent awaiting `put` stops pulling messages, so Kafka keeps them."""
    store = Store(refusals=3)
    sink = BatchingSink(store, store, max_pending=4, max_delay=0.01)  # type: ignore[arg-type]
    sink.start()
    try:
        for _ in range(4):
            await asyncio.wait_for(sink.put(SinkItem([event()])), 1)
        fifth = asyncio.create_task(sink.put(SinkItem([event()])))
        while store.refusals > 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert not fifth.done() and not store.appended  # blocked while the store refuses
        store.gate.set()
        await asyncio.wait_for(fifth, 10)
        await sink.drain()
        assert len(store.appended) == 5  # the four held and the fifth: nothing dropped
    finally:
        await sink.stop()
