"""The worker's sink: events and waveforms into PostgreSQL in batches, with the
source message acknowledged only once everything it produced is durable.

Agents `put` one `SinkItem` per source message and go on with the next message;
a background task flushes every ``max_delay`` seconds or ``max_events`` events:
one atomic `append_batch` for all the events, one insert for the waveforms, then
each item's ``on_durable`` callback in order (the agent's checkpoint and ack).
So a crash at any point leaves, for every message, either nothing acknowledged (it
is consumed again; ids derived from its offset make the re-append a no-op) or
everything durable.

Back-pressure: while the database is unreachable the flush retries with back-off
and keeps its items; once ``max_pending`` items wait, `put` blocks, the agents stop
pulling and Kafka keeps the rest. Nothing is dropped. A batch the store refuses
for a non-transient reason (an invalid event) is retried item by item, so one bad
message is dead-lettered (``on_rejected``) without holding up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from event_store.events import Appended, AppendRequest, NewEvent
from event_store.exceptions import EventStoreError, StoreUnavailable
from event_store.postgres import PostgresRecorder
from event_store.waveforms import WaveformChunk, WaveformStore
from streams.metrics import Histogram

__all__ = ["ALARM_EVENTS", "LATENCY_BOUNDS_S", "SinkItem", "BatchingSink", "SinkStats"]

log = logging.getLogger(__name__)


ALARM_EVENTS = frozenset({"AlertRaised", "AlertEscalated", "AlertResolved"})
"""The alarm events whose latency the sink records (as bench/ward.py reports them)."""
LATENCY_BOUNDS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class SinkItem:
    events: list[NewEvent]
    waveforms: list[WaveformChunk] = field(default_factory=list)
    on_durable: Callable[[], Awaitable[None]] | None = None
    on_rejected: Callable[[str], Awaitable[None]] | None = None
    """Called with the store's reason when this item's events cannot ever be stored."""


@dataclass(slots=True)
class SinkStats:
    batches: int = 0
    events: int = 0
    waveforms: int = 0
    rejected: int = 0
    retries: int = 0
    last_flush_s: float = 0.0
    unavailable_since: float | None = None
    """`time.monotonic()` when the store stopped taking writes, while it does not (else None)."""
    alarm_latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BOUNDS_S))
    """Seconds from an alarm event's device time (``occurred_at``) to the commit of the
    batch that wrote it (`ALARM_EVENTS`; those stored already, by a worker before a
    restart, are not counted again). The device's clock against the worker's."""


def _requests(items: list[SinkItem]) -> list[AppendRequest]:
    # One request per stream and message, in arrival order: a patient's events keep
    # their order inside the batch.
    out: list[AppendRequest] = []
    for item in items:
        by_stream: dict[str, list[NewEvent]] = {}
        for e in item.events:
            by_stream.setdefault(e.stream_id, []).append(e)
        out += [AppendRequest(s, tuple(es)) for s, es in by_stream.items()]
    return out


class BatchingSink:
    def __init__(self, recorder: PostgresRecorder, waveforms: WaveformStore, *, max_events: int = 5000,
                 max_delay: float = 0.05, max_pending: int = 20_000) -> None:
        self._recorder = recorder
        self._waveforms = waveforms
        self._max_events = max_events
        self._max_delay = max_delay
        self._items: list[SinkItem] = []
        self._pending_events = 0
        self._room = asyncio.Semaphore(max_pending)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one flush at a time
        self._task: asyncio.Task[None] | None = None
        self.stats = SinkStats()

    @property
    def recorder(self) -> PostgresRecorder:
        """The store this sink appends to (its pool also serves the worker's reads)."""
        return self._recorder

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vigil-sink")

    async def stop(self) -> None:
        """Flush what is pending, then stop."""
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def put(self, item: SinkItem) -> None:
        await self._room.acquire()
        self._items.append(item)
        self._pending_events += len(item.events) + len(item.waveforms)
        if self._pending_events >= self._max_events:
            self._wake.set()

    async def drain(self) -> None:
        """Flush everything put so far (used before partitions move to another worker)."""
        while self._items:
            await self._flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._max_delay)
            self._wake.clear()
            try:
                await self._flush()
            except Exception:  # never let the sink die silently: log, keep the items, retry
                log.exception("sink flush failed; retrying")
                await asyncio.sleep(1.0)

    async def _flush(self) -> None:
        async with self._lock:
            if not self._items:
                return
            items, self._items = self._items, []
            self._pending_events = 0
            t0 = time.perf_counter()
            try:
                await self._write(items)
            except BaseException:
                self._items[:0] = items  # put them back, in order, for the next attempt
                self._pending_events += sum(len(i.events) + len(i.waveforms) for i in items)
                raise
            for item in items:
                if item.on_durable is not None:
                    await item.on_durable()
                self._room.release()
            self.stats.batches += 1
            self.stats.last_flush_s = time.perf_counter() - t0

    async def _write(self, items: list[SinkItem]) -> None:
        delay = 0.2
        while True:
            try:
                await self._write_once(items)
                self.stats.unavailable_since = None
                return
            except StoreUnavailable as e:
                if self.stats.unavailable_since is None:
                    self.stats.unavailable_since = time.monotonic()
                self.stats.retries += 1
                log.warning("event store unavailable, holding %d messages, retry in %.1f s: %s", len(items), delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _observe(self, items: list[SinkItem], appended: Appended) -> None:
        now = time.time()
        for item in items:
            for e in item.events:
                if e.event_type in ALARM_EVENTS and appended.written(e.event_id):
                    self.stats.alarm_latency.observe(now - e.occurred_at.timestamp())

    async def _write_once(self, items: list[SinkItem]) -> None:
        try:
            self._observe(items, await self._recorder.append_batch(_requests(items)))
        except StoreUnavailable:
            raise
        except EventStoreError:
            # Not transient: find the item(s) the store refuses, store the rest.
            for item in items:
                try:
                    self._observe([item], await self._recorder.append_batch(_requests([item])))
                except StoreUnavailable:
                    raise
                except EventStoreError as e:
                    self.stats.rejected += 1
                    item.events = []
                    item.waveforms = []
                    if item.on_rejected is not None:
                        await item.on_rejected(str(e)[:500])
        await self._waveforms.write([w for item in items for w in item.waveforms])
        self.stats.events += sum(len(i.events) for i in items)
        self.stats.waveforms += sum(len(i.waveforms) for i in items)
