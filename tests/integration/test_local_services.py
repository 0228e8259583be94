"""Local services are children of whoever started them and never outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

_LAUNCHER = """
import pathlib, sys, time
from vigil.services.postgres import PostgresCluster
from vigil.services.tansu import TansuBroker
work, pg_home = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
pg = PostgresCluster.start(pg_home / "pg", durable=False)
broker = TansuBroker.start(work)
print(pg.process.pid, broker.process.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too; it only waits for its (new) parent to reap it.
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]


def test_services_die_when_their_launcher_is_killed(tmp_path: Path, pg_home: Path) -> None:
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(tmp_path), str(pg_home)], cwd=REPO,
                                stdout=subprocess.PIPE, text=True)
    assert launcher.stdout is not None
    pids = [int(p) for p in launcher.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    launcher.send_signal(signal.SIGKILL)  # no clean-up code runs
    launcher.wait()
    launcher.stdout.close()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), f"still running: {[p for p in pids if _alive(p)]}"
