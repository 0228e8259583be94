"""Process-wide settings every Vigil process applies at start (`vigil.cli.main`).

The garbage collector. CPython's cyclic collector runs a young-generation pass every
700 net allocations of container objects, and a pass over everything alive once
enough objects have survived. Vigil's hot paths build thousands of short- and
medium-lived objects at a time (a page of 10,000 events, a batch of rows, per-message
events in the worker), none of them in reference cycles, so with the default the
collector keeps rescanning pages that are still in use. Raising the young threshold
to 50,000 roughly halved the client CPU per event of reading the log
(bench/event_store.py prints both settings). Memory is still freed by reference
counting at once; only cycles wait longer, and there are few.

The worker (`vigil worker`) takes 10,000 instead. A young pass scans the young
objects still alive (garbage without cycles is freed at once), and in the worker
many live for seconds: each message it takes until the checkpoint that acknowledges
it, each patient's state until the next chunk. So its pauses grow with the
threshold, and they delay every message in flight. At 600 beds (`bench/ward.py`, 55-s runs alternated on 2026-11-27) 50,000
gave 4 young passes per run of 52-70 ms each; 10,000 gave 26-28 of 16-25 ms and 2
middle ones of 38-100 ms, for the same worker CPU (0.83-0.88 s/s against 0.85-0.88),
and a lower alarm latency p99 in 4 of 5 pairs of runs. 5,000 and 2,000 made more
middle and full passes and did no better.
"""

from __future__ import annotations

import gc
import os

from vigil.config import ConfigError

__all__ = ["GC_GEN0_THRESHOLD", "WORKER_GC_GEN0_THRESHOLD", "tune_gc"]

GC_GEN0_THRESHOLD = 50_000
"""Young-generation threshold used unless ``VIGIL_GC_GEN0`` says otherwise (700 is CPython's own)."""
WORKER_GC_GEN0_THRESHOLD = 10_000
"""The worker's, unless ``VIGIL_GC_GEN0`` says otherwise."""


def tune_gc(default: int = GC_GEN0_THRESHOLD) -> int:
    """Set the collector's young-generation threshold (``VIGIL_GC_GEN0``, else
    ``default``), keeping the older generations' own; return it."""
    raw = os.environ.get("VIGIL_GC_GEN0", "")
    try:
        gen0 = int(raw) if raw.strip() else default
    except ValueError:
        raise ConfigError(f"VIGIL_GC_GEN0: {raw!r} is not an integer") from None
    if gen0 < 1:
        raise ConfigError(f"VIGIL_GC_GEN0: the young-generation threshold must be positive, got {gen0}")
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(gen0, older, oldest)
    return gen0
