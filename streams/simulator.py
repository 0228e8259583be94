"""A simulated ward: 1 Hz vital signs for N patients, deterministic for a seed.

`WardSimulator.tick()` is pure (no I/O) and returns one message per patient;
`publish()` sends ticks to Kafka in real time. Patient ``p0001`` follows a
scripted deterioration: heart rate climbs past 130 bpm about 10 s after start,
stays high for a minute, recovers, and the cycle repeats every 3 minutes, so a
demo shows an alarm being raised and cleared.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from streams.vitals_codec import encode_vitals

__all__ = ["WardSimulator", "publish", "patient_ids"]

_BASE = {"hr": 78.0, "spo2": 97.0, "rr": 15.0, "sbp": 122.0, "dbp": 76.0, "temp": 36.9}
_SPREAD = {"hr": 10.0, "spo2": 1.5, "rr": 2.0, "sbp": 10.0, "dbp": 6.0, "temp": 0.3}
_CYCLE_S = 180


def patient_ids(n: int) -> list[str]:
    return [f"p{i:04d}" for i in range(1, n + 1)]


def _deterioration_hr(t: int) -> float:
    """Extra heart rate for the scripted patient at second ``t`` of the run."""
    phase = t % _CYCLE_S
    if phase < 5:
        return 0.0
    if phase < 15:
        return (phase - 5) * 7.0  # +70 bpm over 10 s
    if phase < 75:
        return 70.0
    if phase < 95:
        return 70.0 - (phase - 75) * 3.5
    return 0.0


@dataclass
class WardSimulator:
    patients: int
    seed: int = 42
    deteriorating: tuple[str, ...] = ("p0001",)
    _t: int = 0
    _rng: random.Random = field(init=False)
    _base: dict[str, dict[str, float]] = field(init=False)
    _drift: dict[str, dict[str, float]] = field(init=False)

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ValueError(f"patients must be >= 1, got {self.patients}")
        self._rng = random.Random(self.seed)
        self._base = {
            p: {k: v + self._rng.uniform(-1, 1) * _SPREAD[k] * 0.5 for k, v in _BASE.items()}
            for p in patient_ids(self.patients)
        }
        self._drift = {p: {k: 0.0 for k in _BASE} for p in self._base}

    def tick(self, now_ms: int) -> list[tuple[str, bytes]]:
        """One second of the ward: ``(patient_id, encoded message)`` per patient."""
        out = []
        for pid, base in self._base.items():
            drift = self._drift[pid]
            values: dict[str, float | None] = {}
            for k, b in base.items():
                # Mean-reverting random walk, so values wander but stay plausible.
                drift[k] = 0.9 * drift[k] + self._rng.gauss(0, _SPREAD[k] * 0.15)
                values[k] = b + drift[k]
            if pid in self.deteriorating:
                extra = _deterioration_hr(self._t)
                values["hr"] = (values["hr"] or 0.0) + extra
                values["spo2"] = (values["spo2"] or 0.0) - extra / 14
                values["rr"] = (values["rr"] or 0.0) + extra / 7
            values["spo2"] = min(100.0, values["spo2"] or 0.0)
            rounded = {k: (round(v, 1) if k == "temp" else round(v)) for k, v in values.items() if v is not None}
            out.append((pid, encode_vitals(pid, now_ms, dict(rounded), device_id=f"bed-{pid[1:]}")))
        self._t += 1
        return out


async def publish(bootstrap: str, topic: str, sim: WardSimulator, *, rate: float = 1.0, duration: float | None = None) -> int:
    """Send ticks to ``topic`` every ``1/rate`` seconds until ``duration`` elapses
    (forever if None). Returns the number of messages sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        while duration is None or time.monotonic() - started < duration:
            tick_start = time.monotonic()
            for pid, value in sim.tick(int(time.time() * 1000)):
                await producer.send(topic, value=value, key=pid.encode())
                sent += 1
            await producer.flush()
            await asyncio.sleep(max(0.0, 1.0 / rate - (time.monotonic() - tick_start)))
    finally:
        await producer.stop()
    return sent
