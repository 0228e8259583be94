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
"""

from __future__ import annotations

import gc
import os

from vigil.config import ConfigError

__all__ = ["GC_GEN0_THRESHOLD", "tune_gc"]

GC_GEN0_THRESHOLD = 50_000
"""Young-generation threshold used unless ``VIGIL_GC_GEN0`` says otherwise (700 is CPython's own)."""


def tune_gc(gen0: int | None = None) -> int:
    """Set the collector's young-generation threshold (``gen0``, else ``VIGIL_GC_GEN0``,
    else `GC_GEN0_THRESHOLD`), keeping the older generations' own; return it."""
    if gen0 is None:
        raw = os.environ.get("VIGIL_GC_GEN0", "")
        try:
            gen0 = int(raw) if raw.strip() else GC_GEN0_THRESHOLD
        except ValueError:
            raise ConfigError(f"VIGIL_GC_GEN0: {raw!r} is not an integer") from None
    if gen0 < 1:
        raise ConfigError(f"VIGIL_GC_GEN0: the young-generation threshold must be positive, got {gen0}")
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(gen0, older, oldest)
    return gen0
