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


# A main thread and a second thread that each spin `seconds` of their own CPU, then wait.
_THREADS = """
import threading, time
def spin():
    while time.thread_time() < {seconds}: pass
side = threading.Thread(target=spin)
side.start()
spin()
side.join()
time.sleep(60)
"""


def test_the_main_thread_is_measured_apart(tmp_path: Path) -> None:
    seconds = 0.4
    proc = ManagedProcess.start("threads", [sys.executable, "-c", _THREADS.format(seconds=seconds)],
                                tmp_path / "threads.log")
    try:
        deadline = time.monotonic() + 30
        tick = 0.05  # /proc counts in 10-ms clock ticks, rounded down
        while time.monotonic() < deadline and cpu_seconds(proc.pid) < 2 * seconds - tick:
            time.sleep(0.1)
        time.sleep(0.2)
        main, total = cpu_seconds(proc.pid, thread=proc.pid), cpu_seconds(proc.pid)
        assert total >= 2 * seconds - tick
        assert seconds - tick <= main <= seconds + tick < total - tick
    finally:
        proc.stop()
