"""`streams.states.PatientStates` without Faust: a dict-backed table that records its
changelog, streams that record acknowledgements, and messages from one partition.

The property under test is the resume offset's: in the changelog it never passes a
message whose effects are not all safe, and it always follows the checkpoints it
relies on in the same changelog partition."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams.states import PatientStates, share_of

pytestmark = pytest.mark.asyncio

TOPIC = "t.vitals"


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Event:
    message: Message


@dataclass
class Table:
    data: dict[bytes, bytes] = field(default_factory=dict)
    changelog: list[tuple[int, bytes, bytes]] = field(default_factory=list)

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> None:
        self.changelog.append((partition, key, value))


@dataclass
class Stream:
    acked: list[int] = field(default_factory=list)

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.message.offset)
        return True


def states(table: Table, rewinds: list[tuple[str, int, int]] | None = None,
           holes: set[tuple[str, int, int, int]] | None = None) -> PatientStates[int]:
    """States are ints: the offset of the last message applied. Rewinds asked for go
    to ``rewinds``; the consumer vouches for the ``holes`` (topic, partition, start,
    end), each once."""
    asked = [] if rewinds is None else rewinds
    known = set() if holes is None else holes

    def absent(topic: str, partition: int, start: int, end: int) -> bool:
        hole = (topic, partition, start, end)
        if hole in known:
            known.remove(hole)
            return True
        return False

    return PatientStates(table, lambda s: str(s).encode(), lambda b: int(b), (TOPIC,),
                         lambda t, p, o: asked.append((t, p, o)), absent)


def resumes(table: Table, partition: int = 0) -> list[int]:
    """The resume offsets written to the changelog, in order."""
    return [int(v) for p, k, v in table.changelog if k.startswith(b"\x00resume") and p == partition]


def event(offset: int, partition: int = 0) -> Event:
    return Event(Message(TOPIC, partition, offset))


async def apply(st: PatientStates[int], stream: Stream, key: str, offset: int, partition: int = 0) -> Any:
    """Consume and apply one message; return its sink callback (call it: durable)."""
    ev = event(offset, partition)
    st.consumed(ev)
    st.applied(key, partition, offset)
    return st.durable(key, stream, ev)


async def test_resume_offset_waits_for_the_oldest_open_message() -> None:
    table, stream = Table(), Stream()
    st = states(table)
    assert st.resume_offsets([(TOPIC, 0)]) == {(TOPIC, 0): 0}
    a0 = await apply(st, stream, "a", 0)
    b1 = await apply(st, stream, "b", 1)
    a2 = await apply(st, stream, "a", 2)
    await b1()
    await a0()
    assert await st.checkpoint_idle() == 1  # b only: a still has offset 2 in the sink
    assert stream.acked == [1]
    assert resumes(table) == []  # offset 0 is open: nothing to move past
    await a2()
    assert await st.checkpoint_idle() == 1
    assert sorted(stream.acked) == [0, 1, 2]
    assert resumes(table) == [3]
    # The resume offset follows the checkpoints it relies on, in the same partition.
    keys = [k for _, k, _ in table.changelog]
    assert keys.index(b"a") < keys.index(next(k for k in keys if k.startswith(b"\x00resume")))
    assert table.data[b"a"] == b"2" and table.data[b"b"] == b"1"


async def test_resume_offset_is_read_back_and_unchanged_offsets_are_not_rewritten() -> None:
    table, stream = Table(), Stream()
    st = states(table)
    st.resume_offsets([(TOPIC, 0), ("other.topic", 0)])
    await (await apply(st, stream, "a", 0))()
    await st.checkpoint_idle()
    await st.checkpoint_idle()
    assert resumes(table) == [1]
    # The next owner recovers the table: it resumes at 1, with the key's checkpoint.
    nxt = states(Table(data=dict(table.data)))
    assert nxt.resume_offsets([(TOPIC, 0), ("other.topic", 0)]) == {(TOPIC, 0): 1}
    assert nxt.get("a") == 0 and nxt.get("z") is None


async def test_messages_a_checkpoint_covers_close_with_a_checkpoint() -> None:
    table, stream = Table(data={b"a": b"5"}), Stream()
    st = states(table)
    st.resume_offsets([(TOPIC, 0)])  # none stored: tracking starts at the first message
    for offset in (4, 5):  # consumed again after a restart; "a" covers them
        st.consumed(event(offset))
        st.covered("a", stream, event(offset))
    assert stream.acked == []
    assert await st.checkpoint_idle() == 0  # nothing to write for "a": the table has its state
    assert stream.acked == [4, 5]
    assert resumes(table) == [6]
    # Covered by a working state not yet checkpointed: closes with that state's checkpoint.
    a6 = await apply(st, stream, "a", 6)
    st.consumed(event(7))
    st.covered("a", stream, event(7))  # (a re-delivery the working state already covers)
    await st.checkpoint_idle()
    assert resumes(table) == [6]
    await a6()
    await st.checkpoint_idle()
    assert resumes(table) == [6, 8]


async def test_a_dead_letter_closes_when_the_broker_has_it() -> None:
    table, stream = Table(), Stream()
    st = states(table)
    st.resume_offsets([(TOPIC, 0)])
    sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    st.consumed(event(0))
    st.dead_lettered(stream, event(0), sent, applied=False)
    await st.checkpoint_idle()
    assert resumes(table) == []
    sent.set_result(None)
    await asyncio.sleep(0)
    await st.checkpoint_idle()
    assert resumes(table) == [1]

    failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    st.consumed(event(1))
    st.dead_lettered(stream, event(1), failed, applied=False)
    failed.set_exception(RuntimeError("broker gone"))
    await asyncio.sleep(0)
    await st.checkpoint_idle()
    assert resumes(table) == [1]  # never passes a dead letter that was not sent
    assert failed.exception() is not None


async def test_a_message_the_store_refused_needs_its_checkpoint_and_its_dead_letter() -> None:
    table, stream = Table(), Stream()
    st = states(table)
    st.resume_offsets([(TOPIC, 0)])
    done = await apply(st, stream, "a", 0)
    sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    st.dead_lettered(stream, event(0), sent, applied=True)
    await done()
    await st.checkpoint_idle()
    assert stream.acked == [0] and resumes(table) == []  # checkpointed, dead letter not yet sent
    sent.set_result(None)
    await asyncio.sleep(0)
    await st.checkpoint_idle()
    assert resumes(table) == [1]


async def test_a_gap_in_the_offsets_rewinds_the_partition_to_it() -> None:
    table, stream = Table(data={b"\x00resume\x00t.vitals\x000": b"10"}), Stream()
    rewinds: list[tuple[str, int, int]] = []
    st = states(table, rewinds)
    assert st.resume_offsets([(TOPIC, 0)]) == {(TOPIC, 0): 10}
    await (await apply(st, stream, "a", 10))()
    # 11 and 12 never arrived: 13 is not applied, the partition is read again from 11.
    assert st.consumed(event(13)) is False
    assert rewinds == [(TOPIC, 0, 11)] and st.rewinds == 1
    # Messages fetched before the seek took effect still come: skipped, no second rewind.
    assert st.consumed(event(14)) is False and st.consumed(event(15)) is False
    await st.checkpoint_idle()
    assert resumes(table) == [11]  # never past the gap
    # Read again from 11: everything is taken, in order, and the resume offset moves on.
    for offset in range(11, 16):
        await (await apply(st, stream, "a", offset))()
    await st.checkpoint_idle()
    assert resumes(table) == [11, 16]
    assert rewinds == [(TOPIC, 0, 11)]


async def test_offsets_missing_from_the_log_are_rewound_to_once() -> None:
    table, stream = Table(), Stream()
    rewinds: list[tuple[str, int, int]] = []
    st = states(table, rewinds)
    st.resume_offsets([(TOPIC, 0)])
    await (await apply(st, stream, "a", 0))()
    assert st.consumed(event(3)) is False  # 1 and 2: an aborted transaction's records, say
    assert rewinds == [(TOPIC, 0, 1)]
    # Read again from 1, the partition starts at 3 once more: 1 and 2 are not in the
    # log. 3 is taken, with no second rewind (which would loop).
    assert st.consumed(event(3)) is True
    st.applied("a", 0, 3)
    await st.durable("a", stream, event(3))()
    assert st.consumed(event(4)) is True
    st.covered("a", stream, event(4))
    await st.checkpoint_idle()
    assert rewinds == [(TOPIC, 0, 1)] and resumes(table) == [5]
    assert sorted(stream.acked) == [0, 3, 4]


async def test_offsets_the_consumer_read_as_absent_are_not_rewound_to() -> None:
    table, stream = Table(), Stream()
    rewinds: list[tuple[str, int, int]] = []
    st = states(table, rewinds, holes={(TOPIC, 0, 1, 2), (TOPIC, 0, 4, 6)})
    st.resume_offsets([(TOPIC, 0)])
    for offset in (0, 2, 3, 6):  # 1, 4 and 5: transaction markers the consumer saw go by
        await (await apply(st, stream, "a", offset))()
    assert rewinds == [] and st.rewinds == 0 and st.holes == 2
    # A gap the consumer does not vouch for is still read again.
    assert st.consumed(event(8)) is False
    assert rewinds == [(TOPIC, 0, 7)]
    await st.checkpoint_idle()
    assert resumes(table) == [7] and sorted(stream.acked) == [0, 2, 3, 6]


async def test_revoked_partitions_are_checkpointed_then_forgotten() -> None:
    table, stream = Table(), Stream()
    st = states(table)
    st.resume_offsets([(TOPIC, 0), (TOPIC, 1)])
    await (await apply(st, stream, "a", 0, partition=0))()
    await (await apply(st, stream, "b", 0, partition=1))()
    assert await st.checkpoint_idle({1}) == 1
    assert stream.acked == [0] and resumes(table, 1) == [1] and resumes(table, 0) == []
    st.forget({1})
    assert st.keys_of(lambda k: True) == [("a", 0, 0)]
    assert st.resume_written() == {(TOPIC, 0): 0}
    assert st.get("b") == 0  # from the table now


async def test_concurrent_checkpoints_do_not_trip_over_each_other() -> None:
    table, stream = Table(), Stream()
    st = states(table)
    st.resume_offsets([(TOPIC, 0)])
    for offset in range(120):  # more than one batch of 50 keys: the checkpoint yields in between
        await (await apply(st, stream, f"k{offset}", offset))()
    written = await asyncio.gather(st.checkpoint_idle(), st.checkpoint_idle({0}))
    assert sorted(written) == [0, 120]
    assert sorted(stream.acked) == list(range(120))
    assert resumes(table) == [120]


async def durable_ward(patients: int) -> tuple[Table, Stream, PatientStates[int], list[str]]:
    """States of ``patients`` keys, one durable message each (offsets 0, 1, ...)."""
    table, stream = Table(), Stream()
    st = states(table)
    st.resume_offsets([(TOPIC, 0)])
    keys = [f"patient-{i}" for i in range(patients)]
    for offset, key in enumerate(keys):
        await (await apply(st, stream, key, offset))()
    return table, stream, st, keys


async def test_a_round_of_shares_writes_each_key_once_and_acknowledges_at_its_end() -> None:
    table, stream, st, keys = await durable_ward(40)
    shares = 4
    written = []
    for i in range(shares):
        written.append(await st.checkpoint_idle(share=(i, shares)))
        done = [k for k in keys if share_of(k, shares) <= i]
        assert sorted(k.decode() for _, k, _ in table.changelog if not k.startswith(b"\x00")) == sorted(done)
        if i < shares - 1:
            assert stream.acked == [] and resumes(table) == []  # the round is not over
    assert sum(written) == len(keys) and all(written)
    assert sorted(stream.acked) == list(range(40))
    assert resumes(table) == [40]
    # The resume offset comes after every checkpoint of the round.
    assert table.changelog[-1][1].startswith(b"\x00resume")


async def test_a_full_checkpoint_acknowledges_what_earlier_shares_wrote() -> None:
    table, stream, st, keys = await durable_ward(20)
    first = await st.checkpoint_idle(share=(0, 5))
    assert first > 0 and stream.acked == []
    # A rebalance checkpoints everything at once: the share's keys are not written again.
    assert await st.checkpoint_idle() == len(keys) - first
    assert sorted(stream.acked) == list(range(20)) and resumes(table) == [20]


async def test_a_key_busy_in_the_sink_waits_for_the_next_round() -> None:
    table, stream = Table(), Stream()
    st = states(table)
    st.resume_offsets([(TOPIC, 0)])
    durable = await apply(st, stream, "a", 0)
    for i in range(3):
        assert await st.checkpoint_idle(share=(i, 3)) == 0
    assert stream.acked == [] and resumes(table) == []
    await durable()
    for i in range(3):
        await st.checkpoint_idle(share=(i, 3))
    assert stream.acked == [0] and resumes(table) == [1]


async def test_shares_split_a_ward_evenly() -> None:
    counts = [0] * 10
    for i in range(1000):
        counts[share_of(f"device/P{i:04d}", 10)] += 1
    assert min(counts) >= 70 and max(counts) <= 130, counts
