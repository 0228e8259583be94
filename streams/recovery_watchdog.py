"""A watchdog for Faust's table recovery: a partition whose changelog never arrives
makes the worker rejoin its group, rather than wait for ever.

After a rebalance the worker reads each newly assigned table partition's changelog
before it processes that partition's input. In the scaling test (three workers on
two cores) that read sometimes never starts: Faust logs "No event received for
active tp ... since recovery start" every 5 s, the records are on the broker, and
aiokafka keeps sending fetch requests for the partition (Faust's own check,
`verify_recovery_event_path`, stays silent), yet no record reaches the recovery. The
partition's patients are then not processed at all. Seen in 5 of 23 runs of the
scaling test on 2026-11-26 (then 16 in a row passed, 8 of them beside a CPU hog), and
about 3 in 13 in an earlier session; a stack dump of one stalled worker showed its
fetch loop waiting inside Faust's `getmany` for the next batch, not in a hand-over to
an agent. The cause inside Faust or aiokafka is not found, and the remedy below has
not yet met a real stall (none came while it was in).

Faust handles a rebalance during a recovery (it restarts the recovery on the new
assignment), so the remedy is to ask for one: when a partition with records still
to read has had none for `STALL_S` seconds, the worker logs what its consumer
knows about the partition (for the next person to look) and asks the group
coordinator for a rejoin. The remedy is cheap and safe because a rejoin is what a
worker joining or leaving causes anyway; no state is lost (tables come back from
their changelogs, input from the committed and resume offsets).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["STALL_S", "stalled_partitions", "describe_partitions", "request_rejoin", "watch"]

log = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0

STALL_S = 30.0
"""Seconds without a changelog record, for a partition with some still to read, that
count as a stall. A healthy recovery in the tests and the ward bench reads its
first record within a second; a 1,000-bed ward's whole changelog takes about 2 s."""


def stalled_partitions(recovery: Any, now: float, stall_s: float = STALL_S) -> list[Any]:
    """The active changelog partitions of ``recovery`` (Faust's `Recovery`) that still
    have records to read and have received none for ``stall_s`` seconds (counting
    from the recovery's start for those that never received one). Empty when no
    recovery is running. ``now`` is `time.monotonic()`."""
    started = recovery._recovery_started_at
    if not recovery.in_recovery or started is None:
        return []
    received: Mapping[Any, float] = recovery._active_events_received_at
    remaining = recovery.active_remaining()
    return sorted((tp for tp, count in remaining.items()
                   if count > 0 and now - received.get(tp, started) >= stall_s), key=str)


def describe_partitions(consumer: Any, tps: list[Any]) -> str:
    """What the Faust consumer and its aiokafka consumer know about ``tps``: for the log."""
    parts = [f"flow_active={consumer.flow_active}"]
    try:
        subscription = consumer._thread._consumer._fetcher._subscriptions.subscription
        buffered = consumer._thread._consumer._fetcher._records
    except AttributeError:
        subscription, buffered = None, {}
    for tp in tps:
        fields = [f"faust active={tp in (consumer._active_partitions or ())}",
                  f"paused={tp in consumer._paused_partitions}", f"buffered={tp in consumer._buffered_partitions}",
                  f"read_offset={consumer._read_offset.get(tp)}", f"fetched_records={tp in buffered}"]
        assignment = subscription.assignment if subscription is not None else None
        state = assignment.state_value(tp) if assignment is not None else None
        if state is not None:
            fields.append(f"position={state._position if state.has_valid_position else None} "
                          f"aiokafka_paused={state.paused} awaiting_reset={state.awaiting_reset}")
        parts.append(f"{tp}: {', '.join(fields)}")
    return "; ".join(parts)


def request_rejoin(consumer: Any) -> None:
    """Ask the group coordinator, on the consumer thread's loop where aiokafka lives,
    for a rejoin (a rebalance of the group)."""
    thread = consumer._thread
    thread.thread_loop.call_soon_threadsafe(thread._consumer._coordinator.request_rejoin)


async def watch(app: Any) -> None:
    """Run for ever, checking the recovery of Faust ``app`` every `CHECK_EVERY_S`; on a
    stall, log and request a rejoin, at most once per `STALL_S`. It reads Faust's and
    aiokafka's internals, which a version change can move: an error is logged, never
    let out (an app task's error would stop the worker)."""
    last_rejoin = -STALL_S
    while True:
        await asyncio.sleep(CHECK_EVERY_S)
        now = time.monotonic()
        try:
            stalled = stalled_partitions(app.tables.recovery, now)
            if stalled and now - last_rejoin >= STALL_S:
                log.warning("table recovery stalled for %.0f s on %s; rejoining the group",
                            STALL_S, describe_partitions(app.consumer, stalled))
                request_rejoin(app.consumer)
                last_rejoin = now
        except Exception:
            log.exception("the recovery watchdog failed; it tries again in %.0f s", CHECK_EVERY_S)
