"""The README's first command, `make demo`, run for real on the embedded services
(Tansu broker + private PostgreSQL) for a short time: a WebSocket client must see
live vitals and the scripted patient's heart-rate alarm."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from streams.metrics import parse
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _wait_for_url(proc: subprocess.Popen[str], timeout: float) -> tuple[str, list[str]]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        found = re.search(r"Dashboard: (http://\S+)", line)
        if found:
            return found.group(1), lines
    raise AssertionError("demo printed no dashboard URL:\n" + "\n".join(lines))


async def _watch(ws_url: str, timeout: float, token: str) -> dict[str, list[dict[str, Any]]]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    async with connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token, "last_position": 0}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and "AlertRaised" not in by_type:
            msg = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            if msg["type"] == "event":
                by_type.setdefault(msg["event_type"], []).append(msg)
    return by_type


def test_make_demo_streams_vitals_and_an_alarm_to_a_websocket_client(tmp_path: Path) -> None:
    env = dict(os.environ) | {"VIGIL_STATE_DIR": str(tmp_path / "state"), "VIGIL_GATEWAY_PORT": "0"}
    for name in ("VIGIL_KAFKA_URL", "VIGIL_DATABASE_URL"):
        env.pop(name, None)  # the demo must start its own embedded services
    started = time.monotonic()
    proc = subprocess.Popen(
        ["make", "-s", "demo", "DEMO_ARGS=--patients 4 --duration 150"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        url, lines = _wait_for_url(proc, timeout=90)
        url_after = time.monotonic() - started
        with urllib.request.urlopen(url, timeout=5) as page:
            assert b"Vigil" in page.read()
        # The demo gateway hands the page a token without a login (loopback only).
        with urllib.request.urlopen(url + "demo-token", timeout=5) as reply:
            token = json.loads(reply.read())["token"]
        events = asyncio.run(_watch(url.replace("http://", "ws://") + "ws", timeout=90, token=token))
        assert "VitalsObserved" in events, f"no vitals; got {sorted(events)}"
        assert {e["payload"]["patient_id"] for e in events["VitalsObserved"]} <= {"p0001", "p0002", "p0003", "p0004"}
        alarms = events.get("AlertRaised", [])
        assert alarms, f"no alarm within the time limit; got {sorted(events)}"
        assert alarms[0]["payload"]["patient_id"] == "p0001"
        # The worker's own figures, at the address the demo printed.
        (metrics_url,) = [m.group(1) for line in lines if (m := re.search(r"Worker metrics: (http://\S+)", line))]
        with urllib.request.urlopen(metrics_url, timeout=10) as reply:
            figures = parse(reply.read().decode())
        taken = {dict(labels)["topic"].rsplit(".", 1)[1]: n for labels, n in figures["vigil_worker_messages_total"].items()}
        assert {topic for topic, n in taken.items() if n > 0} == {"ecg", "vitals"}, figures
        assert figures["vigil_worker_alarm_latency_seconds_count"][frozenset()] >= 1, figures
        with urllib.request.urlopen(metrics_url.replace("/metrics", "/readyz"), timeout=10) as reply:
            assert reply.read() == b"ready\n"
        print(f"demo: URL after {url_after:.1f} s; first alarm seen after {time.monotonic() - started:.1f} s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    # SIGTERM stops every child: no worker, gateway, broker or database left behind.
    marker = f"VIGIL_STATE_DIR={tmp_path / 'state'}".encode()
    assert _processes_with_env(marker) == [], out


def _processes_with_env(marker: bytes) -> list[int]:
    """PIDs whose environment holds ``marker`` (every process the demo started inherits it)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found
