"""How late the worker's event loop gets to what is due: the check on "CPU-heavy work
never blocks the event loop longer than a chunk's worth".

The worker runs every agent on one event loop, so while one step runs (a chunk
through the ECG chain, a collector pass, a share of checkpoints, a sink batch being
encoded) nothing else does: a message that arrives waits, and so does `/healthz`.
`LoopDelay.run` is a probe task that asks to be woken every `PROBE_INTERVAL_S` and
records how late it woke. That delay is what anything that became due at that moment
waited before the loop could look at it: one long step, or a queue of short ones.
(Node.js's ``monitorEventLoopDelay`` measures the same.) A chunk holds one second of
ECG; a step that held the loop longer would stall every patient behind it.

It is not the measure of keeping up: a worker that falls behind its input leaves
the backlog on the broker and in the consumer's fetch buffers, not in the loop's
queue, so its loop delays stay short (at a 1,000-bed ward 5 s behind, 99 % of
wake-ups within 50 ms, the longest under 100 ms). Input lag (/metrics) says that.

The delays go into a histogram (`DELAY_BOUNDS`, served on /metrics by
`streams.worker_metrics`), and the longest since the last `take` into the worker's
periodic report. The probe costs one timer every 50 ms: about 20 wake-ups a second,
nothing beside the worker's thousands of messages.

The timer's own resolution (a millisecond on uvloop and asyncio's loop) sets the
floor: an idle loop shows delays of 0-1 ms.
"""

from __future__ import annotations

import asyncio

from streams.metrics import Histogram

__all__ = ["CHUNK_S", "DELAY_BOUNDS", "PROBE_INTERVAL_S", "LoopDelay", "report_line"]

PROBE_INTERVAL_S = 0.05
DELAY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Histogram bounds, seconds: from the timer's resolution to several chunks."""
CHUNK_S = 1.0
"""Seconds of ECG in a device chunk: a longer delay is reported at WARNING."""


class LoopDelay:
    """Delays of the probe's wake-ups, in seconds: every one in ``histogram``, and the
    longest since the last `take`."""

    def __init__(self, interval_s: float = PROBE_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self.histogram = Histogram(DELAY_BOUNDS)
        self.longest = 0.0

    def observe(self, delay: float) -> None:
        delay = max(delay, 0.0)  # (a clock read a hair early)
        self.histogram.observe(delay)
        self.longest = max(self.longest, delay)

    def take(self) -> float:
        """The longest delay since the last call; then start afresh."""
        longest, self.longest = self.longest, 0.0
        return longest

    def over(self, bound: float) -> int:
        """Delays recorded in all that were longer than ``bound``, one of the histogram's bounds."""
        return sum(self.histogram.counts[self.histogram.bounds.index(bound) + 1:])

    async def run(self) -> None:
        """Probe until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.observe(loop.time() - due)


def report_line(longest: float, over_chunk: int) -> str:
    """The worker's report: the longest delay since the last report, and how many
    delays since the start were longer than a chunk."""
    return (f"event loop delay since the last report: longest {longest * 1e3:.0f} ms; "
            f"delays over a chunk ({CHUNK_S:g} s) since the start: {over_chunk}")
