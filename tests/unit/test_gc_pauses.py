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
    # The totals since install (for /metrics) are not reset by take.
    assert pauses.total_count[0] >= 1 and pauses.total_count[2] >= 2
    assert pauses.total_seconds[2] >= longest[2]


def test_the_frozen_heap_is_skipped_by_later_collections() -> None:
    try:
        frozen = freeze_startup_heap()
        assert frozen > 1000 and frozen == gc.get_freeze_count()
        # What was alive is in no generation a collection visits.
        assert len(gc.get_objects()) < frozen
    finally:
        gc.unfreeze()


def test_report_lines_are_summed_back_from_a_log() -> None:
    from streams.gc_pauses import report_line, summed_reports

    log = "\n".join(["noise", report_line([3, 1, 0], [0.012, 0.05, 0.0]), "more noise",
                     report_line([2, 0, 1], [0.030, 0.0, 0.145])])
    assert summed_reports(log) == "full 1 (longest 145 ms), middle 1 (longest 50 ms), young 5 (longest 30 ms)"
    assert summed_reports("no reports here") is None
