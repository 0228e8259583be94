"""Benchmarks are not run in CI (they print figures and take minutes), but they must
at least start: a stale import in bench/ should fail here, not months later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPTS = sorted((REPO / "bench").glob("*.py"))


def test_there_are_benchmarks() -> None:
    assert {p.name for p in SCRIPTS} >= {"slice_latency.py", "event_store.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_starts(script: Path) -> None:
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
