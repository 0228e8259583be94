"""A monitor that sends two leads of one patient, through the real worker (Apache Kafka,
PostgreSQL): both leads are analysed and stored, and the patient gets one set of ECG
alarms (`detectors.lead_fusion`), not one per lead."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from event_store.postgres import PostgresRecorder
from streams.ecg_codec import EcgChunk, Lead, encode_ecg_chunk
from streams.ecg_synth import EcgConfig, Rhythm, SyntheticEcg
from streams.topics import TopicNames
from tests.integration.test_vitals_slice import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

FS = 250
SECONDS = 40


def two_lead_chunks(start_us: int) -> list[EcgChunk]:
    """Patient pM: sinus rhythm, asystole from second 15; lead II and an inverted,
    smaller V1, chunk by chunk."""
    synth = SyntheticEcg(EcgConfig(sampling_rate=FS, hr_bpm=75, rhythm=Rhythm(asystole_at_s=15.0)), seed=4,
                         patient="pM")
    out = []
    for t in range(SECONDS):
        mv, _ = synth.next_chunk(FS)
        ii = np.round(np.nan_to_num(mv) / 0.005).astype(np.int16)
        v1 = np.round(ii * -0.6).astype(np.int16)
        at = start_us + t * 1_000_000
        out += [EcgChunk("pM", "mon-7", Lead.II, FS, t, at, ii, 0.005),
                EcgChunk("pM", "mon-7", Lead.V1, FS, t, at, v1, 0.005)]
    return out


async def test_two_leads_are_stored_and_alarm_once(apache_kafka: str, database_url: str, topic_prefix: str,
                                                   tmp_path: Path) -> None:
    topics = TopicNames(topic_prefix)
    store = await PostgresRecorder.connect(database_url)
    await store.migrate()
    worker = start_worker(apache_kafka, database_url, topic_prefix, False, tmp_path / "worker.log")
    producer = AIOKafkaProducer(bootstrap_servers=apache_kafka, acks="all")
    await producer.start()
    try:
        start_us = (time.time_ns() // 1000) - SECONDS * 1_000_000  # a recording of the last 40 s, sent at once
        for chunk in two_lead_chunks(start_us):
            await producer.send_and_wait(topics.ecg, encode_ecg_chunk(chunk), key=b"pM")
        deadline = time.monotonic() + 120
        while True:  # until every chunk's waveform row is in (a chunk's events are stored before it)
            with psycopg.connect(database_url) as conn:
                rows = dict(conn.execute("SELECT lead, count(*) FROM waveforms WHERE patient_id = 'pM' "
                                         "GROUP BY lead").fetchall())
            if sum(rows.values()) >= 2 * SECONDS or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        events = await store.read_stream("patient-pM")
    finally:
        await producer.stop()
        worker.stop()
        await store.close()
    assert "Traceback" not in worker.log_tail()
    assert rows == {"II": SECONDS, "V1": SECONDS}, worker.log_tail()  # full disclosure of both
    assert {e.payload["lead"] for e in events if e.event_type == "EcgAnalyzed"} == {"II", "V1"}  # each analysed
    raised = [e.payload for e in events if e.event_type == "AlertRaised"]
    # One alarm per condition for the patient, not one per lead (the flat line comes with
    # asystole on a clean line, on both leads at once).
    assert sorted(a["condition"] for a in raised) == ["asystole", "ecg_flat_line"], raised
