"""vigil.services.process: CPU time of a process and of its whole tree (Linux /proc)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from vigil.services.process import ManagedProcess, cpu_seconds, tree_cpu_seconds

# A parent that keeps one busy child alive and has already reaped another.
_TREE = """
import subprocess, sys, time
spin = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < {seconds}: pass\\n"
subprocess.run([sys.executable, "-c", spin])                     # reaped: counts in the parent's cutime
live = subprocess.Popen([sys.executable, "-c", spin + "time.sleep(60)"])
time.sleep(60)
"""


def test_a_tree_counts_its_live_and_reaped_children(tmp_path: Path) -> None:
    seconds = 0.4
    proc = ManagedProcess.start("tree", [sys.executable, "-c", _TREE.format(seconds=seconds)], tmp_path / "tree.log")
    try:
        deadline = time.monotonic() + 30
        total = 0.0
        while time.monotonic() < deadline:
            total = tree_cpu_seconds(proc.pid)
            if total >= 2 * seconds:
                break
            time.sleep(0.1)
        # Both children spun `seconds` of CPU; the parent itself only waited.
        assert total >= 2 * seconds
        assert cpu_seconds(proc.pid) < seconds
    finally:
        proc.stop()


def test_an_unknown_process_has_used_nothing() -> None:
    # A pid above the kernel's maximum is never in use.
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert tree_cpu_seconds(pid_max + 1) == 0.0
