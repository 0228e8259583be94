"""Bad input never stops the pipeline (issue 6.4), on real Apache Kafka and PostgreSQL.

Hypothesis generates over 10,000 messages, derandomized so every run sends the same
bytes: valid vitals JSON, ECG chunks and FHIR Observations and Bundles, and
mutations of them (bit flips, truncation, fields deleted or given the wrong type,
impossible values, unknown schema and layout versions, corrupted headers with a
recomputed CRC, out-of-order sequences and timestamps), random bytes and random
JSON, empty and null values, and payloads beyond each topic's size limit. One worker
reads them all. Then every message is accounted for by its (topic, partition,
offset): either it is in the store (one ``VitalsObserved`` per reading of a vitals
or FHIR message, a waveform row per ECG chunk) or it is in the dead-letter topic,
exactly once, with its bytes and a reason; never both, never neither. The fates
are also predicted with the decoders and pipelines themselves (pure functions), and
the worker must still be the same process at the end.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import math
import struct
import sys
import time
import warnings
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import providers
from hypothesis.internal.constants_ast import Constants

from streams.dead_letter import PART_BYTES, DeadLetterAssembler, decode_dead_letter
from streams.ecg_codec import MAX_SAMPLES, decode_ecg_chunk
from streams.ecg_pipeline import EcgPatient, process_chunk
from streams.fhir import decode_fhir
from streams.loop_delay import PROBE_INTERVAL_S
from streams.topics import TopicNames
from streams.vitals_codec import VITAL_RANGES, Rejected, Vitals, decode_vitals
from streams.vitals_pipeline import SourceRef
from streams.metrics import parse
from tests.integration.pipeline_helpers import (
    create_topics,
    http_get,
    metrics_port,
    migrate,
    start_worker,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

PARTITIONS = 4
PATIENTS = [f"z{i:02d}" for i in range(16)]
T0_MS = 1_764_122_400_000
EXAMPLES = {"vitals": 1000, "ecg": 800, "fhir": 900}
"""Hypothesis examples per topic, of `PER_EXAMPLE` messages each: over 10,000 messages."""
PER_EXAMPLE = 4

Json = Any
Message = tuple[bytes | None, bytes | None]  # (key, value)


# --- random JSON and byte-level mutations -------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
# Values that are wrong for a field of any type: other types, non-finite and huge numbers, odd strings.
odd_values = st.sampled_from([None, True, False, 0, -1, 1.5, 1e300, float("nan"), float("inf"), -float("inf"),
                              10**30, "", "82", "NaN", "z 01", "é", "\n", [], [82], {}, {"value": 82}])


@st.composite
def json_edits(draw: st.DrawFn) -> list[tuple[str, int, Json]]:
    """1-3 edits at random places of a document: (operation, place, new value)."""
    ops = st.sampled_from(["delete", "replace", "odd", "stringify", "add"])
    return draw(st.lists(st.tuples(ops, st.integers(0, 10**6), json_values | odd_values), min_size=1, max_size=3))


def apply_edits(doc: Json, edits: list[tuple[str, int, Json]]) -> Json:
    for op, where, drawn in edits:
        value = copy.deepcopy(drawn)  # a drawn value may come back again: never alias it
        places = _places(doc)
        if not places:
            return value
        container, key = places[where % len(places)]
        if op == "delete":
            del container[key]
        elif op == "stringify":
            container[key] = str(container[key])
        elif op == "add" and isinstance(container, dict):
            container[f"x{where % 97}"] = value
        else:
            container[key] = value
    return doc


def _places(doc: Json) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        out.append((doc, key))
        out += _places(value)
    return out


byte_edits = st.tuples(st.sampled_from(["flip", "truncate", "splice"]),
                       st.lists(st.integers(0, 10**6), min_size=1, max_size=8), st.binary(max_size=16))


def apply_byte_edit(raw: bytes, edit: tuple[str, list[int], bytes]) -> bytes:
    op, positions, junk = edit
    data = bytearray(raw)
    if not data:
        return bytes(junk)
    if op == "truncate":
        return bytes(data[: positions[0] % len(data)])
    if op == "splice":
        at = positions[0] % len(data)
        return bytes(data[:at] + junk + data[at:])
    for p in positions:  # flip one bit per position
        data[(p // 8) % len(data)] ^= 1 << (p % 8)
    return bytes(data)


def oversized(limit: int, extra: int, head: bytes) -> bytes:
    """A payload just past ``limit``: valid-looking content padded with JSON whitespace."""
    if head.startswith(b"{"):
        return head[:-1] + b" " * (limit + extra - len(head) + 1) + b"}"
    return head + bytes(limit + extra - len(head) + 1)


# --- per-topic generators ----------------------------------------------------------------

def weighted(**weights: int) -> list[str]:
    """A list to draw kinds from, each repeated by its weight (out of about 100)."""
    return [kind for kind, weight in weights.items() for _ in range(weight)]


VITALS_KINDS = weighted(valid=36, wrong_key=2, edited=22, impossible=5, bytes_edit=12, random_bytes=4, random_text=4,
                        random_json=4, duplicate_key=2, deep=2, oversized=1, empty=1, null=1)
ECG_KINDS = weighted(valid=43, wrong_key=2, header=20, bytes_edit=15, extreme=5, random_bytes=4, magic_then_junk=4, oversized=1,
                     empty=1, null=1)
FHIR_KINDS = weighted(valid=26, wrong_key=2, bundle=12, edited=28, impossible=4, bytes_edit=12, mixed_bundle=3, huge_bundle=1,
                      random_bytes=3, random_json=3, oversized=1, empty=1, null=1)
TIME_MODES = ["next"] * 8 + ["same", "back"]
SEQUENCE_MODES = ["next"] * 10 + ["gap", "repeat", "back", "rate_change"]
HEADER_EDITS: list[tuple[str, Any]] = [
    ("version", 0), ("version", 2), ("version", 255), ("fmt", 0), ("fmt", 3), ("fmt", 2), ("rate", 0), ("rate", 124),
    ("rate", 1001), ("rate", 65535), ("lead", 0), ("lead", 14), ("lead", 200), ("first_us", 0), ("first_us", -1),
    ("first_us", 2**62), ("scale", 0.0), ("scale", -1.0), ("scale", math.nan), ("scale", math.inf),
    ("patient", b""), ("patient", b"z" * 65), ("patient", "zé".encode()), ("patient", b"z 1"), ("patient", b"\xff"),
    ("device", b""), ("device", b"mon/1"), ("count", "more"), ("count", "less"), ("count", "zero"), ("count", "max"),
]
keys = st.none() | st.binary(max_size=12)
Draw = Callable[[st.SearchStrategy[Any]], Any]


def impossible(name: str, draw: Draw) -> float:
    """A value just or far outside the possible range of vital ``name``."""
    lo, hi = VITAL_RANGES[name]
    value: float = draw(st.sampled_from([lo - 0.1, hi + 0.1, lo - 1000, hi * 10, -1e9, 1e12]))
    return value


@dataclass
class Clocks:
    """Device clocks per patient and topic, so valid messages mostly arrive in time order."""

    ms: dict[str, int] = field(default_factory=dict)

    def at(self, key: str, mode: str, step: int) -> int:
        last = self.ms.get(key, 0)
        if mode == "next" or key not in self.ms:
            self.ms[key] = last + step
            return T0_MS + self.ms[key]
        return T0_MS + (last if mode == "same" else max(0, last - step))


@dataclass
class EcgStream:
    fs: int
    next_sequence: int = 0


def junk(draw: Draw, kind: str) -> Message | None:
    """The kinds every topic gets alike (random bytes, text or JSON, an empty or null
    value); None for any other kind."""
    if kind == "random_bytes":
        return draw(keys), draw(st.binary(max_size=300))
    if kind in ("empty", "null"):
        return draw(keys) or b"k", b"" if kind == "empty" else None  # Kafka needs a key or a value
    if kind == "random_text":
        return draw(keys), draw(st.text(max_size=200)).encode()
    if kind == "random_json":
        return draw(keys), json.dumps(draw(json_values)).encode()
    return None


def wrong_key(draw: Draw, pid: str) -> bytes | None:
    """A key other than the patient id inside a valid message: none, another patient's,
    or the id with a byte more (each a ``key_mismatch``)."""
    other = PATIENTS[(PATIENTS.index(pid) + 1) % len(PATIENTS)]
    choice: bytes | None = draw(st.sampled_from([None, other.encode(), pid.encode() + b" "]))
    return choice


class Renderer:
    """Draws one message per call. Keeps per-patient clocks and ECG sequence numbers so
    that most "valid" messages are acceptable in order; the rest exercise the stale
    checks. Draws only what the chosen kind needs: Hypothesis is fast that way."""

    def __init__(self) -> None:
        self.clocks = Clocks()
        self.ecg: dict[tuple[str, int], EcgStream] = {}

    def vitals(self, draw: Draw) -> Message:
        kind = draw(st.sampled_from(VITALS_KINDS))
        if (message := junk(draw, kind)) is not None:
            return message
        if kind == "deep":
            depth = draw(st.integers(1000, 6000))
            return None, b"[" * depth + b"]" * depth
        patient = draw(st.integers(0, len(PATIENTS) - 1))
        pid = PATIENTS[patient]
        version = draw(st.sampled_from([1, 2, 2]))
        doc: dict[str, Json] = {"schema_version": version, "patient_id": pid,
                                "ts": self.clocks.at(f"v/{pid}", draw(st.sampled_from(TIME_MODES)),
                                                     draw(st.integers(1, 5000)))}
        if draw(st.booleans()):
            doc["device_id"] = f"bed-{pid}"
            if version == 2:
                doc |= {"oxygen": patient % 3 == 0, "acvpu": "ACVPU"[patient % 5]}
        for name, frac in draw(st.dictionaries(st.sampled_from(list(VITAL_RANGES)), st.floats(0, 1),
                                               max_size=6)).items():
            lo, hi = VITAL_RANGES[name]
            doc[name] = round(lo + frac * (hi - lo), 1)
        if kind == "edited":
            doc = apply_edits(doc, draw(json_edits()))
        elif kind == "impossible":
            name = draw(st.sampled_from(list(VITAL_RANGES)))
            doc[name] = impossible(name, draw)
        raw = json.dumps(doc).encode()
        if kind == "bytes_edit":
            raw = apply_byte_edit(raw, draw(byte_edits))
        elif kind == "duplicate_key":
            raw = raw[:-1] + f', "hr": {draw(st.integers(0, 350))}}}'.encode()
        elif kind == "oversized":
            limit = draw(st.sampled_from([64 * 1024, 64 * 1024, PART_BYTES]))
            raw = oversized(limit, draw(st.integers(0, 5000)), raw)
        return wrong_key(draw, pid) if kind == "wrong_key" else pid.encode(), raw

    def ecg_chunk(self, draw: Draw) -> Message:
        kind = draw(st.sampled_from(ECG_KINDS))
        if (message := junk(draw, kind)) is not None:
            return message
        if kind == "magic_then_junk":
            return draw(keys), b"VECG" + draw(st.binary(max_size=300))
        pid = PATIENTS[draw(st.integers(0, len(PATIENTS) - 1))]
        lead = draw(st.sampled_from([2, 2, 2, 7]))  # II, V1
        stream = self.ecg.setdefault((pid, lead), EcgStream(draw(st.sampled_from([125, 250, 500]))))
        mode = draw(st.sampled_from(SEQUENCE_MODES))
        sequence = {"next": stream.next_sequence, "rate_change": stream.next_sequence,
                    "gap": stream.next_sequence + draw(st.integers(1, 5)),
                    "repeat": max(0, stream.next_sequence - 1),  # a duplicate
                    "back": max(0, stream.next_sequence - draw(st.integers(2, 6)))}[mode]  # a late arrival
        fs = stream.fs if mode != "rate_change" else (250 if stream.fs != 250 else 500)
        n = draw(st.integers(1, 400))
        fmt = draw(st.sampled_from([1, 1, 2]))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        if kind == "extreme":  # full-scale and float32-limit samples: the DSP must not fall over
            samples = (rng.choice([-3e38, 3e38, 0.0], n).astype("<f4").tobytes() if fmt == 2
                       else rng.choice([-32768, 32767], n).astype("<i2").tobytes())
            scale = 1.0 if fmt == 2 else 1e6
        else:
            wave = np.sin(np.arange(n) * 2 * math.pi * 1.2 / fs) + rng.normal(0, 0.05, n)
            samples = wave.astype("<f4").tobytes() if fmt == 2 else np.round(wave / 0.005).astype("<i2").tobytes()
            scale = 1.0 if fmt == 2 else 0.005
        # Chunk times step 10 s per sequence number: every accepted chunk of a lead has
        # its own start (the waveform table's key), however long it is.
        fields: dict[str, Any] = {"fmt": fmt, "rate": fs, "lead": lead, "sequence": sequence,
                                  "first_us": (T0_MS + sequence * 10_000) * 1000, "count": n, "scale": scale,
                                  "patient": pid.encode(), "device": f"mon-{pid}".encode(), "samples": samples}
        if mode in ("next", "gap") and kind in ("valid", "extreme"):
            stream.next_sequence = sequence + 1
        if kind == "header":
            name, value = draw(st.sampled_from(HEADER_EDITS))
            fields[name] = value
            if name == "fmt" and value == 2 and fmt == 1:  # float32 samples that are not finite
                fields["samples"] = np.full(n // 2 or 1, np.nan, "<f4").tobytes()
                fields["count"] = n // 2 or 1
            elif name == "count":
                fields["count"] = {"more": n + 1, "less": n - 1, "zero": 0, "max": MAX_SAMPLES + 1}[value]
                if value == "zero":
                    fields["samples"] = b""
        raw = pack_ecg(**fields)
        if kind == "bytes_edit":
            raw = apply_byte_edit(raw, draw(byte_edits))
        elif kind == "oversized":  # some near the broker's 1-MB limit: dead-lettered in 4 slices
            raw = oversized(256 * 1024, draw(st.integers(0, 5000) | st.just(600_000)), raw)
        return wrong_key(draw, pid) if kind == "wrong_key" else pid.encode(), raw

    def fhir(self, draw: Draw) -> Message:
        kind = draw(st.sampled_from(FHIR_KINDS))
        if (message := junk(draw, kind)) is not None:
            return message
        patient = draw(st.integers(0, len(PATIENTS) - 1))
        step, zone, device = draw(st.integers(1, 5000)), draw(st.sampled_from([0, 0, 2, -5])), draw(st.booleans())
        vital = st.tuples(st.integers(0, len(VITAL_CODES) - 1), st.floats(0, 1))

        def obs(p: int, v: tuple[int, float], mode: str) -> dict[str, Json]:
            pid = PATIENTS[p % len(PATIENTS)]
            at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=self.clocks.at(f"f/{pid}", mode, step))
            return observation(pid, *v, at, zone, device)

        doc: Json
        if kind in ("bundle", "mixed_bundle", "huge_bundle"):
            entries = draw(st.lists(vital, min_size=1, max_size=4))
            count = 501 if kind == "huge_bundle" else len(entries)
            doc = {"resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": obs(patient + (i if kind == "mixed_bundle" else 0), entries[i % len(entries)], "next")}
                for i in range(count)]}
        else:
            doc = obs(patient, draw(vital), draw(st.sampled_from(TIME_MODES)))
        if kind == "edited":
            doc = apply_edits(doc, draw(json_edits()))
        elif kind == "impossible":
            quantity = doc["component"][0] if "component" in doc else doc
            quantity["valueQuantity"]["value"] = impossible("sbp" if "component" in doc else "hr", draw)
        raw = json.dumps(doc).encode()
        if kind == "bytes_edit":
            raw = apply_byte_edit(raw, draw(byte_edits))
        elif kind == "oversized":
            raw = oversized(256 * 1024, draw(st.integers(0, 5000)), raw)
        pid = PATIENTS[patient]
        return wrong_key(draw, pid) if kind == "wrong_key" else pid.encode(), raw


VITAL_CODES = [("8867-4", "hr", "/min"), ("2708-6", "spo2", "%"), ("59408-5", "spo2", "%"),
               ("9279-1", "rr", "/min"), ("8310-5", "temp", "Cel"), ("8310-5", "temp", "[degF]"),
               ("85354-9", "sbp", "mm[Hg]")]


def observation(patient: str, vital: int, frac: float, at: datetime, zone: int, device: bool) -> dict[str, Json]:
    """A valid vital-signs Observation (``vital`` indexes `VITAL_CODES`, ``frac`` places
    the value in its possible range), its time written in a ``zone`` hours offset."""
    loinc, name, unit = VITAL_CODES[vital]
    lo, hi = VITAL_RANGES[name]
    value = round(lo + frac * (hi - lo), 1)
    if unit == "[degF]":
        value = round(value * 9 / 5 + 32, 1)
    stamp = (at + timedelta(hours=zone)).strftime("%Y-%m-%dT%H:%M:%S.%f") + (
        "Z" if zone == 0 else f"{'+' if zone > 0 else '-'}{abs(zone):02d}:00")

    def quantity(v: float) -> dict[str, Json]:
        return {"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}

    def coded(code: str, system: str = "http://loinc.org") -> dict[str, Json]:
        return {"coding": [{"system": system, "code": code}]}

    doc: dict[str, Json] = {
        "resourceType": "Observation", "status": "final",
        "category": [coded("vital-signs", "http://terminology.hl7.org/CodeSystem/observation-category")],
        "code": coded(loinc), "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": stamp,
    }
    if device:
        doc["device"] = {"reference": f"Device/mon-{patient}"}
    if loinc == "85354-9":
        doc["component"] = [{"code": coded("8480-6"), "valueQuantity": quantity(value)},
                            {"code": coded("8462-4"), "valueQuantity": quantity(round(value * 0.6, 1))}]
    else:
        doc["valueQuantity"] = quantity(value)
    return doc


def pack_ecg(*, fmt: int, rate: int, lead: int, sequence: int, first_us: int, count: int, scale: float,
             patient: bytes, device: bytes, samples: bytes, version: int = 1) -> bytes:
    """ECG wire bytes with any header field set to anything, and a valid CRC over them."""
    body = (struct.pack("<4sBBHBQqIf", b"VECG", version, fmt % 256, rate % 65536, lead % 256, sequence % 2**64,
                        first_us, count % 2**32, scale)
            + bytes([len(patient)]) + patient + bytes([len(device)]) + device + samples)
    return body + struct.pack("<I", zlib.crc32(body))


def generate(render: Callable[[Draw], Message], examples: int) -> list[Message]:
    """About ``examples`` x `PER_EXAMPLE` messages from ``render``, derandomized: the same
    bytes on every run. Several messages per example halve Hypothesis's overhead."""
    out: list[Message] = []

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        for _ in range(PER_EXAMPLE):
            out.append(render(data.draw))

    # Hypothesis mixes constants found in the source of every loaded local module into
    # its draws; they change whenever the tree does. Without them the same bytes come
    # out of every run.
    with mock.patch.object(providers, "_get_local_constants", Constants):
        draw()
    return out


