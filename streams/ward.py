"""A simulated ward on the wire: per patient, 1-second ECG chunks (binary, int16)
and 1 Hz vitals (JSON v2), deterministic for a seed.

`SimulatedWard.second(t, start_us)` is pure: the messages for second ``t`` of the
run as ``(topic, key, value)``, the same whenever it is asked, so a test can
publish a run, and a benchmark can regenerate it, byte for byte. `publish` sends
seconds in real time (or as fast as the broker takes them).

Patients follow `streams.scenarios` scripts (round-robin over ``scenarios``) for
their vitals, with ECG from `streams.ecg_synth` at the scenario's heart rate at
the start; ``p0001`` is the demo's deteriorating patient when ``sepsis`` is listed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streams.ecg_codec import EcgChunk, Lead, encode_ecg_chunk
from streams.ecg_synth import EcgConfig, SyntheticEcg
from streams.scenarios import ScenarioName, ScenarioPatient, codec_values
from streams.topics import TopicNames
from streams.vitals_codec import encode_vitals

__all__ = ["SimulatedWard", "publish_ward", "ECG_SCALE_MV"]

ECG_SCALE_MV = 0.005
"""mV per int16 count on the wire (5 uV, a typical bedside ADC step)."""


@dataclass(frozen=True, slots=True)
class _Bed:
    patient_id: str
    scenario: ScenarioPatient
    ecg: SyntheticEcg | None


class SimulatedWard:
    def __init__(self, patients: int, *, seed: int = 42, topics: TopicNames, ecg: bool = True, ecg_hz: int = 250,
                 scenarios: Sequence[ScenarioName] = ("sepsis", "stable", "stable", "hypoxia", "stable",
                                                       "bradycardia", "stable", "stable"),
                 onset_s: float | None = None, ramp_s: float | None = None) -> None:
        """``onset_s`` / ``ramp_s`` override the scripts' timing (benchmarks compress
        deterioration into a short run)."""
        if patients < 1:
            raise ValueError(f"patients must be >= 1, got {patients}")
        self.topics = topics
        self.ecg_hz = ecg_hz
        self._beds: list[_Bed] = []
        for i in range(patients):
            pid = f"p{i + 1:04d}"
            scenario = ScenarioPatient(scenarios[i % len(scenarios)], seed=seed, patient=pid, onset_s=onset_s,
                                       ramp_s=ramp_s)
            hr = float(scenario.vitals(0)["hr"])
            synth = SyntheticEcg(EcgConfig(sampling_rate=ecg_hz, hr_bpm=hr), seed=seed, patient=pid) if ecg else None
            self._beds.append(_Bed(pid, scenario, synth))
        self._next_second = 0

    @property
    def patient_ids(self) -> list[str]:
        return [b.patient_id for b in self._beds]

    def second(self, t: int, start_us: int) -> list[tuple[str, bytes, bytes]]:
        """Messages for second ``t`` (0, 1, 2, ... in order: the ECG generators stream)."""
        if t != self._next_second:
            raise ValueError(f"seconds must be asked in order: expected {self._next_second}, got {t}")
        self._next_second += 1
        now_us = start_us + t * 1_000_000
        out: list[tuple[str, bytes, bytes]] = []
        for bed in self._beds:
            key = bed.patient_id.encode()
            v = bed.scenario.vitals(t)
            vitals = encode_vitals(bed.patient_id, now_us // 1000, dict(codec_values(v)),
                                   device_id=f"bed-{bed.patient_id[1:]}", oxygen=bool(v["oxygen"]),
                                   acvpu=str(v["acvpu"]))
            out.append((self.topics.vitals, key, vitals))
            if bed.ecg is not None:
                mv, _ = bed.ecg.next_chunk(self.ecg_hz)
                counts = np.clip(np.nan_to_num(np.round(mv / ECG_SCALE_MV), nan=-32768), -32768, 32767)
                chunk = EcgChunk(bed.patient_id, f"mon-{bed.patient_id[1:]}", Lead.II, self.ecg_hz, t, now_us,
                                 counts.astype(np.int16), ECG_SCALE_MV)
                out.append((self.topics.ecg, key, encode_ecg_chunk(chunk)))
        return out


async def publish_ward(bootstrap: str, ward: SimulatedWard, *, seconds: int | None = None, realtime: bool = True,
                       start_us: int | None = None) -> int:
    """Publish ``seconds`` of the ward (forever if None); returns messages sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_request_size=1_048_576)
    await producer.start()
    start = time.time_ns() // 1000 if start_us is None else start_us
    began = time.monotonic()
    sent = 0
    t = 0
    try:
        while seconds is None or t < seconds:
            for topic, key, value in ward.second(t, start):
                await producer.send(topic, value=value, key=key)
                sent += 1
            await producer.flush()
            t += 1
            if realtime:
                await asyncio.sleep(max(0.0, began + t - time.monotonic()))
    finally:
        await producer.stop()
    return sent
