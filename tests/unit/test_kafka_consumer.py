"""streams.kafka_consumer: Faust's consumer with the fetch wait as a setting, resume
offsets sought after Faust's own seek, and its own fetch loop."""

from __future__ import annotations

from typing import Any

import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

from streams.app import WorkerConfig, build_app
from streams import kafka_consumer
from streams.kafka_consumer import consumer_class
from streams.topics import TopicNames


def test_the_worker_app_uses_the_configured_fetch_wait() -> None:
    app = build_app(WorkerConfig(brokers=["127.0.0.1:9"], database_url="postgresql://x/y", topics=TopicNames("t"),
                                 fetch_max_wait_ms=70))
    cls: Any = app.transport.Consumer
    assert issubclass(cls, Consumer) and cls.max_wait_ms == 70
    assert issubclass(cls.Thread, AIOKafkaConsumerThread)


def test_the_aiokafka_consumer_gets_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fake:
        _fetch_max_wait_ms = 1500  # what Faust passes

    monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer", lambda self, transport: Fake())
    thread_cls: Any = consumer_class(40).Thread  # type: ignore[attr-defined]
    thread = object.__new__(thread_cls)  # no service started: only the factory method is exercised
    assert thread._create_worker_consumer(None)._fetch_max_wait_ms == 40


def test_a_wait_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        consumer_class(0)


@pytest.mark.asyncio
async def test_resume_offsets_are_sought_after_fausts_own_seek(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[Any, int]]] = []

    async def faust_seek(self: Any) -> None:
        calls.append(("faust", {}))

    async def seek_wait(self: Any, partitions: dict[Any, int]) -> None:
        calls.append(("seek_wait", dict(partitions)))

    async def seek(self: Any, tp: Any, offset: int) -> None:
        raise AssertionError("Faust's seek runs aiokafka's in the caller's thread; seek_wait runs it in the consumer's")

    monkeypatch.setattr(Consumer, "perform_seek", faust_seek)
    cls: Any = consumer_class(100)
    monkeypatch.setattr(cls, "seek_wait", seek_wait)
    monkeypatch.setattr(cls, "seek", seek)
    monkeypatch.setattr(cls, "assignment", lambda self: {"a/0", "a/1"})
    consumer = object.__new__(cls)  # no service started: only perform_seek is exercised
    consumer.resume_at = {"a/0": 0, "a/1": 17, "gone/0": 5}  # gone/0: revoked since
    consumer._rewinds = {"a/1": 30}  # asked for before the rebalance: the resume offsets win
    consumer._delivered = {"a/0": 3}  # the next record of a/0 follows none delivered: no hole vouched for
    # Faust's seek put the read offsets at the committed offsets, past a resume offset.
    consumer._read_offset = {"a/0": 4, "a/1": 21}
    await consumer.perform_seek()
    assert calls == [("faust", {}), ("seek_wait", {"a/0": 0, "a/1": 17})]
    assert consumer.resume_at == {} and consumer._rewinds == {} and consumer._delivered == {}
    # Moved back with the seek, as Faust's seek does (None: from the start), so the
    # fetch loop does not drop records 17-20 as "before the seek".
    assert consumer._read_offset == {"a/0": None, "a/1": 17}
    calls.clear()
    await consumer.perform_seek()  # the next rebalance seeks only where it is told again
    assert calls == [("faust", {})]


class _Flag:
    def __init__(self) -> None:
        self.on = False

    def is_set(self) -> bool:
        return self.on

    def set(self) -> None:
        self.on = True


class _Message:
    def __init__(self, offset: int, tp: str = "a/0") -> None:
        self.topic, self.offset, self.tp = "a", offset, tp


