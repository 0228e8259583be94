"""Full disclosure on a real PostgreSQL: raw ECG chunks stored once, read back by time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from event_store.postgres import PostgresRecorder
from event_store.waveforms import WaveformChunk, WaveformStore

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.fixture
def database_url(store_url: str) -> str:
    """Every test here runs on both schemas, native and TimescaleDB (`tests.conftest.store_url`)."""
    return store_url

T0 = datetime(2026, 11, 26, 8, 0, 0, tzinfo=UTC)


def chunk(second: int, lead: str = "II") -> WaveformChunk:
    samples = (np.arange(250, dtype="<i2") + second).tobytes()
    return WaveformChunk("p0001", lead, T0 + timedelta(seconds=second), 250.0, samples, 0.005,
                         {"topic": "vigil.ecg", "partition": 0, "offset": second})


async def test_chunks_are_stored_once_and_read_back_by_time(pg_recorder: PostgresRecorder, database_url: str) -> None:
    store = await WaveformStore.connect(database_url)
    try:
        await store.write([chunk(s) for s in range(5)] + [chunk(0, "V")])
        await store.write([chunk(s) for s in range(3, 7)])  # a replay after a restart: 3 and 4 again
        got = await store.read("p0001", "II", T0 + timedelta(seconds=2.5), T0 + timedelta(seconds=5))
        assert [c.starts_at for c in got] == [T0 + timedelta(seconds=s) for s in (2, 3, 4)]
        assert got[0] == chunk(2)
        assert np.allclose(got[1].millivolts(), (np.arange(250) + 3) * 0.005)
        every = await store.read("p0001", "II", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
        assert len(every) == 7  # 0..6, none twice
        assert [c.lead for c in await store.read("p0001", "V", T0, T0 + timedelta(seconds=1))] == ["V"]
    finally:
        await store.close()
