"""The thin slice's event log on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from event_store.events import NewEvent
from event_store.postgres import PostgresEventStore

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def ev(stream: str = "patient-p1", n: int = 0) -> NewEvent:
    return NewEvent(uuid.uuid4(), stream, "VitalsObserved", datetime.now(UTC), {"n": n})


async def test_append_is_idempotent_by_event_id(database_url: str) -> None:
    store = await PostgresEventStore.connect(database_url)
    try:
        assert await store.migrate() == ["0001_events.sql"]
        assert await store.migrate() == []
        batch = [ev(n=i) for i in range(3)]
        first = await store.append(batch)
        assert sorted(first.values()) == [1, 2, 3]
        late = ev(n=9)
        again = await store.append([batch[1], late])
        assert again[batch[1].event_id] == first[batch[1].event_id]
        # Positions only grow; they may skip numbers (a conflicting insert still draws
        # from the sequence), so readers must never assume they are gap-free.
        assert again[late.event_id] > max(first.values())
        events = await store.read_all(0)
        assert [e.payload["n"] for e in events] == [0, 1, 2, 9]
    finally:
        await store.close()


async def test_subscriber_sees_concurrent_appends_once_in_order(database_url: str) -> None:
    store = await PostgresEventStore.connect(database_url, max_size=10)
    await store.migrate()
    writers, per_writer = 8, 25
    seen: list[int] = []

    async def follow() -> None:
        async for event in store.subscribe(0, poll_interval=5):
            seen.append(event.position)
            if len(seen) == writers * per_writer:
                return

    async def write(w: int) -> None:
        for i in range(per_writer):
            await store.append([ev(f"patient-w{w}", i)])

    try:
        follower = asyncio.create_task(follow())
        await asyncio.gather(*(write(w) for w in range(writers)))
        await asyncio.wait_for(follower, 30)
        stored = [e.position for e in await store.read_all(0, 10_000)]
        assert len(stored) == writers * per_writer
        assert seen == stored == sorted(set(stored))
    finally:
        await store.close()
