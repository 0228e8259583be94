"""One contract, every backend: the same append/read/subscribe/verify tests run on
the in-memory recorder, on PostgreSQL and on PostgreSQL with TimescaleDB (STYLE
practice 9)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from event_store.base import EventRecorder
from event_store.events import ANY_VERSION, NO_STREAM, AppendRequest, NewEvent
from event_store.exceptions import ConcurrencyConflict, DuplicateEvent
from event_store.memory import MemoryRecorder
from event_store.postgres import PostgresRecorder

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["memory", "postgres", "timescaledb"])
async def recorder(request: pytest.FixtureRequest) -> AsyncIterator[EventRecorder]:
    if request.param == "memory":
        yield MemoryRecorder()
        return
    url = request.getfixturevalue("database_url" if request.param == "postgres" else "timescale_url")
    rec = await PostgresRecorder.connect(url, max_size=20)
    await rec.migrate()
    yield rec
    await rec.close()


def ev(stream: str = "patient-p1", n: int = 0, **payload: object) -> NewEvent:
    return NewEvent(uuid.uuid4(), stream, "VitalsObserved", datetime.now(UTC), {"n": n, **payload},
                    metadata={"source": {"topic": "t", "partition": 0, "offset": n}})


async def test_positions_and_versions_have_no_gaps(recorder: EventRecorder) -> None:
    assert await recorder.append("patient-a", [ev("patient-a", 0), ev("patient-a", 1)], NO_STREAM) == [1, 2]
    assert await recorder.append("patient-b", [ev("patient-b", 0)]) == [3]
    assert await recorder.append("patient-a", [ev("patient-a", 2)], 2) == [4]
    a = await recorder.read_stream("patient-a")
    assert [(e.stream_version, e.position, e.payload["n"]) for e in a] == [(1, 1, 0), (2, 2, 1), (3, 4, 2)]
    assert [e.position for e in await recorder.read_all(0)] == [1, 2, 3, 4]
    assert [e.position for e in await recorder.read_all(2, limit=1)] == [3]
    assert [e.stream_version for e in await recorder.read_stream("patient-a", from_version=2, limit=1)] == [2]
    assert await recorder.read_stream("patient-none") == []
    assert (await recorder.head()).position == 4


async def test_stored_event_round_trips_exactly(recorder: EventRecorder) -> None:
    e = NewEvent(uuid.uuid4(), "patient-x", "AlertRaised", datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC),
                 {"alert_id": "a1", "value": 150.5, "limit": 130, "nested": {"k": [1, 2.25, "z"]}, "ok": True},
                 schema_version=3, metadata={"actor": "device"})
    await recorder.append("patient-x", [e])
    (got,) = await recorder.read_all(0)
    assert (got.event_id, got.stream_id, got.event_type, got.schema_version) == (e.event_id, "patient-x", "AlertRaised", 3)
    assert got.occurred_at == e.occurred_at
    assert got.payload == e.payload and got.metadata == e.metadata
    assert got.recorded_at.tzinfo is not None


async def test_appending_again_is_a_no_op_returning_original_positions(recorder: EventRecorder) -> None:
    batch = [ev(n=i) for i in range(3)]
    first = await recorder.append("patient-p1", batch)
    head = await recorder.head()
    assert await recorder.append("patient-p1", batch, expected_version=0) == first  # a retry after a crash
    assert await recorder.head() == head
    late = ev(n=9)
    assert await recorder.append("patient-p1", [batch[1], late]) == [first[1], 4]
    assert len(await recorder.read_all(0)) == 4


async def test_a_batch_says_which_events_it_wrote(recorder: EventRecorder) -> None:
    old = [ev("patient-a", i) for i in range(3)]
    first = await recorder.append_batch([AppendRequest("patient-a", tuple(old))])
    assert first.first_written == 1 and all(first.written(e.event_id) for e in old)
    # Stored events interleaved with new ones, over two streams: only the new ones count.
    new = [ev("patient-a", 7), ev("patient-b", 8)]
    mixed = await recorder.append_batch([AppendRequest("patient-a", (old[0], new[0], old[2])),
                                         AppendRequest("patient-b", (new[1],))])
    assert mixed.first_written == 4 and dict(mixed) == {old[0].event_id: 1, new[0].event_id: 4,
                                                          old[2].event_id: 3, new[1].event_id: 5}
    assert [mixed.written(e.event_id) for e in (old[0], new[0], old[2], new[1])] == [False, True, False, True]
    again = await recorder.append_batch([AppendRequest("patient-b", (new[1],))])
    assert again.first_written is None and not again.written(new[1].event_id)


async def test_expected_version_is_enforced(recorder: EventRecorder) -> None:
    await recorder.append("patient-p1", [ev()], NO_STREAM)
    with pytest.raises(ConcurrencyConflict) as err:
        await recorder.append("patient-p1", [ev()], NO_STREAM)
    assert (err.value.expected, err.value.actual) == (0, 1)
    with pytest.raises(ConcurrencyConflict):
        await recorder.append("patient-p1", [ev()], 5)
    assert await recorder.append("patient-p1", [ev()], ANY_VERSION) == [2]


async def test_concurrent_writers_with_the_same_expectation_one_wins(recorder: EventRecorder) -> None:
    await recorder.append("alert-1", [ev("alert-1")])
    results = await asyncio.gather(
        *(recorder.append("alert-1", [ev("alert-1", i)], expected_version=1) for i in range(5)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, list) for r in results) == 1
    assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 4
    assert len(await recorder.read_stream("alert-1")) == 2


async def test_concurrent_writers_creating_a_stream_one_wins(recorder: EventRecorder) -> None:
    # The stream does not exist yet: every writer expects version 0. Checking the version
    # in the snapshot taken before waiting for the writer lock would let all of them in.
    for round_ in range(10):
        stream = f"alert-new{round_}"
        results = await asyncio.gather(
            *(recorder.append(stream, [ev(stream, i)], expected_version=0) for i in range(4)),
            return_exceptions=True,
        )
        assert sum(isinstance(r, list) for r in results) == 1, results
        assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 3
        versions = [e.stream_version for e in await recorder.read_stream(stream)]
        assert versions == [1]


async def test_a_batch_is_all_or_nothing(recorder: EventRecorder) -> None:
    await recorder.append("patient-b", [ev("patient-b")])
    head = await recorder.head()
    with pytest.raises(ConcurrencyConflict):
        await recorder.append_batch([
            AppendRequest("patient-a", (ev("patient-a"), ev("patient-a"))),
            AppendRequest("patient-b", (ev("patient-b"),), expected_version=NO_STREAM),
        ])
    assert await recorder.head() == head
    assert await recorder.read_stream("patient-a") == []
    positions = await recorder.append_batch([
        AppendRequest("patient-a", (ev("patient-a", 1), ev("patient-a", 2))),
        AppendRequest("patient-b", (ev("patient-b", 3),), expected_version=1),
    ])
    assert sorted(positions.values()) == [2, 3, 4]


async def test_an_event_id_belongs_to_one_stream(recorder: EventRecorder) -> None:
    e = ev("patient-a")
    await recorder.append("patient-a", [e])
    clash = NewEvent(e.event_id, "patient-b", e.event_type, e.occurred_at, e.payload)
    with pytest.raises(DuplicateEvent, match=str(e.event_id)):
        await recorder.append("patient-b", [clash])


async def test_subscribers_see_every_concurrent_append_once_in_order(recorder: EventRecorder) -> None:
    writers, appends, subscribers = 8, 20, 3
    total = writers * appends + writers * 5 * 3  # single appends plus 5 batches of 3 per writer
    seen: list[list[int]] = [[] for _ in range(subscribers)]

    async def follow(out: list[int], after: int) -> None:
        async with contextlib.aclosing(recorder.subscribe(after, poll_interval=5)) as events:
            async for event in events:
                out.append(event.position)
                if len(out) == total:
                    return

    async def write(w: int) -> None:
        for i in range(appends):
            await recorder.append(f"patient-w{w}", [ev(f"patient-w{w}", i)])
            if i % 4 == 0:
                await recorder.append_batch([AppendRequest(f"patient-b{w}", tuple(ev(f"patient-b{w}") for _ in range(3)))])

    followers = [asyncio.create_task(follow(seen[i], 0)) for i in range(subscribers)]
    await asyncio.gather(*(write(w) for w in range(writers)))
    await asyncio.wait_for(asyncio.gather(*followers), 60)
    for out in seen:
        assert out == list(range(1, total + 1))


async def test_verify_passes_on_an_intact_log(recorder: EventRecorder) -> None:
    for i in range(30):
        await recorder.append(f"patient-{i % 4}", [ev(f"patient-{i % 4}", i, hr=70.0 + i, big=1e20, tiny=1e-7)])
    report = await recorder.verify(page=7)
    assert report.ok, report.summary()
    assert (report.events, report.last_position) == (30, 30)
    assert report.last_hash == (await recorder.head()).chain_hash
    assert report.summary().startswith("OK: 30 events")


# Large batches: PostgreSQL writes them with COPY, encoding slices of events while the
# server takes in the ids, so they get the same contract checks as single appends.
LARGE = 1_234  # more than two encoding slices, not a multiple of one


def large_batch(streams: int = 7, per: int = LARGE // 7, tag: str = "big") -> list[AppendRequest]:
    return [AppendRequest(f"patient-{tag}{s}", tuple(ev(f"patient-{tag}{s}", i, s=s) for i in range(per)))
            for s in range(streams)]


async def test_a_large_batch_gets_gap_free_positions_and_versions(recorder: EventRecorder) -> None:
    await recorder.append("patient-big0", [ev("patient-big0", -1)])
    batch = large_batch()
    positions = await recorder.append_batch(batch)
    total = sum(len(r.events) for r in batch)
    assert sorted(positions.values()) == list(range(2, total + 2))
    stored = await recorder.read_all(0, limit=total + 10)
    assert [e.position for e in stored] == list(range(1, total + 2))
    by_id = {e.event_id: e for e in stored}
    for req in batch:
        for e in req.events:
            got = by_id[e.event_id]
            assert got.position == positions[e.event_id]
            assert (got.stream_id, got.payload, got.metadata, got.occurred_at) == (
                e.stream_id, e.payload, e.metadata, e.occurred_at)
    first = await recorder.read_stream("patient-big0")
    assert [e.stream_version for e in first] == list(range(1, len(batch[0].events) + 2))
    assert [e.payload["n"] for e in first] == [-1, *range(len(batch[0].events))]
    report = await recorder.verify(page=500)
    assert report.ok, report.summary()
    assert report.events == total + 1


async def test_a_large_batch_appended_again_keeps_its_positions(recorder: EventRecorder) -> None:
    batch = large_batch()
    first = await recorder.append_batch(batch)
    head = await recorder.head()
    # A retry after a crash, with the expected versions the writer had then.
    again = await recorder.append_batch([AppendRequest(r.stream_id, r.events, NO_STREAM) for r in batch])
    assert again == first
    assert await recorder.head() == head
    # Half old, half new: only the new ones are written, after the head.
    fresh = [ev("patient-big0", 10_000 + i) for i in range(300)]
    mixed = await recorder.append_batch([AppendRequest("patient-big0", (*batch[0].events, *fresh))])
    assert [mixed[e.event_id] for e in batch[0].events] == [first[e.event_id] for e in batch[0].events]
    assert [mixed[e.event_id] for e in fresh] == list(range(head.position + 1, head.position + 301))
    assert again.first_written is None and not any(again.written(e.event_id) for r in batch for e in r.events)
    assert mixed.first_written == head.position + 1
    assert [mixed.written(e.event_id) for e in (*batch[0].events, *fresh)] == [False] * len(batch[0].events) + [True] * 300
    assert (await recorder.verify()).ok


async def test_a_large_batch_is_all_or_nothing(recorder: EventRecorder) -> None:
    await recorder.append("patient-big3", [ev("patient-big3")])
    head = await recorder.head()
    batch = large_batch()
    batch[3] = AppendRequest(batch[3].stream_id, batch[3].events, expected_version=NO_STREAM)
    with pytest.raises(ConcurrencyConflict) as err:
        await recorder.append_batch(batch)
    assert (err.value.stream_id, err.value.expected, err.value.actual) == ("patient-big3", 0, 1)
    # The same batch, now with an id that another stream already holds.
    batch[3] = AppendRequest(batch[3].stream_id, batch[3].events)
    clash = NewEvent(batch[5].events[-1].event_id, "patient-other", "VitalsObserved", datetime.now(UTC), {})
    await recorder.append("patient-other", [clash])
    head = await recorder.head()
    with pytest.raises(DuplicateEvent, match=str(clash.event_id)):
        await recorder.append_batch(batch)
    assert await recorder.head() == head
    assert await recorder.read_stream("patient-big0") == []
    assert len(await recorder.read_all(0)) == 2


async def test_a_payload_that_is_not_json_stores_nothing(recorder: EventRecorder) -> None:
    for size in (1, LARGE):
        bad = [ev("patient-nan", i) for i in range(size)]
        bad[-1] = ev("patient-nan", size, hr=float("nan"))
        with pytest.raises(ValueError, match="JSON"):
            await recorder.append("patient-nan", bad)
        assert await recorder.last_position() == 0
    assert await recorder.append("patient-nan", [ev("patient-nan")]) == [1]  # the recorder still works


async def test_a_subscriber_catching_up_over_many_pages_sees_every_event_once(recorder: EventRecorder) -> None:
    await recorder.append_batch(large_batch(streams=5, per=500, tag="a"))  # 2 500: pages of 1 000 and more
    seen: list[int] = []

    async def follow() -> None:
        async with contextlib.aclosing(recorder.subscribe(0, poll_interval=5)) as events:
            async for event in events:
                seen.append(event.position)
                if len(seen) == 2_500 + 1_300:
                    return

    follower = asyncio.create_task(follow())
    for i in range(13):
        await recorder.append_batch([AppendRequest(f"patient-b{i}", tuple(ev(f"patient-b{i}") for _ in range(100)))])
    await asyncio.wait_for(follower, 60)
    assert seen == list(range(1, 2_500 + 1_300 + 1))


async def test_read_all_pages_hands_out_every_event_once_in_order(recorder: EventRecorder) -> None:
    await recorder.append_batch(large_batch(streams=4, per=250, tag="p"))  # 1 000 events
    async with contextlib.aclosing(recorder.read_all_pages(0, page=300)) as pages:
        got = [[e.position for e in page] async for page in pages]
    assert [len(page) for page in got] == [300, 300, 300, 100]
    assert [p for page in got for p in page] == list(range(1, 1001))
    async with contextlib.aclosing(recorder.read_all_pages(990, page=5)) as pages:
        assert [[e.position for e in page] async for page in pages] == [[991, 992, 993, 994, 995],
                                                                       [996, 997, 998, 999, 1000]]
    # A full last page is followed by one more read, which finds nothing: no empty page is handed out.
    async with contextlib.aclosing(recorder.read_all_pages(1000, page=5)) as pages:
        assert [page async for page in pages] == []


async def test_read_all_pages_closed_early_leaves_the_recorder_usable(recorder: EventRecorder) -> None:
    await recorder.append_batch(large_batch(streams=2, per=100, tag="q"))
    async with contextlib.aclosing(recorder.read_all_pages(0, page=10)) as pages:
        async for page in pages:
            assert [e.position for e in page] == list(range(1, 11))
            break  # the next page is already being read: closing must cancel it cleanly
    assert [e.position for e in await recorder.read_all(195)] == [196, 197, 198, 199, 200]
