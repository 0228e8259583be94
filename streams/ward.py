"""A simulated ward on the wire: per patient, 1-second ECG chunks (binary, int16)
and 1 Hz vitals (JSON v2), deterministic for a seed.

`SimulatedWard.second(t, start_us)` is pure: the messages for second ``t`` of the
run as ``(topic, key, value)``, the same whenever it is asked, so a test can
publish a run, and a benchmark can regenerate it, byte for byte. `publish_ward`
sends seconds in real time (or as fast as the broker takes them).

Real monitors are not synchronised, so each bed has a fixed *phase* within the
second (whole milliseconds, drawn from the seed and the patient id): second ``t``
of a bed is stamped, and in real time sent, at ``start_us + t s + phase``. A ward
of N beds is then a steady stream of about 2N messages a second rather than a
burst of 2N at the top of every second, in which the last bed's messages would
wait for everyone else's. `SimulatedWard.timed_second` gives each message's send
time; `second` lists the messages in that order; `timed_messages` makes them bed by
bed, as they fall due. `render` synthesises seconds ahead (the ECG model and the
vitals scripts), so that a benchmark's publisher only encodes and sends while the
pipeline is measured: the bytes are the same either way.

Patients follow `streams.scenarios` scripts (round-robin over ``scenarios``) for
their vitals, with ECG from `streams.ecg_synth` whose mean rate follows the
script's heart-rate trend (a bradycardia patient's ECG slows to 36 bpm with its
vitals); ``p0001`` is the demo's deteriorating patient when ``sepsis`` is listed.
``ecg_config`` sets what every bed's ECG adds to sinus rhythm (HRV, ectopics, VT,
AF, asystole, noise, leads off); the rate is always the bed's own.

Samples go on the wire as int16 counts of `ECG_SCALE_MV` (`ecg_counts`). A sample
the device does not have (NaN: a lead off, a gap in a replayed record) is sent as
`LEADS_OFF_COUNT`, the negative rail, as a monitor's open input reads: the chunk
format has no missing value (float32 must be finite), and the worker's quality
check (`processors.sqi`) labels a window parked far from zero ``leads_off``. Real
samples clip one count short of it, so a rail value always means "no signal".
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streams.ecg_codec import EcgChunk, Lead, encode_ecg_chunk
from streams.ecg_synth import EcgConfig, SyntheticEcg
from streams.scenarios import SCRIPTS, ScenarioName, ScenarioPatient, codec_values
from streams.topics import TopicNames
from streams.vitals_codec import encode_vitals

__all__ = ["DEFAULT_SCENARIOS", "ECG_SCALE_MV", "LEADS_OFF_COUNT", "SECOND_LEAD_GAIN", "SimulatedWard", "TimedMessage", "bed_phase_us",
           "ecg_counts", "open_producer", "publish_ward", "send_second"]

ECG_SCALE_MV = 0.005
"""mV per int16 count on the wire (5 uV, a typical bedside ADC step)."""
LEADS_OFF_COUNT = -32768
"""The count sent for a sample the device does not have (the negative rail)."""
SECOND_LEAD_GAIN = -0.6
"""Lead V1 of a two-lead monitor, as a multiple of lead II (in V1 the QRS points down)."""
DEFAULT_SCENARIOS: tuple[ScenarioName, ...] = ("sepsis", "stable", "stable", "hypoxia", "stable", "bradycardia",
                                               "stable", "stable")
"""The demo ward's mix, dealt to beds round-robin."""
_HR_TREND_STEP_S = 5.0
"""Spacing of the points an ECG's rate trend follows a script's smoothstep with."""


