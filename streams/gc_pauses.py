"""The worker and the cyclic garbage collector: its start-up heap frozen, its pauses
counted.

Every Vigil process raises the collector's young-generation threshold at start
(`vigil.runtime`). A full (oldest-generation) pass still visits every tracked object
alive, and a worker starts with about 200,000 of them (modules, numba's compiled
kernels, the ONNX runtime, Faust's services) that live as long as the process: a
full pass over them took about 0.3 s, all of it a pause of the event loop and so of
every alarm being processed. `freeze_startup_heap` moves what exists once start-up is
done into the collector's permanent generation (`gc.freeze`), which later passes
skip. What the patients' state adds still costs: at a 1,000-bed ward a full pass took
0.1-0.18 s, about once a minute, and a young one 50-75 ms, six times a minute, with
the young threshold at 50,000; the worker now takes 10,000, whose young passes took
16-25 ms (`vigil.runtime`; `bench/ward.py` prints the pauses). `GcPauses` records the
pauses by generation, for the worker's periodic report.

Faust itself runs a full collection once a second while it waits for in-flight
messages during a rebalance (`Consumer.wait_empty`); those show up in the report too.
"""

from __future__ import annotations

import gc
import re
import time
from typing import Any

__all__ = ["GC_GENERATIONS", "GcPauses", "freeze_startup_heap", "report_line", "summed_reports"]

GC_GENERATIONS = (("full", 2), ("middle", 1), ("young", 0))
"""Names of the collector's generations (as the report and /metrics give them) and their numbers."""
_REPORT = re.compile(r"gc pauses since the last report: full (\d+) \(longest (\d+) ms\), "
                     r"middle (\d+) \((\d+) ms\), young (\d+) \((\d+) ms\)")


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive into the permanent generation, which
    later collections skip; return how many that is. Call when start-up is done."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """The collector's pauses by generation (0 young .. 2 full), from `gc.callbacks`:
    how many since the last `take` and the longest, in seconds; and since `install`,
    how many and their seconds in all (``total_count``, ``total_seconds``)."""

    def __init__(self) -> None:
        self.total_count = [0, 0, 0]
        self.total_seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._counted = [0, 0, 0]  # total_count at the last take
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        pause = time.perf_counter() - self._started
        self.longest[generation] = max(self.longest[generation], pause)
        self.total_count[generation] += 1
        self.total_seconds[generation] += pause

    def install(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def uninstall(self) -> None:
        gc.callbacks.remove(self._callback)

    def take(self) -> tuple[list[int], list[float]]:
        """(counts, longest pauses) since the last call, by generation; then start afresh."""
        counts = [total - before for total, before in zip(self.total_count, self._counted, strict=True)]
        longest, self.longest, self._counted = self.longest, [0.0, 0.0, 0.0], list(self.total_count)
        return counts, longest


def report_line(counts: list[int], longest: list[float]) -> str:
    """The worker's report of `GcPauses.take`'s figures (parsed back by `summed_reports`)."""
    full, middle, young = ((counts[g], longest[g] * 1e3) for _, g in GC_GENERATIONS)
    return (f"gc pauses since the last report: full {full[0]} (longest {full[1]:.0f} ms), "
            f"middle {middle[0]} ({middle[1]:.0f} ms), young {young[0]} ({young[1]:.0f} ms)")


def summed_reports(log_text: str) -> str | None:
    """The pauses over all the `report_line` lines in ``log_text`` (counts added,
    longest of the longest), or None if there are none."""
    reports = [tuple(map(int, m.groups())) for m in _REPORT.finditer(log_text)]
    if not reports:
        return None
    return ", ".join(f"{name} {sum(r[2 * i] for r in reports)} (longest {max(r[2 * i + 1] for r in reports)} ms)"
                     for i, (name, _) in enumerate(GC_GENERATIONS))
