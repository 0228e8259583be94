"""``vigil dead-letters`` against a real broker (Apache Kafka and the demo's embedded one).

The topic is filled by hand with what a worker writes there (`encode_dead_letter`),
including an oversized message in slices, a repeat, a version-1 envelope, a record
that is no envelope and a message with a slice missing; the command must put the
slices together, show each message once with its bytes, and report the rest.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.dead_letter import DeadLetterSource, encode_dead_letter
from streams.topics import TopicNames
from vigil.cli import main

pytestmark = pytest.mark.integration

BIG = bytes(range(251)) * 2800  # 702,800 bytes: three slices
SMALL = b'{"schema_version": 1, "hr": "fast"}'


async def _fill(bootstrap: str, topic: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    vitals, ecg = f"{prefix}.vitals", f"{prefix}.ecg"
    small = encode_dead_letter("invalid_field", "hr must be a number", DeadLetterSource(vitals, 0, 7, 1_000, b"p1"),
                               SMALL, worker="w")
    big = encode_dead_letter("oversized", "702800 bytes", DeadLetterSource(ecg, 1, 3, None, b"p2"), BIG, worker="w")
    lost = encode_dead_letter("oversized", "another", DeadLetterSource(ecg, 1, 9, None, b"p2"), BIG, worker="w")
    version_1 = json.dumps({
        "schema_version": 1, "reason": "crc_mismatch", "detail": "bad crc",
        "source": {"topic": ecg, "partition": 0, "offset": 2, "timestamp_ms": None, "key_b64": None},
        "payload_b64": base64.b64encode(b"\x01\x02").decode(), "payload_size": 2, "payload_truncated": False,
        "worker": None}).encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=1_048_576, max_batch_size=64)
    await producer.start()
    try:
        # Partition 0: the small one, a slice of the big one, a repeat, junk, a lost message's
        # first slice; partition 1: the big one's other slices (read in any order), version 1.
        for value, partition in [(small[0], 0), (big[1], 0), (small[0], 0), (b"not an envelope", 0), (lost[0], 0),
                                 (big[0], 1), (big[2], 1), (version_1, 1)]:
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


def _use(monkeypatch: pytest.MonkeyPatch, bootstrap: str, prefix: str) -> None:
    monkeypatch.setenv("VIGIL_KAFKA_URL", f"kafka://{bootstrap}")
    monkeypatch.setenv("VIGIL_TOPIC_PREFIX", prefix)


def test_dead_letters_are_listed_whole_once_each(any_kafka: tuple[str, str], topic_prefix: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, bootstrap = any_kafka
    topic = TopicNames(topic_prefix).dead_letter
    asyncio.run(_fill(bootstrap, topic, topic_prefix))
    _use(monkeypatch, bootstrap, topic_prefix)

    status = main(["dead-letters", "--json", "--save", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 1  # the record that is no envelope
    letters = {(d["source"]["topic"], d["source"]["offset"]): d for d in map(json.loads, out.splitlines())}
    assert sorted(letters) == [(f"{topic_prefix}.ecg", 2), (f"{topic_prefix}.ecg", 3), (f"{topic_prefix}.vitals", 7)]
    big = letters[(f"{topic_prefix}.ecg", 3)]
    assert base64.b64decode(big["payload_b64"]) == BIG and big["payload_size"] == len(BIG)
    assert big["reason"] == "oversized" and base64.b64decode(big["source"]["key_b64"]) == b"p2"
    assert base64.b64decode(letters[(f"{topic_prefix}.vitals", 7)]["payload_b64"]) == SMALL
    assert (tmp_path / f"{topic_prefix}.ecg-1-3.bin").read_bytes() == BIG
    assert (tmp_path / f"{topic_prefix}.vitals-0-7.bin").read_bytes() == SMALL
    assert (tmp_path / f"{topic_prefix}.ecg-0-2.bin").read_bytes() == b"\x01\x02"
    assert f"unreadable record {topic}/0/3: malformed_json" in err
    assert f"incomplete message {topic_prefix}.ecg/1/9: 262144 of its 702800 bytes on the topic" in err
    assert ("3 dead-lettered message(s): crc_mismatch 1, invalid_field 1, oversized 1; repeats 1; "
            "unreadable records 1; incomplete messages 1") in err

    # Filters, and the text form.
    assert main(["dead-letters", "--reason", "oversized", "--source-topic", f"{topic_prefix}.ecg"]) == 1
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"{topic_prefix}.ecg/1/3  oversized  702800 B  key=p2  702800 bytes"
    assert lines[1].startswith("1 dead-lettered message(s): oversized 1; repeats 0;")


def test_a_topic_that_does_not_exist_holds_no_dead_letters(apache_kafka: str, topic_prefix: str,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _use(monkeypatch, apache_kafka, topic_prefix)
    assert main(["dead-letters"]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == ("0 dead-lettered message(s); repeats 0; unreadable records 0; incomplete messages 0")