def ecg_counts(samples_mv: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Millivolts to wire counts: rounded, clipped to +-32767, NaN to `LEADS_OFF_COUNT`."""
    mv = np.asarray(samples_mv, dtype=np.float64)
    counts = np.clip(np.round(mv / ECG_SCALE_MV), -32767, 32767)
    out: npt.NDArray[np.int16] = np.where(np.isnan(mv), LEADS_OFF_COUNT, counts).astype(np.int16)
    return out

TimedMessage = tuple[int, str, bytes, bytes]
"""``(send_at_us, topic, key, value)``: when a real-time publisher sends it (µs since the epoch)."""


def bed_phase_us(seed: int, patient_id: str) -> int:
    """A bed's fixed offset within each second, in µs: a whole number of milliseconds
    in [0, 1 s), from a hash of the seed and the patient id (the same in every process,
    unlike Python's ``hash``)."""
    digest = hashlib.sha256(f"vigil-ward-phase:{seed}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 1000 * 1000


@dataclass(frozen=True, slots=True)
class _Bed:
    patient_id: str
    scenario: ScenarioPatient
    ecg: SyntheticEcg | None
    phase_us: int


@dataclass(frozen=True, slots=True)
class _BedSecond:
    """One bed's second, synthesised but not yet stamped with its device time."""

    values: dict[str, float | None]
    oxygen: bool
    acvpu: str
    counts: npt.NDArray[np.int16] | None
    second_lead: npt.NDArray[np.int16] | None = None


def _hr_trend(scenario: ScenarioPatient, hr0: float) -> tuple[tuple[float, float], ...]:
    """The script's heart-rate course from ``hr0`` (the bed's first reading) to its
    target, as points every `_HR_TREND_STEP_S` over the ramp; empty if the script
    leaves the heart rate alone."""
    script = scenario.script
    if "hr" not in script.targets or not math.isfinite(script.onset_s):
        return ()
    target = script.targets["hr"]
    n = max(math.ceil(script.ramp_s / _HR_TREND_STEP_S), 1)
    times = [script.onset_s + script.ramp_s * k / n for k in range(n + 1)]
    return tuple((t, hr0 + (target - hr0) * scenario.progress(t)) for t in times)


class SimulatedWard:
    def __init__(self, patients: int, *, seed: int = 42, topics: TopicNames, ecg: bool = True, ecg_hz: int = 250,
                 scenarios: Sequence[ScenarioName] = DEFAULT_SCENARIOS, onset_s: float | None = None,
                 ramp_s: float | None = None, ecg_config: EcgConfig | None = None, leads: int = 1) -> None:
        """``onset_s`` / ``ramp_s`` override the scripts' timing (benchmarks compress
        deterioration into a short run). ``ecg_config`` is every bed's ECG but for its
        rate (``sampling_rate``, ``hr_bpm`` and ``hr_trend`` come from ``ecg_hz`` and
        the bed's script). With ``leads`` 2 each monitor also sends lead V1: the same
        heart, inverted at `SECOND_LEAD_GAIN` of lead II's amplitude (noise and leads
        off included), each second's V1 chunk right after its lead II chunk. Raises
        `ValueError` for a setting a bed cannot take (HRV over 20 % of its rate)."""
        if patients < 1:
            raise ValueError(f"patients must be >= 1, got {patients}")
        if leads not in (1, 2):
            raise ValueError(f"leads must be 1 or 2, got {leads}")
        if not scenarios or any(name not in SCRIPTS for name in scenarios):
            raise ValueError(f"scenarios must name some of {', '.join(SCRIPTS)}, got {list(scenarios)}")
        template = ecg_config or EcgConfig()
        self.topics = topics
        self.ecg_hz = ecg_hz
        self.leads = leads
        self._beds: list[_Bed] = []
        for i in range(patients):
            pid = f"p{i + 1:04d}"
            scenario = ScenarioPatient(scenarios[i % len(scenarios)], seed=seed, patient=pid, onset_s=onset_s,
                                       ramp_s=ramp_s)
            synth = None
            if ecg:
                hr = float(scenario.vitals(0)["hr"])
                config = dataclasses.replace(template, sampling_rate=ecg_hz, hr_bpm=hr, hr_trend=_hr_trend(scenario, hr))
                synth = SyntheticEcg(config, seed=seed, patient=pid)
            self._beds.append(_Bed(pid, scenario, synth, bed_phase_us(seed, pid)))
        # Beds in the order they send within a second (ties: bed order).
        self._beds.sort(key=lambda b: b.phase_us)
        self._next_second = 0
        self._rendered: dict[int, list[_BedSecond]] = {}
        """Seconds synthesised ahead by `render` (the ones after ``_next_second - 1``),
        each bed's in bed order, until sent."""

    @property
    def patient_ids(self) -> list[str]:
        return sorted(b.patient_id for b in self._beds)

    @property
    def ecg_configs(self) -> dict[str, EcgConfig]:
        """Each bed's ECG settings, rate trend included (none with ``ecg=False``)."""
        return {b.patient_id: b.ecg.config for b in sorted(self._beds, key=lambda b: b.patient_id) if b.ecg}

    @property
    def phases_us(self) -> dict[str, int]:
        """Each bed's offset within the second, µs."""
        return {b.patient_id: b.phase_us for b in sorted(self._beds, key=lambda b: b.patient_id)}

    def second(self, t: int, start_us: int) -> list[tuple[str, bytes, bytes]]:
        """Messages for second ``t`` (0, 1, 2, ... in order: the ECG generators stream),
        in the order a real-time publisher sends them (see `timed_second`)."""
        return [(topic, key, value) for _, topic, key, value in self.timed_second(t, start_us)]

    def timed_second(self, t: int, start_us: int) -> list[TimedMessage]:
        """Messages for second ``t`` with their send times, in send order: each bed's
        vitals then ECG chunk at ``start_us + t s + phase``. That is the vitals' device
        time (``ts``); the chunk holds the second just past (its first sample is 1 s
        earlier), as a monitor sends a chunk once it has all of it."""
        return list(self.timed_messages(t, start_us))

    def timed_messages(self, t: int, start_us: int) -> Iterator[TimedMessage]:
        """`timed_second`'s messages made lazily, bed by bed, as a real-time publisher
        wants them: each bed's just before it is due. Made all at once, a 1,000-bed
        second took the publisher 0.2-0.3 s, and the beds due in that time went out
        late, stamped with a device time that had already passed."""
        if t != self._next_second:
            raise ValueError(f"seconds must be asked in order: expected {self._next_second}, got {t}")
        self._next_second += 1
        return (message for bed, part in self._synthesised(t) for message in self._bed_second(bed, part, t, start_us))

    def render(self, seconds: int) -> None:
        """Synthesise the next ``seconds`` of every bed now: the ECG model and the
        vitals scripts, about 0.2 ms of CPU per bed-second, most of what a publisher
        spends (a 1,000-bed ward: 0.47 s of CPU per second sending as it synthesises,
        0.19 sending what was rendered; real devices do not run on the server).
        `timed_messages` then only stamps, encodes and yields them. Memory: about 1 KB
        per bed-second (tracemalloc), 80 MB for 80 s of 1,000 beds. Call it between
        seconds, once the last second's messages were all taken (the ECG generators
        stream, so a second made live must be finished before the next is rendered)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        for _ in range(seconds):
            t = self._next_second + len(self._rendered)
            self._rendered[t] = [self._synthesise(bed, t) for bed in self._beds]

    def _synthesise(self, bed: _Bed, t: int) -> _BedSecond:
        """Second ``t`` of ``bed`` before it is stamped: vitals and ECG counts. The ECG
        generators stream, so seconds are synthesised in order, once."""
        v = bed.scenario.vitals(t)
        counts = second = None
        if bed.ecg is not None:
            mv, _ = bed.ecg.next_chunk(self.ecg_hz)
            counts = ecg_counts(mv)
            if self.leads == 2:
                second = ecg_counts(mv * SECOND_LEAD_GAIN)
        return _BedSecond(dict(codec_values(v)), bool(v["oxygen"]), str(v["acvpu"]), counts, second)

    def _synthesised(self, t: int) -> Iterator[tuple[_Bed, _BedSecond]]:
        rendered = self._rendered.pop(t, None)
        if rendered is not None:
            return zip(self._beds, rendered, strict=True)
        return ((bed, self._synthesise(bed, t)) for bed in self._beds)

    def _bed_second(self, bed: _Bed, part: _BedSecond, t: int, start_us: int) -> list[TimedMessage]:
        now_us = start_us + t * 1_000_000 + bed.phase_us
        key = bed.patient_id.encode()
        vitals = encode_vitals(bed.patient_id, now_us // 1000, part.values, device_id=f"bed-{bed.patient_id[1:]}",
                               oxygen=part.oxygen, acvpu=part.acvpu)
        out: list[TimedMessage] = [(now_us, self.topics.vitals, key, vitals)]
        for lead, counts in ((Lead.II, part.counts), (Lead.V1, part.second_lead)):
            if counts is not None:
                chunk = EcgChunk(bed.patient_id, f"mon-{bed.patient_id[1:]}", lead, self.ecg_hz, t,
                                 now_us - 1_000_000, counts, ECG_SCALE_MV)
                out.append((now_us, self.topics.ecg, key, encode_ecg_chunk(chunk)))
        return out


class _Producer(Protocol):
    async def send(self, topic: str, value: bytes, key: bytes) -> Any: ...


async def send_second(producer: _Producer, messages: Iterable[TimedMessage], *, start_us: int,
                      began: float | None) -> int:
    """Send one second's `timed_messages`; returns how many. With ``began``
    (the ``time.monotonic()`` that corresponds to ``start_us``), each goes out at its
    send time: messages due within 2 ms of each other leave together, so a large
    ward costs the publisher a few hundred wake-ups a second, not one per message.
    Without it, all go out at once (as fast as the broker takes them)."""
    sent = 0
    for at_us, topic, key, value in messages:
        sent += 1
        if began is not None:
            delay = began + (at_us - start_us) / 1e6 - time.monotonic()
            if delay > 0.002:
                await asyncio.sleep(delay)
        await producer.send(topic, value=value, key=key)
    return sent


@asynccontextmanager
async def open_producer(bootstrap: str) -> AsyncIterator[Any]:
    """A started aiokafka producer, as the simulated devices use it; stopped on exit."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_request_size=1_048_576)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def publish_ward(bootstrap: str, ward: SimulatedWard, *, seconds: int | None = None, realtime: bool = True,
                       start_us: int | None = None) -> int:
    """Publish ``seconds`` of the ward (forever if None); returns messages sent."""
    sent = 0
    t = 0
    async with open_producer(bootstrap) as producer:
        start = time.time_ns() // 1000 if start_us is None else start_us
        # Device time start + t s + phase is sent at wall time began + t s + phase (or
        # at once, when not in real time).
        began = time.monotonic() if realtime else None
        while seconds is None or t < seconds:
            sent += await send_second(producer, ward.timed_messages(t, start), start_us=start, began=began)
            await producer.flush()
            t += 1
    return sent