# --- prediction: the worker's decisions, made by the same pure functions -------------------

@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int = -1


def partition_for(topic: str, value: bytes | None, key: bytes | None) -> int:
    """The partition of the patient the worker will key its state by, so each patient's
    state lives in one partition (as the contract's "key = patient id" guarantees)."""
    pid: str | None = None
    try:
        if topic == "vitals":
            pid = decode_vitals(value).patient_id
        elif topic == "ecg":
            pid = decode_ecg_chunk(value).patient_id
        else:
            pid = decode_fhir(value)[0].patient_id
    except Rejected:
        pass
    basis = pid.encode() if pid is not None else (key or b"") + (value or b"")[:64]
    return zlib.crc32(basis) % PARTITIONS


def predict(messages: list[Sent], topics: TopicNames) -> dict[tuple[str, int, int], tuple[str, int | str]]:
    """(topic, partition, offset) -> ("stored", readings or chunks) or ("dead", reason)."""
    fates: dict[tuple[str, int, int], tuple[str, int | str]] = {}
    last_ms: dict[str, int] = {}
    ecg_states: dict[str, EcgPatient] = {}
    for m in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
        where = (m.topic, m.partition, m.offset)
        try:
            if m.topic == topics.ecg:
                chunk = decode_ecg_chunk(m.value)
                if m.key != chunk.patient_id.encode():
                    raise Rejected("key_mismatch", "")
                key = chunk.patient_id
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # extreme samples overflow float math on purpose
                    ecg_states[key], _ = process_chunk(ecg_states.get(key), chunk, SourceRef(*where))
                fates[where] = ("stored", 1)
                continue
            readings: list[Vitals] = [decode_vitals(m.value)] if m.topic == topics.vitals else decode_fhir(m.value)
            if len({v.patient_id for v in readings}) > 1:
                raise Rejected("fhir_mixed_patients", "")
            if m.key != readings[0].patient_id.encode():
                raise Rejected("key_mismatch", "")
            key = f"{'device' if m.topic == topics.vitals else 'fhir'}/{readings[0].patient_id}"
            last = last_ms.get(key, -1)
            for v in readings:
                ts_ms = round(v.occurred_at.timestamp() * 1000)
                if ts_ms <= last:
                    raise Rejected("stale_timestamp", "")
                last = ts_ms
            last_ms[key] = last
            fates[where] = ("stored", len(readings))
        except Rejected as r:
            fates[where] = ("dead", r.reason)
    return fates


