"""streams.loop_delay: the probe records how late the event loop wakes it."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.loop_delay import CHUNK_S, DELAY_BOUNDS, LoopDelay, report_line


def test_a_blocked_loop_shows_as_a_late_wake_up() -> None:
    async def scenario() -> LoopDelay:
        delay = LoopDelay(interval_s=0.02)
        probe = asyncio.create_task(delay.run())
        await asyncio.sleep(0.1)  # a few wake-ups on an idle loop
        delay.take()
        time.sleep(0.3)  # a step that holds the loop
        await asyncio.sleep(0.1)
        probe.cancel()
        return delay

    delay = asyncio.run(scenario())
    # The wake-up due during the block came at least the rest of the block late.
    assert delay.take() >= 0.3 - 0.02
    assert delay.over(0.25) >= 1
    assert delay.over(CHUNK_S) == 0
    assert delay.histogram.count >= 5
    assert delay.take() == 0.0  # taken: starts afresh, the histogram keeps everything


def test_delays_are_counted_by_bound() -> None:
    delay = LoopDelay()
    for seconds in (-0.0001, 0.0004, 0.04, 0.7, 1.5, 9.0):
        delay.observe(seconds)
    assert delay.histogram.counts[0] == 2  # a clock read early counts as no delay
    assert delay.histogram.count == 6
    assert delay.over(0.5) == 3 and delay.over(CHUNK_S) == 2 and delay.over(DELAY_BOUNDS[-1]) == 1
    assert delay.take() == 9.0
    with pytest.raises(ValueError):
        delay.over(0.3)  # not a bound
    with pytest.raises(ValueError):
        LoopDelay(interval_s=0)


def test_the_report_line_names_the_longest_and_the_delays_over_a_chunk() -> None:
    assert report_line(0.0424, 3) == ("event loop delay since the last report: longest 42 ms; "
                                      "delays over a chunk (1 s) since the start: 3")
