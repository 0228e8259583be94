"""Per-patient state in a changelog-backed Faust table, checkpointed so that a
restarted worker, or the next owner of a partition, resumes every patient exactly
where it was.

The protocol (see `streams.app` for why it gives an exactly-once effect):

- Every message an agent takes from an input partition is `consumed` first: it is
  *open* until everything it caused is safe.
- The agent keeps a *working* state per key in memory and applies each message
  to it at once; the message's events go to the batching sink.
- When the sink has made a message's events durable, `durable` is called: the
  message joins the key's *unacknowledged* list.
- Every ``interval`` seconds, `checkpoint_idle` takes each key whose messages
  are all durable (none in the sink) and has unacknowledged ones: its working
  state now covers exactly the durable messages, so it is written to the table
  (store + changelog), and only then are those messages acknowledged and closed.
  The worker spreads the writing over the interval: each tick writes one *share*
  of the keys (`share_of`), and the acknowledgements of the whole round wait for
  its last share. Acknowledging only once a round, as when every key was written
  at once, keeps the acknowledgements (and so Faust's commits) on the timeline the
  crash tests were proven on; only the snapshots' CPU and changelog bytes are
  spread, which at a large ward came in one burst that delayed every message
  behind it.
  A message that needs no state change closes once its outcome is safe: at once
  if a checkpoint already covers it (`covered`), when its dead letter is on the
  broker if it was refused (`dead_lettered`).
- A message that comes after a gap in its partition's offsets is not applied: the
  partition is read again from the gap (see `_OpenOffsets`).
- Then, for each input partition, the *resume offset* is written to the same
  table, in the same changelog partition, after those checkpoints: the lowest
  offset still open, or one past the last message consumed. Everything below it
  is covered by a checkpoint or finished for good.

So the resume offset in the changelog never passes a message whose effects are
not all durable: a changelog partition keeps its records in order, so a resume
offset that reached Kafka implies the checkpoints written before it did too. It
does not depend on Faust's committed offset, which can run ahead of what is safe
(faust-streaming #606: with acknowledgements out of offset order, as here, a
commit can pass the one message still in flight). After a rebalance or a crash the
next owner recovers the table, reads the resume offset (`resume_offsets`), and the
worker moves the group's committed offset back to it before Faust seeks there;
from it, messages a checkpoint covers are skipped (each state records the last
offset it applied) and the rest are processed again from exactly the state that
processed them before, giving the same events.

Checkpointing every few seconds instead of every message keeps the changelog at
one snapshot per patient per interval, not per chunk; the cost is that a crash
replays up to one interval of input (idempotently).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Generic, TypeVar

from faust.stores.rocksdb import Store as RocksDBStore

__all__ = ["PatientStates", "CHECKPOINT_INTERVAL_S"]

CHECKPOINT_INTERVAL_S = 10.0
"""The worker's default seconds between state checkpoints. At a ward of 1,000 beds the
checkpoints (snapshots, and the changelog records the producer sends) took about 14 %
of the worker's core when they came every 5 s (py-spy); every 10 s halves that, for up
to 5 s more input to replay after a crash."""

S = TypeVar("S")

log = logging.getLogger(__name__)

_RESUME = b"\x00resume\x00"  # table keys of resume offsets; no patient key starts with a NUL byte


def _resume_key(topic: str, partition: int) -> bytes:
    return _RESUME + f"{topic}\x00{partition}".encode()


def share_of(key: str, shares: int) -> int:
    """The share (0 to ``shares`` - 1) of the checkpoint round that writes ``key``:
    fixed per key, and even over a ward."""
    return zlib.crc32(key.encode()) % shares


TAKE, SKIP, REWIND, GAP = "take", "skip", "rewind", "gap"
"""What `_OpenOffsets.consumed` says of a message: apply it; skip it (fetched before a
rewind took effect); skip it and read the partition again from the first missing
offset; apply it, the offsets before it being absent from the log (a rewind found them
missing again)."""


class _OpenOffsets:
    """The messages of one input partition consumed since it was assigned, and which
    of them are still open (each with a count of what it still waits for).

    A message whose offset is past the next one expected means offsets in between
    never reached the agent. They may be missing from the log (records of an aborted
    transaction, control records, a retention that deleted them), or the consumer may
    have dropped them. Applying the later message would let its state cover the
    missing ones for good, so the partition is *rewound* instead: read again from the
    first missing offset. Messages that still come from before the rewind took effect
    are skipped (their offsets only grow); the first message whose offset is not past
    the highest seen so far is the partition read again. If it is still past the
    missing offset, those offsets are absent from the log: it is applied, once, with no
    second rewind. A rewind costs the partition about one fetch wait (0.1 s by default),
    so offsets the consumer itself saw absent (`streams.kafka_consumer`: the commit
    marker after each transaction of a gateway that publishes in transactions) are not
    rewound to: the message after them is applied at once
    (tests/integration/test_offset_gaps.py)."""

    __slots__ = ("_open", "_next", "_rewind")

    def __init__(self, start: int | None) -> None:
        self._open: dict[int, int] = {}  # offset -> obligations left
        self._next = start  # one past the last offset consumed; None until the first message
        self._rewind: tuple[int, int] | None = None  # (offset rewound to, highest offset seen since)

    def consumed(self, offset: int) -> str:
        """`TAKE` (opening ``offset``), `SKIP`, `REWIND` (to `rewound_to`) or `GAP`
        (opening ``offset``): see the class docstring."""
        verdict = TAKE
        if self._rewind is not None:
            target, seen = self._rewind
            if offset > seen:
                self._rewind = (target, offset)
                return SKIP
            self._rewind = None
            if offset > target:
                self._next, verdict = offset, GAP
        expected = self._next
        if expected is not None and offset > expected:
            self._rewind = (expected, offset)
            return REWIND
        self._open[offset] = self._open.get(offset, 0) + 1
        self._next = offset + 1 if expected is None else max(expected, offset + 1)
        return verdict

    def not_in_log(self, offset: int) -> None:
        """Take ``offset`` after all, instead of the rewind `consumed` just asked for:
        the offsets before it are known to be absent from the log."""
        self._rewind, self._next = None, offset
        self.consumed(offset)

    @property
    def rewound_to(self) -> int | None:
        """The offset the partition is being read again from, if it is."""
        return None if self._rewind is None else self._rewind[0]

    def hold(self, offset: int) -> None:
        if offset in self._open:
            self._open[offset] += 1

    def release(self, offset: int) -> None:
        left = self._open.get(offset)
        if left is None:
            return
        if left > 1:
            self._open[offset] = left - 1
        else:
            del self._open[offset]

    def resume_at(self) -> int | None:
        """The lowest open offset, else one past the last consumed (None before any)."""
        return min(self._open) if self._open else self._next


class PatientStates(Generic[S]):
    """The states of the keys of ``topics``' messages, kept in ``table``."""

    def __init__(self, table: Any, encode: Callable[[S], bytes], decode: Callable[[bytes], S],
                 topics: Collection[str], rewind: Callable[[str, int, int], None],
                 absent: Callable[[str, int, int, int], bool] | None = None) -> None:
        """``rewind(topic, partition, offset)`` makes the consumer read a partition
        again from ``offset`` (after a gap: see `consumed`); ``absent(topic, partition,
        start, end)`` says whether the consumer read the offsets ``start`` .. ``end`` - 1
        as missing from the log (a gap over them needs no rewind)."""
        self._table = table
        self._encode = encode
        self._decode = decode
        self.topics = frozenset(topics)
        self._working: dict[str, tuple[int, S]] = {}       # key -> (source partition, state)
        self._in_sink: defaultdict[str, int] = defaultdict(int)  # messages applied, events not yet durable
        self._unacked: dict[str, list[tuple[Any, Any]]] = {}     # key -> [(stream, event)] durable, not acked
        self._open: dict[tuple[str, int], _OpenOffsets] = {}     # (topic, partition) -> its open messages
        self._resume_written: dict[tuple[str, int], int] = {}
        self._written: list[tuple[Any, Any]] = []  # checkpointed this round, acknowledged at its end
        self._lock = asyncio.Lock()  # one checkpoint at a time (the timer's and a rebalance's)
        self._rewind = rewind
        self._absent = absent
        self.checkpoints = 0
        self.rewinds = 0
        self.holes = 0
        """Gaps taken without a rewind, the consumer having read their offsets as absent."""

    def get(self, key: str) -> S | None:
        """The working state, or the table's checkpoint the first time after a start
        or a rebalance, or None for a new key."""
        hit = self._working.get(key)
        if hit is not None:
            return hit[1]
        stored = self._table.data.get(key.encode())
        return None if stored is None else self._decode(stored)

    @property
    def held(self) -> int:
        """How many keys' working states are in memory (for the worker's /metrics)."""
        return len(self._working)

    def holds(self, key: str) -> bool:
        """Whether ``key``'s working state is in memory, where care-team commands reach it."""
        return key in self._working

    def hold(self, key: str, partition: int, state: S) -> None:
        """Keep ``key``'s state in memory from now on, before a message is applied to it
        (so that the command follower gives it the commands that come next)."""
        self._working[key] = (partition, state)

    def consumed(self, event: Any) -> bool:
        """An agent took ``event`` from its partition; call before anything else, for
        every message. True: go on, then call exactly one of `applied`, `covered` or
        `dead_lettered`. False: acknowledge the message and leave it; it came after a
        gap, and the partition is read again from the gap (``rewind``), which brings it
        again (see `_OpenOffsets`)."""
        msg = event.message
        part = self._open.get((msg.topic, msg.partition))
        if part is None:  # consumed before `resume_offsets` ran for it (not after a normal assignment)
            part = self._open[msg.topic, msg.partition] = _OpenOffsets(None)
        verdict = part.consumed(msg.offset)
        if verdict == REWIND:
            target = part.rewound_to
            assert target is not None
            if self._absent is not None and self._absent(msg.topic, msg.partition, target, msg.offset):
                part.not_in_log(msg.offset)  # a transaction's commit marker, say: nothing to read again
                self.holes += 1
                return True
            log.warning("%s/%s: offset %s arrived after a gap; reading the partition again from %s",
                        msg.topic, msg.partition, msg.offset, target)
            self.rewinds += 1
            self._rewind(msg.topic, msg.partition, target)
        elif verdict == GAP:
            log.warning("%s/%s: read again, the offsets before %s are not in the log; going on from it",
                        msg.topic, msg.partition, msg.offset)
        return verdict in (TAKE, GAP)

    def applied(self, key: str, partition: int, state: S) -> None:
        """A message was applied to ``key``'s state; its events are on their way to the sink."""
        self._working[key] = (partition, state)
        self._in_sink[key] += 1

    def covered(self, key: str, stream: Any, event: Any) -> None:
        """``key``'s state already covers ``event`` (consumed again after a restart):
        acknowledged and closed with the checkpoint that covers it."""
        self._unacked.setdefault(key, []).append((stream, event))

    def dead_lettered(self, stream: Any, event: Any, sent: Awaitable[Any], *, applied: bool) -> None:
        """``event`` was refused and its dead letter handed to the producer: it closes
        once ``sent`` (the producer's future) succeeds, and, if it was ``applied`` to a
        state (its events refused by the store), once that state is checkpointed too."""
        msg = event.message
        part = self._open.get((msg.topic, msg.partition))
        if part is None:
            return
        part.hold(msg.offset)
        if not applied:
            part.release(msg.offset)

        def on_sent(fut: asyncio.Future[Any]) -> None:
            if not fut.cancelled() and fut.exception() is None:
                part.release(msg.offset)

        asyncio.ensure_future(sent).add_done_callback(on_sent)

    def keys_of(self, match: Callable[[str], bool]) -> list[tuple[str, int, S]]:
        """``(key, partition, working state)`` of the keys this worker holds that ``match``."""
        return [(k, p, st) for k, (p, st) in self._working.items() if match(k)]

    def changed(self, key: str, partition: int, state: S) -> Callable[[], Awaitable[None]]:
        """Like `applied`, for a change that comes from no Kafka message (a care-team
        command read from the log): the returned callback, for the sink, needs no ack."""
        self.applied(key, partition, state)

        async def done() -> None:
            self._in_sink[key] -= 1
            self._unacked.setdefault(key, [])  # checkpointed at the next interval

        return done

    def durable(self, key: str, stream: Any, event: Any) -> Callable[[], Awaitable[None]]:
        """The sink's ``on_durable`` callback for one message of ``key``."""
        async def done() -> None:
            self._in_sink[key] -= 1
            self._unacked.setdefault(key, []).append((stream, event))

        return done

    async def checkpoint_idle(self, partitions: set[int] | None = None, *,
                              share: tuple[int, int] | None = None) -> int:
        """Checkpoint every key whose applied messages are all durable (optionally
        only keys of ``partitions``), acknowledge what the checkpoints cover, then
        write the resume offset of each input partition that moved; return how many
        keys were written. With ``share=(i, n)`` only the keys of share ``i`` of ``n``
        are written, and their messages are acknowledged when share ``n - 1`` is
        (the end of the round); without, everything written so far this round is
        acknowledged too. Yields to the event loop every 50 keys, so a large ward
        does not stall consumption."""
        async with self._lock:
            written = 0
            for key in list(self._unacked):
                if share is not None and share_of(key, share[1]) != share[0]:
                    continue
                if self._in_sink[key]:
                    continue
                hit = self._working.get(key)
                if hit is not None and partitions is not None and hit[0] not in partitions:
                    continue
                self._written += self._unacked.pop(key)
                if hit is not None:  # else only `covered` messages: the table has the state already
                    partition, state = hit
                    data = self._encode(state)
                    self._put(partition, key.encode(), data)
                    written += 1
                    if written % 50 == 0:
                        await asyncio.sleep(0)
            self.checkpoints += written
            if share is None or share[0] == share[1] - 1:
                await self._acknowledge(partitions)
            return written

    async def _acknowledge(self, partitions: set[int] | None) -> None:
        """Acknowledge and close the messages the round's checkpoints cover, then write
        the resume offsets after them, in the same changelog partitions (see the
        module docstring)."""
        acks, self._written = self._written, []
        for n, (stream, event) in enumerate(acks, 1):
            await stream.ack(event)
            msg = event.message
            part = self._open.get((msg.topic, msg.partition))
            if part is not None:
                part.release(msg.offset)
            if n % 1000 == 0:
                await asyncio.sleep(0)
        for (topic, partition), part in self._open.items():
            if partitions is not None and partition not in partitions:
                continue
            resume = part.resume_at()
            if resume is None or self._resume_written.get((topic, partition)) == resume:
                continue
            rkey, value = _resume_key(topic, partition), str(resume).encode()
            self._put(partition, rkey, value)
            self._resume_written[topic, partition] = resume

    def _put(self, partition: int, key: bytes, value: bytes) -> None:
        """Write ``key`` into the table's store and its changelog, in ``partition``.

        Faust's RocksDB store (``rocksdb://``) keeps one database per partition and
        takes the partition of a write from the event being processed; a checkpoint
        runs outside any event, so the write goes to that partition's database here
        (Faust 0.15's store API: `_db_for_partition`, `_key_index`)."""
        store = self._table.data
        if isinstance(store, RocksDBStore):
            store._db_for_partition(partition).put(key, value)
            store._key_index[key] = partition
        else:
            store[key] = value
        self._table.send_changelog(partition, key, value)

    def resume_offsets(self, assigned: Collection[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """For each newly assigned ``(topic, partition)`` of this table's topics, the
        offset to resume from, read from the recovered table (0 if none was written:
        read the partition from its start). Call once the table is recovered and before
        any of their messages is consumed; tracking of those partitions starts there."""
        out: dict[tuple[str, int], int] = {}
        for topic, partition in assigned:
            if topic not in self.topics:
                continue
            stored = self._table.data.get(_resume_key(topic, partition))
            resume = 0 if stored is None else int(stored)
            out[topic, partition] = resume
            # Unknown: the first message read (the log may no longer start at 0) starts the tracking.
            self._open[topic, partition] = _OpenOffsets(None if stored is None else resume)
            self._resume_written[topic, partition] = resume
        return out

    def forget(self, partitions: set[int]) -> None:
        """Drop what belongs to partitions this worker no longer owns (after `checkpoint_idle`)."""
        gone = [k for k, (p, _) in self._working.items() if p in partitions]
        for key in gone:
            del self._working[key]
            self._in_sink.pop(key, None)
            self._unacked.pop(key, None)
        for tp in [tp for tp in self._open if tp[1] in partitions]:
            del self._open[tp]
            self._resume_written.pop(tp, None)

    def resume_written(self) -> Mapping[tuple[str, int], int]:
        """The resume offset last written for each tracked input partition."""
        return dict(self._resume_written)
