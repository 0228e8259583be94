"""streams.gc_pauses: the collector's pauses counted by generation, and the frozen
start-up heap that later collections skip."""

from __future__ import annotations

import gc

from streams.gc_pauses import GcPauses, freeze_startup_heap


def test_pauses_are_counted_by_generation_with_the_longest() -> None:
    pauses = GcPauses().install()
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
        counts, longest = pauses.take()
    finally:
        pauses.uninstall()
    assert counts[0] >= 1 and counts[2] >= 2  # (the collector may have run on its own too)
    assert longest[2] > 0.0
    assert pauses.take() == ([0, 0, 0], [0.0, 0.0, 0.0])  # taken: starts afresh


def test_the_frozen_heap_is_skipped_by_later_collections() -> None:
    try:
        frozen = freeze_startup_heap()
        assert frozen > 1000 and frozen == gc.get_freeze_count()
        # What was alive is in no generation a collection visits.
        assert len(gc.get_objects()) < frozen
    finally:
        gc.unfreeze()
