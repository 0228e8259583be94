"""Faust's aiokafka consumer, with the fetch wait as a setting and resume offsets
that win over Faust's seek.

Faust builds its consumer with ``fetch_max_wait_ms=1500``, fixed. The broker answers
a fetch as soon as any partition in it has data, or when that wait runs out. But
aiokafka leaves out of each fetch the partitions whose records it has fetched and
Faust has not taken yet, so on a busy worker a fetch often asks only for partitions
that have nothing new (an idle FHIR topic, a quiet partition) and waits out the full
1.5 s while the busy ones fill up. On a ward of 400 beds that held each message
about 1.1 s (median) before the worker saw it, and put alarm latency p99 at 1.8 s
(bench/ward.py); with 100 ms the median was 10 ms. A shorter wait costs one empty
fetch round trip per wait when the topics are idle.

After a rebalance Faust seeks every input partition to the group's committed offset,
but skips one of 0 (as does aiokafka's `seek_to_committed`). The worker puts the
offsets it must resume from in ``resume_at`` while the tables recover, and
`perform_seek` seeks there after Faust's own seek, so they are the last word. Seen
in the kill -9 fault test without it: a worker killed in its first checkpoint round
left checkpoints but no resume offset (so 0), and its successor, though it had
sought to 0 from the recovery callback, read from near the end of the partitions,
skipping messages (we did not find which of Faust's steps moved it).

Faust hands each fetched message to its conductor through `Service.wait_first`, racing
the delivery against the consumer's ``suspend_flow`` event (set during a rebalance):
four tasks and an `asyncio.wait` per message, about 20 us, which at a ward of 1,000
beds (2,000 messages a second) was 4-5 % of the worker's one core (py-spy). Our drain
loop `_drain_messages` awaits the delivery itself while the flow runs, and delivers
nothing while it is suspended (those records were fetched for the old assignment;
Faust seeks again before the flow resumes, and would cancel their deliveries too). A
delivery that has started when a rebalance begins waits in the conductor for the flow
to resume, and its event is then one of the old generation, which the stream skips;
one waiting for room in a full stream buffer is cancelled by the rebalance, which
clears the buffers and their waiting puts. (Racing such deliveries against the
rebalance, as Faust does, was tried: a 1,000-bed ward then fell behind in 2 of 2 runs,
probably because under a backlog the buffers are full most of the time and most
messages paid the race.)

The loop yields to the event loop after each delivery, as `wait_first` did, so the
agents take messages one by one as they come: yielding only every 100 messages (as
Faust's loop does besides) made the worker slower at 800 beds, 1.07-1.11 ms of CPU per
patient-second against 1.02-1.04 with Faust's loop, and alarm p50 365-463 ms against
124-168; yielding after each, 0.98-1.01 ms (bench/ward.py, runs alternated).

Seeks go through `seek_wait`, which runs them in the consumer's thread. Faust's
`seek` calls aiokafka's from the caller's thread, and aiokafka's fetcher is not
thread-safe: the seek deletes the partition's fetched records while the consumer
thread may be between reading and deleting that same entry in `fetched_records`.
Seen once in the kill -9 fault test: ``KeyError: TopicPartition(...ecg, partition=2)``
in `fetched_records`, which crashed the worker right after a restart.
A seek must also move Faust's read offset of the partition (`seek_resume`), as
Faust's `seek` does: the fetch loop drops records before it, and Faust's own seek has
set it to the committed offset. Without that (2026-11-27, the commit that brought in
`seek_wait`), a resume offset before the committed one was sought, and then its
first records were dropped as "before the seek": the scaling test lost a vitals
message and restarted an ECG chain after a rebalance, and the worker logged "offset
164 arrived after a gap".

A worker that finds a gap in a partition's offsets (`streams.states`) asks for it to
be read again from the gap (`rewind`). The fetch loop does that seek itself, between
two fetched batches, and delivers none of the partition's records until then: a seek
from elsewhere would race the loop, which sets the read offset after each delivery and
could set it back past the seek, dropping the records read again. A rebalance cancels
the rewinds asked for (the resume offsets decide where the new assignment starts).
Offsets that are simply not in the log are not rewound to: the fetch loop remembers,
per partition, where two records it delivered one after the other (no seek, nothing
held back between them) have offsets apart, and `absent` vouches for that hole when
the later record reaches its agent. Each record of a gateway that publishes in Kafka
transactions is followed by a commit marker, which takes an offset and is never
delivered: without this, every one of its messages would cost a rewind.

Before a rebalance and at shutdown Faust waits (`wait_empty`) until every message the
agents have taken is acknowledged, and the worker acknowledges a message only with the
checkpoint that covers it, at the end of a checkpoint round: every 10 s, so Faust
would wait up to a round (a worker given SIGTERM took over 15 s to exit in the scaling
test). The worker sets ``settle``, which makes everything in flight durable and
checkpoints it at once; `wait_empty` calls it (a few times, for the messages the agents
were still working on) before Faust's own wait, which then finds little or nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

__all__ = ["consumer_class"]

log = logging.getLogger(__name__)

MAX_HOLES = 4096
"""Holes kept per partition for `absent`; each is asked about, and dropped, when the
message after it reaches its agent, so only holes no agent asks about pile up."""
SETTLE_ATTEMPTS = 5
"""Times `wait_empty` settles before leaving the rest to Faust's wait."""
SETTLE_PAUSE_S = 0.05
"""Pause after each settling, in which an agent may finish the message it was working on."""


