"""streams.raw_schema: the worker's input topics build each event straight from the
message, with what Faust's generic bytes/raw schema would have decoded."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from faust.types.tuples import Message

from streams.app import WorkerConfig, build_app
from streams.raw_schema import RawSchema
from streams.topics import TopicNames

CASES = [
    (b"patient-7", b"\x00\xff binary \x80"),
    (None, b'{"schema_version": 1}'),
    (b"patient-7", None),
    (None, None),
    (b"", b""),
]


@pytest.mark.parametrize(("key", "value"), CASES)
def test_events_match_fausts_own_raw_decoding(key: bytes | None, value: bytes | None) -> None:
    app = faust.App("raw-schema-test", broker="kafka://127.0.0.1:9")
    fast = app.topic("fast", schema=RawSchema())
    generic = app.topic("generic", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    message = Message("t", 2, 41, 1.5, 0, [("origin", b"bed-3")], key, value, None)

    ours: Any = asyncio.run(fast.decode(message))
    theirs: Any = asyncio.run(generic.decode(message, propagate=True))

    assert type(ours) is type(theirs)
    assert (ours.key, ours.value, ours.headers) == (theirs.key, theirs.value, theirs.headers)
    assert ours.message is message and ours.app is app


def test_the_worker_input_topics_use_it_and_still_send_bytes() -> None:
    app = build_app(WorkerConfig(brokers=["127.0.0.1:9"], database_url="postgresql://x/y", topics=TopicNames("t")))
    inputs = {name: agent.channel for name, agent in app.agents.items()}
    assert {n.rsplit(".", 1)[-1] for n in inputs} >= {"vitals_agent", "fhir_agent", "ecg_agent"}
    assert all(isinstance(topic.schema, RawSchema) for topic in inputs.values())
    # Sending (the dead-letter topic) keeps the raw serializers: bytes go out as they are.
    schema = RawSchema()
    assert schema.dumps_value(app, b"\x01\x02", headers={})[0] == b"\x01\x02"
    assert schema.dumps_key(app, b"k", headers={})[0] == b"k"
