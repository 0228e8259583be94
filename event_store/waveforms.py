"""Raw ECG for full disclosure: one row per received chunk, beside the events.

Writes are idempotent: the primary key is (patient, lead, first-sample time), and a
chunk that is written again after a worker restart is skipped (``ON CONFLICT DO
NOTHING``), so re-processing never duplicates a waveform. Rows are immutable (the
table carries the same refuse-change trigger as the events).

    store = await WaveformStore.connect(dsn)
    await store.write([WaveformChunk(...), ...])        # one round trip
    await store.read("p0001", "II", start, end)          # chunks overlapping [start, end)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import numpy as np
import numpy.typing as npt

from event_store.postgres import _keep_session, _retrying

__all__ = ["WaveformChunk", "WaveformStore"]


@dataclass(frozen=True, slots=True)
class WaveformChunk:
    patient_id: str
    lead: str
    starts_at: datetime
    sampling_hz: float
    samples: bytes
    """Little-endian int16 counts."""
    scale_mv: float
    """mV per count."""
    source: dict[str, object] = field(default_factory=dict)

    @property
    def sample_count(self) -> int:
        return len(self.samples) // 2

    def millivolts(self) -> npt.NDArray[np.float64]:
        return np.frombuffer(self.samples, dtype="<i2").astype(np.float64) * self.scale_mv


_INSERT = """
INSERT INTO waveforms (patient_id, lead, starts_at, sampling_hz, sample_count, samples, source, scale_mv)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::real[], $5::integer[], $6::bytea[],
                     $7::jsonb[], $8::float8[])
ON CONFLICT DO NOTHING
"""

_READ = """
SELECT patient_id, lead, starts_at, sampling_hz, samples, scale_mv, source::text
FROM waveforms
WHERE patient_id = $1 AND lead = $2 AND starts_at < $4
  AND starts_at + make_interval(secs => sample_count / sampling_hz) > $3
ORDER BY starts_at
"""


class WaveformStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, max_size: int = 2) -> WaveformStore:
        # Like the recorder's pool: no session state to reset between uses.
        pool = await _retrying("connect", lambda: asyncpg.create_pool(dsn, min_size=1, max_size=max_size,
                                                                      reset=_keep_session))
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def write(self, chunks: list[WaveformChunk]) -> None:
        if not chunks:
            return
        columns = (
            [c.patient_id for c in chunks], [c.lead for c in chunks], [c.starts_at for c in chunks],
            [c.sampling_hz for c in chunks], [c.sample_count for c in chunks], [c.samples for c in chunks],
            [json.dumps(c.source) for c in chunks], [c.scale_mv for c in chunks],
        )

        async def insert() -> None:
            async with self._pool.acquire() as conn:
                await conn.execute(_INSERT, *columns)

        await _retrying("write waveforms", insert)

    async def read(self, patient_id: str, lead: str, start: datetime, end: datetime) -> list[WaveformChunk]:
        """Chunks that overlap ``[start, end)``, in time order."""
        async def select() -> list[asyncpg.Record]:
            async with self._pool.acquire() as conn:
                return list(await conn.fetch(_READ, patient_id, lead, start, end))

        rows = await _retrying("read waveforms", select)
        return [WaveformChunk(r["patient_id"], r["lead"], r["starts_at"], float(r["sampling_hz"]), bytes(r["samples"]),
                              float(r["scale_mv"]), json.loads(r["source"])) for r in rows]
