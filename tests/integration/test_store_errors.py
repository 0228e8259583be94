"""Error handling at the driver boundary: transient failures are retried, the rest are
translated into event_store's own errors at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from event_store.events import NewEvent
from event_store.exceptions import EventStoreError, StoreUnavailable
from event_store.postgres import PostgresRecorder
from vigil.services.postgres import PostgresCluster
from vigil.services.process import free_port

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_connect_waits_for_a_database_that_is_still_starting(pg_home: Path) -> None:
    port = free_port()
    connecting = asyncio.create_task(PostgresRecorder.connect(f"postgresql://postgres@127.0.0.1:{port}/vigil"))
    await asyncio.sleep(1.5)
    assert not connecting.done()  # still retrying, not failed
    cluster = await asyncio.to_thread(PostgresCluster.start, pg_home, port=port, durable=False)
    try:
        recorder = await asyncio.wait_for(connecting, 60)
        await recorder.migrate()
        assert await recorder.last_position() == 0
        await recorder.close()
    finally:
        cluster.stop()


async def test_an_unreachable_database_is_reported_as_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="after 3 attempts"):
        await PostgresRecorder.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/vigil", attempts=3)
    assert time.monotonic() - started < 30


async def test_permanent_errors_are_not_retried(database_url: str) -> None:
    recorder = await PostgresRecorder.connect(database_url)
    try:
        # No migrate(): the tables are missing. That is not transient, so it fails at once.
        with pytest.raises(EventStoreError, match="UndefinedTableError"):
            await recorder.append("patient-p1", [NewEvent(uuid.uuid4(), "patient-p1", "VitalsObserved",
                                                          datetime.now(UTC), {})])
    finally:
        await recorder.close()