def _drainable(consumer: Any, deliver: Any, getmany: Any, add_gap: Any) -> None:
    """Give a consumer made without __init__ what its fetch loop uses."""
    consumer.callback = deliver
    consumer.getmany = getmany
    consumer._add_gap = add_gap
    consumer._read_offset = {"a/0": None, "a/1": None}
    consumer._rewinds, consumer._delivered, consumer._holes = {}, {}, {}
    consumer._stopped, consumer._crashed, consumer.suspend_flow = _Flag(), _Flag(), _Flag()
    consumer._commit_every, consumer._n_acked = None, 0
    consumer.diag = type("Diag", (), {"set_flag": lambda self, f: None, "unset_flag": lambda self, f: None})()
    consumer.app = type("App", (), {"topics": type("Topics", (), {"acks_enabled_for": lambda self, t: True})()})()


@pytest.mark.asyncio
async def test_the_drain_loop_delivers_in_order_and_keeps_fausts_bookkeeping() -> None:
    """Each message is delivered and its offset recorded; a gap is recorded; a message
    before the read offset is skipped; nothing is delivered while the flow is suspended
    (a rebalance), though its offset is still recorded, as Faust's loop does."""
    cls: Any = consumer_class(100)
    consumer = object.__new__(cls)  # no service started: only the loop is exercised
    fetcher = type("Fetcher", (), {"_stopped": _Flag()})()
    delivered: list[int] = []
    gaps: list[tuple[str, int, int]] = []

    async def deliver(message: _Message) -> None:
        delivered.append(message.offset)
        if message.offset == 9:
            consumer.suspend_flow.set()  # a rebalance starts while this one is handed over

    async def getmany(timeout: float) -> Any:
        if consumer._read_offset["a/0"] is not None:  # the second fetch: stop after it
            fetcher._stopped.set()
            return
        for offset in (5, 6, 9, 4, 10):
            yield "a/0", _Message(offset)

    async def add_gap(tp: str, start: int, end: int) -> None:
        gaps.append((tp, start, end))

    _drainable(consumer, deliver, getmany, add_gap)
    await consumer._drain_messages(fetcher)
    assert delivered == [5, 6, 9]
    assert gaps == [("a/0", 7, 9)]
    assert consumer._read_offset["a/0"] == 10