def consumer_class(fetch_max_wait_ms: int, settle: Callable[[], Awaitable[None]] | None = None) -> type[Consumer]:
    """A Faust consumer class whose aiokafka consumer waits at most ``fetch_max_wait_ms``
    for a fetch, which seeks to ``resume_at`` after each `perform_seek`, and which awaits
    ``settle`` before Faust waits for the messages in flight (see the module docstring).
    Set it as the app's ``transport.Consumer`` before the consumer exists."""
    if fetch_max_wait_ms < 1:
        raise ValueError(f"fetch_max_wait_ms must be positive, got {fetch_max_wait_ms}")

    class _Thread(AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka hands these to its Fetcher when the consumer starts.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            # A gateway that publishes in transactions: its aborted records never
            # happened, and a transaction still open may yet abort (Faust reads
            # committed only when it produces in transactions itself, which Vigil does not).
            # The cost: a transaction left open holds its partition back until the
            # broker aborts it (the producer's transaction.timeout.ms, 60 s by default).
            consumer._isolation_level = "read_committed"
            return consumer

    class _Consumer(Consumer):
        Thread = _Thread
        max_wait_ms = fetch_max_wait_ms

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.resume_at: dict[Any, int] = {}  # TP -> offset, for the next perform_seek
            self._rewinds: dict[Any, int] = {}  # TP -> offset, for the fetch loop to seek to
            self._delivered: dict[Any, int] = {}  # TP -> last offset delivered since the last seek
            self._holes: dict[Any, dict[int, int]] = {}  # TP -> {offset after a hole: its first offset}
            self.settle = settle

        async def wait_empty(self) -> None:
            """Settle what is in flight (``settle``), then Faust's own wait for the rest."""
            if self.settle is not None:
                for _ in range(SETTLE_ATTEMPTS):
                    self._clean_unacked_messages()
                    if not self._unacked_messages or self.should_stop:
                        break
                    await self.settle()
                    await asyncio.sleep(SETTLE_PAUSE_S)
            await super().wait_empty()

        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            return _Thread(self, loop=self.loop, beacon=self.beacon)

        def absent(self, tp: Any, start: int, end: int) -> bool:
            """Whether the fetch loop delivered ``start`` - 1 and then ``end`` with
            nothing between them from the log (see the module docstring): offsets
            ``start`` .. ``end`` - 1 are not in it. Answered once per hole."""
            holes = self._holes.get(tp)
            if holes is None or holes.get(end) != start:
                return False
            del holes[end]
            return True

        def _hole(self, tp: Any, start: int, end: int) -> None:
            holes = self._holes.setdefault(tp, {})
            holes[end] = start
            if len(holes) > MAX_HOLES:  # never asked about (a message no agent checks): the oldest go
                del holes[next(iter(holes))]

        def _forget(self, tps: Iterable[Any]) -> None:
            """A seek: the next record of these partitions follows no delivered one."""
            for tp in tps:
                self._delivered.pop(tp, None)

        async def seek(self, partition: Any, offset: int) -> None:
            await super().seek(partition, offset)
            self._forget((partition,))  # (a record the loop delivered meanwhile came from before the seek)

        def rewind(self, tp: Any, offset: int) -> None:
            """Read ``tp`` again from ``offset``: the fetch loop delivers none of its
            records until it has sought there (see the module docstring)."""
            self._rewinds[tp] = min(offset, self._rewinds.get(tp, offset))

        async def perform_seek(self) -> None:
            self._rewinds.clear()  # asked for by the old assignment: the resume offsets decide now
            await super().perform_seek()
            self._delivered.clear()  # (a record the loop delivered meanwhile came from before the seek)
            pending, self.resume_at = self.resume_at, {}
            assigned = self.assignment()
            wanted = {tp: offset for tp, offset in pending.items() if tp in assigned}
            if wanted:
                await self.seek_resume(wanted)

        async def seek_resume(self, offsets: dict[Any, int]) -> None:
            """Seek ``offsets`` in the consumer's thread (`seek_wait`: see the module
            docstring), and move each partition's read offset there, as Faust's `seek`
            does: `_drain_messages` drops records before a partition's read offset, and
            Faust's `perform_seek` set it to the committed offset, which can be past the
            resume offset (faust-streaming #606)."""
            await self.seek_wait(offsets)
            self._forget(offsets)
            self._read_offset.update({tp: offset if offset else None for tp, offset in offsets.items()})

        async def _drain_messages(self, fetcher: Any) -> None:
            """Faust's fetch loop (run by its Fetcher service): take the records
            `getmany` yields and hand each to the conductor, keeping Faust's
            bookkeeping (read offsets, offset gaps, commits every
            ``broker_commit_every`` acks); see the module docstring for the hand-over."""
            deliver = self.callback
            read_offset, rewinds, delivered = self._read_offset, self._rewinds, self._delivered
            acks_enabled_for = self.app.topics.acks_enabled_for
            stopped: tuple[type[BaseException], ...] = (asyncio.CancelledError, *self.consumer_stopped_errors)
            try:
                while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                    if rewinds:
                        await self._seek_rewinds()
                    self.diag.set_flag(CONSUMER_FETCHING)
                    records = self.getmany(timeout=1.0)
                    await asyncio.sleep(0)  # getmany may return at once, again and again
                    if self.should_stop:
                        continue
                    async for tp, message in records:
                        if tp in rewinds:
                            delivered.pop(tp, None)
                            continue  # fetched before the rewind; fetched again after it
                        last = read_offset[tp]
                        if last is not None and message.offset < last:
                            continue  # before where a seek put the partition
                        if last and message.offset - last > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, last + 1, message.offset)
                        if self._commit_every is not None and self._n_acked >= self._commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if not self.suspend_flow.is_set():
                            before = delivered.get(tp)
                            if before is not None and message.offset > before + 1:
                                self._hole(tp, before + 1, message.offset)
                            delivered[tp] = message.offset
                            await deliver(message)
                            await asyncio.sleep(0)  # let the agent take it now (see above)
                        else:
                            delivered.pop(tp, None)
                        read_offset[tp] = message.offset
                    self.diag.unset_flag(CONSUMER_FETCHING)
            except stopped:
                if self.transport.app.should_stop:
                    return  # the worker is stopping
                raise
            except Exception:
                log.exception("the consumer's fetch loop failed")
                raise
            finally:
                self.diag.unset_flag(CONSUMER_FETCHING)

        async def _seek_rewinds(self) -> None:
            assigned = self.assignment()
            wanted = {tp: offset for tp, offset in self._rewinds.items() if tp in assigned}
            self._rewinds.clear()
            if wanted:
                log.info("reading again from %s", sorted((str(tp), o) for tp, o in wanted.items()))
                await self.seek_resume(wanted)

    return _Consumer
