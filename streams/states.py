"""Per-patient state in a changelog-backed Faust table, checkpointed so that a
restarted worker resumes every patient exactly where it was.

The protocol (see `streams.app` for why it gives an exactly-once effect):

- The agent keeps a *working* state per key in memory and applies each message
  to it at once; the message's events go to the batching sink.
- When the sink has made a message's events durable, `durable` is called: the
  message joins the key's *unacknowledged* list.
- Every ``interval`` seconds, `checkpoint_idle` takes each key whose messages
  are all durable (none in the sink) and has unacknowledged ones: its working
  state now covers exactly the durable messages, so it is written to the table
  (store + changelog), and only then are those messages acknowledged.

So an acknowledged message is always covered by a checkpoint in the changelog
(Faust flushes the producer before committing offsets), and a checkpoint never
covers a message whose events are not durable. After a crash, messages after the
committed offset are consumed again; those a checkpoint covers are skipped (the
state records the last offset it applied), the rest are processed again from
exactly the state that processed them before, giving the same events.

Checkpointing every few seconds instead of every message keeps the changelog at
one snapshot per patient per interval, not per chunk; the cost is that a crash
replays up to one interval of input (idempotently).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["PatientStates"]

S = TypeVar("S")


class PatientStates(Generic[S]):
    def __init__(self, table: Any, encode: Callable[[S], bytes], decode: Callable[[bytes], S]) -> None:
        self._table = table
        self._encode = encode
        self._decode = decode
        self._working: dict[str, tuple[int, S]] = {}       # key -> (source partition, state)
        self._in_sink: defaultdict[str, int] = defaultdict(int)  # messages applied, events not yet durable
        self._unacked: dict[str, list[tuple[Any, Any]]] = {}     # key -> [(stream, event)] durable, not acked
        self.checkpoints = 0

    def get(self, key: str) -> S | None:
        """The working state, or the table's checkpoint the first time after a start
        or a rebalance, or None for a new key."""
        hit = self._working.get(key)
        if hit is not None:
            return hit[1]
        stored = self._table.data.get(key.encode())
        return None if stored is None else self._decode(stored)

    def applied(self, key: str, partition: int, state: S) -> None:
        """A message was applied to ``key``'s state; its events are on their way to the sink."""
        self._working[key] = (partition, state)
        self._in_sink[key] += 1

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

    async def checkpoint_idle(self, partitions: set[int] | None = None) -> int:
        """Checkpoint and acknowledge every key whose applied messages are all durable
        (optionally only keys of ``partitions``); return how many were written. Yields
        to the event loop between keys, so a large ward does not stall consumption."""
        written = 0
        for key in list(self._unacked):
            if self._in_sink[key] or key not in self._working:
                continue
            partition, state = self._working[key]
            if partitions is not None and partition not in partitions:
                continue
            data = self._encode(state)
            self._table.data[key.encode()] = data
            self._table.send_changelog(partition, key.encode(), data)
            for stream, event in self._unacked.pop(key):
                await stream.ack(event)
            written += 1
            if written % 50 == 0:
                await asyncio.sleep(0)
        self.checkpoints += written
        return written

    def forget(self, partitions: set[int]) -> None:
        """Drop what belongs to partitions this worker no longer owns (after `checkpoint_idle`)."""
        gone = [k for k, (p, _) in self._working.items() if p in partitions]
        for key in gone:
            del self._working[key]
            self._in_sink.pop(key, None)
            self._unacked.pop(key, None)