# --- the test ---------------------------------------------------------------------------------

async def test_ten_thousand_bad_and_good_messages_are_each_accepted_or_dead_lettered(
    apache_kafka: str, database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = TopicNames(topic_prefix)
    renderer = Renderer()
    corpus = {
        topics.vitals: generate(renderer.vitals, EXAMPLES["vitals"]),
        topics.ecg: generate(renderer.ecg_chunk, EXAMPLES["ecg"]),
        topics.fhir: generate(renderer.fhir, EXAMPLES["fhir"]),
    }
    short = {topics.vitals: "vitals", topics.ecg: "ecg", topics.fhir: "fhir"}
    messages = [Sent(t, k, v, partition_for(short[t], v, k)) for t, msgs in corpus.items() for k, v in msgs]
    assert len(messages) >= 10_000
    sizes = Counter("over 256 KiB" if m.value is not None and len(m.value) > 256 * 1024 else
                    "over 64 KiB" if m.value is not None and len(m.value) > 64 * 1024 else "smaller" for m in messages)
    assert sizes["over 256 KiB"] >= 10 and sizes["over 64 KiB"] >= 10, sizes

    await create_topics(apache_kafka, {topics.vitals: PARTITIONS, topics.ecg: PARTITIONS, topics.fhir: PARTITIONS,
                                       topics.dead_letter: 1})
    await migrate(database_url)
    group = f"{topic_prefix}-fuzz"
    started = time.monotonic()
    worker = start_worker(apache_kafka, database_url, topic_prefix, tmp_path / "worker.log", group=group,
                          state_dir=tmp_path / "state", metrics_port=0)
    try:
        producer = AIOKafkaProducer(bootstrap_servers=apache_kafka, acks="all", enable_idempotence=True,
                                    linger_ms=20, max_request_size=1_048_576)
        await producer.start()
        try:
            pending = [await producer.send(m.topic, m.value, key=m.key, partition=m.partition) for m in messages]
            for m, meta in zip(messages, await asyncio.gather(*pending), strict=True):
                m.offset = meta.offset
        finally:
            await producer.stop()
        predicted = predict(messages, topics)

        ledger = Ledger(database_url, apache_kafka, topics)
        await ledger.start()
        try:
            await wait_until("every message accounted for", lambda: ledger.accounted(len(messages)), 600, worker,
                             interval=2.0)
            await asyncio.sleep(5.0)  # anything late (a second dead letter, a second row) shows up now
            await ledger.refresh()
        finally:
            await ledger.stop()
        assert worker.running(), worker.log_tail()
        port = await metrics_port(worker)
        scraped = [await http_get(port, path) for path in ("/metrics", "/healthz", "/readyz")]
        lifetime = time.monotonic() - started
    finally:
        worker.kill()  # the store is final; how the worker shuts down is not under test here
    log = worker.log_path.read_text(errors="replace")

    by_source = {(m.topic, m.partition, m.offset): m for m in messages}
    assert len(by_source) == len(messages)  # one offset per message: nothing was written twice
    # Exactly one fate per message.
    stored = set(ledger.observed) | set(ledger.waveforms)
    dead = set(ledger.letters)
    assert not dead - by_source.keys() and not stored - by_source.keys(), "a fate for a message never sent"
    both = stored & dead
    neither = by_source.keys() - stored - dead
    twice = {k: v for k, v in ledger.letters.items() if len(v) > 1}
    assert not both and not neither and not twice, (
        f"both {sorted(both)[:5]}, neither {sorted(neither)[:5]}, dead-lettered twice {list(twice.items())[:3]}")
    assert not dead & set(ledger.any_event), "a dead-lettered message left events in the store"
    # Stored in full: one VitalsObserved per reading, one waveform row per ECG chunk.
    actual = {k: ("dead", letters[0].reason) for k, letters in ledger.letters.items()}
    actual |= {k: ("stored", n) for k, n in ledger.observed.items()}
    actual |= {k: ("stored", n) for k, n in ledger.waveforms.items()}
    wrong = {k: (predicted[k], actual[k]) for k in by_source if predicted[k] != actual[k]}
    assert not wrong, f"{len(wrong)} fates differ from the decoders' (predicted, actual): {list(wrong.items())[:8]}"
    # Each dead letter carries the original bytes and key, and where they came from.
    for k, (letter,) in ledger.letters.items():
        m = by_source[k]
        assert letter.payload_size == (0 if m.value is None else len(m.value))
        assert letter.payload == m.value, k  # whole, even past PART_BYTES (in slices, put together)
        assert letter.source.key == m.key and letter.worker == group
    longest = max(letters[0].payload_size for letters in ledger.letters.values())
    assert longest > 3 * PART_BYTES, longest  # some came in 4 slices, and were put together
    # The worker counts every reason: one warning per dead letter, by reason.
    reasons = Counter(letters[0].reason for letters in ledger.letters.values())
    assert reasons["key_mismatch"] >= 50, reasons  # records keyed by anything but their patient id
    logged = Counter(line.split(": ", 1)[1].split(" (", 1)[0] for line in log.splitlines()
                     if "dead-lettered " in line and ": " in line)
    assert logged == reasons, (logged - reasons, reasons - logged)
    assert "Traceback" not in log and "Crashed" not in log, worker.log_tail()

    # Its /metrics tell the same story: every message taken once, the dead letters by
    # reason, the events and waveform rows the store holds; nothing left on the broker.
    (status, text), healthz, readyz = scraped
    assert status == 200 and healthz == (200, "ok\n") and readyz == (200, "ready\n"), (status, healthz, readyz)
    figures = parse(text)

    def by(name: str, label: str) -> dict[str, float]:
        return {dict(labels)[label]: value for labels, value in figures[name].items()}

    assert by("vigil_worker_messages_total", "topic") == Counter(m.topic for m in messages)
    assert by("vigil_worker_dead_letters_total", "reason") == reasons
    assert figures["vigil_worker_events_appended_total"][frozenset()] == sum(ledger.any_event.values())
    assert figures["vigil_worker_waveforms_appended_total"][frozenset()] == sum(ledger.waveforms.values())
    assert figures["vigil_worker_ready"][frozenset()] == 1
    with psycopg.connect(database_url) as conn:
        (alarms,) = conn.execute("SELECT count(*) FROM events WHERE event_type IN "
                                 "('AlertRaised', 'AlertEscalated', 'AlertResolved')").fetchone() or (0,)
    timed = figures["vigil_worker_alarm_latency_seconds_count"][frozenset()]
    assert timed == alarms and figures["vigil_worker_alarm_latency_seconds_bucket"][frozenset({("le", "+Inf")})] == alarms
    lag = figures["vigil_worker_input_lag_messages"]
    assert len(lag) == 3 * PARTITIONS and set(lag.values()) == {0}, lag
    assert min(by("vigil_worker_patient_states", "table").values()) > 0
    # The event loop's probe ran all along: a wake-up every 50 ms at most, and more
    # than one per 2 s of the worker's life, start-up included (a loose floor: a probe
    # that stopped, or a loop held for seconds on end, falls below it).
    probes = figures["vigil_worker_event_loop_delay_seconds_count"][frozenset()]
    assert lifetime / 2 < probes <= lifetime / PROBE_INTERVAL_S, (probes, lifetime)

    kinds = Counter(("stored" if f[0] == "stored" else "dead") + "/" + k[0].rsplit(".", 1)[1]
                    for k, f in actual.items())
    assert min(kinds.values()) >= 100 and len(kinds) == 6, kinds  # every topic has plenty of both
    digest = hashlib.sha256(b"".join(b"%d:%s" % (len(m.value or b""), m.value or b"") for m in messages)).hexdigest()
    print(f"{len(messages)} messages (corpus sha256 {digest[:16]}, {dict(sizes)}): {dict(sorted(kinds.items()))}; "
          f"{sum(ledger.observed.values())} VitalsObserved, {len(ledger.waveforms)} waveforms; "
          f"dead letters by reason: {dict(reasons.most_common())}", file=sys.stderr)


class Ledger:
    """What became of the messages: dead letters (read from the topic as they come) and
    the store's rows, each keyed by source (topic, partition, offset)."""

    def __init__(self, database_url: str, bootstrap: str, topics: TopicNames) -> None:
        self._url = database_url
        self._consumer = AIOKafkaConsumer(topics.dead_letter, bootstrap_servers=bootstrap,
                                          auto_offset_reset="earliest", enable_auto_commit=False,
                                          max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=8 * 1024 * 1024)
        self._assembler = DeadLetterAssembler()
        self.letters: defaultdict[tuple[str, int, int], list[Any]] = defaultdict(list)
        """Whole dead-lettered messages by source (an oversized one is sent in slices)."""
        self.observed: dict[tuple[str, int, int], int] = {}
        self.waveforms: dict[tuple[str, int, int], int] = {}
        self.any_event: dict[tuple[str, int, int], int] = {}

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def refresh(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                letter = self._assembler.add(decode_dead_letter(record.value))
                if letter is not None:
                    self.letters[(letter.source.topic, letter.source.partition, letter.source.offset)].append(letter)
        source = "{0}->'source'->>'topic', ({0}->'source'->>'partition')::int, ({0}->'source'->>'offset')::bigint"
        with psycopg.connect(self._url) as conn:
            def counts(sql: str) -> dict[tuple[str, int, int], int]:
                return {(t, p, o): n for t, p, o, n in conn.execute(sql).fetchall()}

            events = source.format("metadata")
            self.observed = counts(f"SELECT {events}, count(*) FROM events WHERE event_type = 'VitalsObserved' "
                                   f"GROUP BY 1, 2, 3")
            self.any_event = counts(f"SELECT {events}, count(*) FROM events GROUP BY 1, 2, 3")
            waves = "source->>'topic', (source->>'partition')::int, (source->>'offset')::bigint"
            self.waveforms = counts(f"SELECT {waves}, count(*) FROM waveforms GROUP BY 1, 2, 3")

    async def accounted(self, sent: int) -> bool:
        await self.refresh()
        return len(set(self.letters) | set(self.observed) | set(self.waveforms)) >= sent