@pytest.mark.asyncio
async def test_a_rewind_is_sought_by_the_drain_loop_between_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rewind asked for while a batch is delivered: the rest of the partition's
    records in that batch are not delivered (another partition's are), the loop seeks
    before its next fetch, and the records read again are delivered, not dropped as
    before the read offset."""
    cls: Any = consumer_class(100)
    consumer = object.__new__(cls)
    fetcher = type("Fetcher", (), {"_stopped": _Flag()})()
    delivered: list[tuple[str, int]] = []
    sought: list[dict[str, int]] = []
    batches = iter([[("a/0", 10), ("a/0", 13), ("a/1", 4), ("a/0", 14)],  # 13 after a gap
                    [("a/0", 11), ("a/0", 12), ("a/0", 13)]])

    async def deliver(message: _Message) -> None:
        tp = message.tp
        delivered.append((tp, message.offset))
        if (tp, message.offset) == ("a/0", 13) and len(delivered) == 2:
            consumer.rewind("a/0", 11)

    async def getmany(timeout: float) -> Any:
        batch = next(batches, None)
        if batch is None:
            fetcher._stopped.set()
            return
        for tp, offset in batch:
            yield tp, _Message(offset, tp)

    async def add_gap(tp: str, start: int, end: int) -> None:
        pass

    async def seek_wait(self: Any, offsets: dict[str, int]) -> None:
        sought.append(dict(offsets))

    monkeypatch.setattr(cls, "seek_wait", seek_wait)
    monkeypatch.setattr(cls, "assignment", lambda self: {"a/0", "a/1"})
    _drainable(consumer, deliver, getmany, add_gap)
    await consumer._drain_messages(fetcher)
    assert sought == [{"a/0": 11}]
    assert delivered == [("a/0", 10), ("a/0", 13), ("a/1", 4), ("a/0", 11), ("a/0", 12), ("a/0", 13)]
    assert consumer._read_offset == {"a/0": 13, "a/1": 4} and consumer._rewinds == {}


@pytest.mark.asyncio
async def test_offsets_between_two_records_delivered_in_a_row_are_vouched_absent() -> None:
    """5 then 7 delivered one after the other: 6 is not in the log, and `absent` says
    so once. No hole is vouched for across records not delivered (a suspended flow) or
    across a seek, and none for a gap that starts elsewhere."""
    cls: Any = consumer_class(100)
    consumer = object.__new__(cls)
    fetcher = type("Fetcher", (), {"_stopped": _Flag()})()
    batches = iter([[("a/0", 5), ("a/0", 7), ("a/1", 3), ("a/1", 6)], [("a/1", 9)], [("a/0", 12)]])

    async def deliver(message: _Message) -> None:
        if (message.tp, message.offset) == ("a/1", 3):
            consumer.suspend_flow.set()  # 6 of a/1 is fetched, not delivered
        if (message.tp, message.offset) == ("a/1", 9):
            consumer._forget(["a/0"])  # as a seek of a/0 does

    async def getmany(timeout: float) -> Any:
        batch = next(batches, None)
        if batch is None:
            fetcher._stopped.set()
            return
        consumer.suspend_flow.on = False
        for tp, offset in batch:
            yield tp, _Message(offset, tp)

    async def add_gap(tp: str, start: int, end: int) -> None:
        pass

    _drainable(consumer, deliver, getmany, add_gap)
    await consumer._drain_messages(fetcher)
    assert consumer.absent("a/0", 5, 7) is False  # not the hole: it starts at 6
    assert consumer.absent("a/0", 6, 7) is True
    assert consumer.absent("a/0", 6, 7) is False  # answered once
    assert consumer.absent("a/1", 4, 9) is False and consumer.absent("a/1", 7, 9) is False
    assert consumer.absent("a/0", 8, 12) is False  # 7 and 12 were delivered with a seek between them


def test_holes_no_agent_asks_about_do_not_pile_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_consumer, "MAX_HOLES", 3)
    cls: Any = consumer_class(100)
    consumer = object.__new__(cls)
    consumer._holes = {}
    for end in range(2, 12, 2):
        consumer._hole("a/0", end - 1, end)
    assert list(consumer._holes["a/0"]) == [6, 8, 10]
    assert consumer.absent("a/0", 1, 2) is False and consumer.absent("a/0", 9, 10) is True


class _InFlight:
    def __init__(self) -> None:
        self.acked = False


@pytest.mark.asyncio
async def test_waiting_for_messages_in_flight_settles_them_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a rebalance or shutdown Faust waits until every message taken is
    acknowledged; the worker's ``settle`` (durable + checkpointed now) runs first, again
    for a message an agent finished meanwhile, and Faust's own wait comes last."""
    calls: list[str] = []
    first, late = _InFlight(), _InFlight()

    async def settle() -> None:
        calls.append("settle")
        for m in list(consumer._unacked_messages):
            m.acked = True
        if calls.count("settle") == 1:
            consumer._unacked_messages.add(late)  # an agent's last message, done after the first settle

    async def faust_wait(self: Any) -> None:
        calls.append(f"faust with {len(self._unacked_messages)} unacknowledged")

    monkeypatch.setattr(Consumer, "wait_empty", faust_wait)
    cls: Any = consumer_class(100, settle)
    consumer = object.__new__(cls)  # no service started: only wait_empty is exercised
    consumer.settle = settle  # (as __init__ stores it)
    consumer._unacked_messages = {first}
    consumer._stopped, consumer._crashed = _Flag(), _Flag()
    monkeypatch.setattr(cls, "should_stop", property(lambda self: False))
    await consumer.wait_empty()
    assert calls == ["settle", "settle", "faust with 0 unacknowledged"]
    assert first.acked and late.acked


@pytest.mark.asyncio
async def test_without_settle_faust_waits_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def faust_wait(self: Any) -> None:
        calls.append("faust")

    monkeypatch.setattr(Consumer, "wait_empty", faust_wait)
    consumer = object.__new__(consumer_class(100))
    consumer.settle = None
    consumer._unacked_messages = {_InFlight()}
    await consumer.wait_empty()
    assert calls == ["faust"]
