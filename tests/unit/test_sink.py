"""streams.sink: while the store refuses writes, the sink holds its items, retries, and
says since when (the worker's /readyz reports it); the items are written once it is back.

A pure unit test: the store is a stand-in that refuses a given number of writes
(the real database going away is the pipeline fault test's)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from event_store.events import AppendRequest, NewEvent
from event_store.exceptions import StoreUnavailable
from streams.sink import BatchingSink, SinkItem

pytestmark = pytest.mark.asyncio


class Store:
    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.appended: list[AppendRequest] = []
        self.gate = asyncio.Event()  # set: the refusals may end

    async def append_batch(self, requests: list[AppendRequest]) -> dict[uuid.UUID, int]:
        if self.refusals:
            self.refusals -= 1
            if not self.refusals:
                await self.gate.wait()
            raise StoreUnavailable("connection refused")
        self.appended += requests
        return {}

    async def write(self, chunks: list[Any]) -> None:
        pass


def event() -> NewEvent:
    return NewEvent(event_id=uuid.uuid4(), stream_id="patient-p1", event_type="VitalsObserved",
                    occurred_at=datetime(2026, 1, 1, tzinfo=UTC), payload={"patient_id": "p1"})


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
