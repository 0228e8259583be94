"""The two ways `PostgresRecorder` writes a batch (one statement for small ones, two
COPYs with encoding overlapped for larger ones) store exactly the text that was
hashed, and the overlapped encoding gives the same rows and chain whichever part of
it runs while the ids are copied."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from event_store import postgres
from event_store.base import NewRow
from event_store.events import AppendRequest, NewEvent
from event_store.integrity import encode_json, leaf_hash, link, micros
from event_store.postgres import PostgresRecorder

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.fixture
def database_url(store_url: str) -> str:
    """Every test here runs on both schemas, native and TimescaleDB (`tests.conftest.store_url`)."""
    return store_url

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
AWKWARD = {"name": "Zoë Ødegård \u2013 ☃", "quote": 'say "hi"\n\ttab\\', "big": 1e300, "tiny": 5e-324,
           "neg0": -0.0, "int": 2**70, "nested": {"list": [1, None, True, {"k": []}]}}


def event(stream: str, n: int, **extra: object) -> NewEvent:
    return NewEvent(uuid.uuid4(), stream, "VitalsObserved", T0 + timedelta(microseconds=n),
                    {"n": n, **AWKWARD, **extra}, metadata={"source": {"offset": n}, "note": "é"})


@pytest.mark.parametrize("size", [1, postgres._COPY_FROM - 1, postgres._COPY_FROM, 700])
async def test_stored_text_is_exactly_the_hashed_text(pg_recorder: PostgresRecorder, size: int) -> None:
    events = [event("patient-t", i) for i in range(size)]
    await pg_recorder.append("patient-t", events)
    rows = await pg_recorder.read_stored(0, size + 1)
    assert len(rows) == size
    previous = bytes(32)
    for row, e in zip(rows, events, strict=True):
        assert row.event_id == str(e.event_id)
        assert (row.payload_json, row.metadata_json) == (encode_json(e.payload), encode_json(e.metadata))
        assert row.occurred_us == micros(e.occurred_at)
        previous = link(previous, leaf_hash(row.event_id, row.stream_id, row.event_type, row.schema_version,
                                            row.occurred_us, row.recorded_us, row.payload_json, row.metadata_json))
        assert row.chain_hash == previous
    got = await pg_recorder.read_stream("patient-t")
    assert [(g.payload, g.metadata, g.occurred_at) for g in got] == [(e.payload, e.metadata, e.occurred_at)
                                                                     for e in events]
    assert (await pg_recorder.head()).chain_hash == previous


async def test_encoding_left_over_when_the_ids_are_in_is_done_during_the_event_copy(
    pg_recorder: PostgresRecorder, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One event per slice: the ids COPY (a round trip and a few ms of server work)
    # finishes long before 3 000 slices, each with a trip round the event loop, do.
    monkeypatch.setattr(postgres, "_SLICE", 1)
    ready_sizes: list[int] = []
    rest = postgres._Chainer.rest

    def spying_rest(self: postgres._Chainer, ready: list[NewRow]) -> Iterator[NewRow]:
        ready_sizes.append(len(ready))
        return rest(self, ready)

    monkeypatch.setattr(postgres._Chainer, "rest", spying_rest)
    batch = [AppendRequest(f"patient-s{s}", tuple(event(f"patient-s{s}", i) for i in range(600))) for s in range(5)]
    positions = await pg_recorder.append_batch(batch)
    assert len(ready_sizes) == 1 and 0 < ready_sizes[0] < 3_000  # both phases encoded some
    assert sorted(positions.values()) == list(range(1, 3_001))
    stored = await pg_recorder.read_all(0, 5_000)
    assert [e.event_id for e in stored] == [e.event_id for r in batch for e in r.events]
    assert [e.stream_version for e in stored[:600]] == list(range(1, 601))
    report = await pg_recorder.verify()
    assert report.ok, report.summary()


async def test_a_retried_batch_falls_back_to_looking_ids_up(pg_recorder: PostgresRecorder) -> None:
    for size in (3, 300):
        stream = f"patient-r{size}"
        events = [event(stream, i) for i in range(size)]
        first = await pg_recorder.append(stream, events)
        head = await pg_recorder.head()
        # The optimistic insert hits event_ids' primary key; the lookup returns the originals.
        assert await pg_recorder.append(stream, events) == first
        assert await pg_recorder.append(stream, list(reversed(events)), expected_version=0) == first[::-1]
        assert await pg_recorder.head() == head


async def test_the_application_role_appends_large_batches(pg_recorder: PostgresRecorder, database_url: str) -> None:
    app = await PostgresRecorder.connect(database_url, role="vigil_app")
    try:
        batch = [AppendRequest(f"patient-a{s}", tuple(event(f"patient-a{s}", i) for i in range(150))) for s in range(4)]
        assert sorted((await app.append_batch(batch)).values()) == list(range(1, 601))
        assert (await app.verify()).ok
        read = await app.read_all(0, 1_000)
        written = [e for r in batch for e in r.events]
        assert [(e.occurred_at, e.payload) for e in read] == [(e.occurred_at, e.payload) for e in written]
    finally:
        await app.close()


async def test_an_encoding_error_during_the_event_copy_stores_nothing(
    pg_recorder: PostgresRecorder, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres, "_SLICE", 1)  # the last events are encoded during the events COPY
    events = [event("patient-e", i) for i in range(2_000)]
    events[-1] = event("patient-e", 2_000, hr=float("inf"))
    with pytest.raises(ValueError, match="JSON"):
        await pg_recorder.append("patient-e", events)
    assert await pg_recorder.last_position() == 0
    assert await pg_recorder.read_all(0) == []
    assert await pg_recorder.append("patient-e", events[:-1]) == list(range(1, 2_000))
