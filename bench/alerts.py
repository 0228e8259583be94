"""Alarm latency to the care team's screens. Figures only; nothing is asserted.

Part 1, ``commit``: from an alarm event's commit to its receipt on every connected
WebSocket, with 1, 100 and 1,000 clients (``--clients``). PostgreSQL runs locally, the
gateway is the real one (``python -m vigil gateway``, its own process), and the
clients live in this process, each authenticated as a ward-1 nurse. The bench appends
one AlertRaised at a time (``--alarms``, every ``--interval`` s); its commit time is
when ``append`` returned. Each client stamps the bytes of a frame when they arrive
(in ``data_received``, before any parsing, and all frames of one read-ready batch
before the WebSocket parsing of any of them), so client-side work inflates the
figures as little as one Python process allows.

Part 2, ``display``: from the device timestamp to the browser's screen, on the
end-to-end set-up of tests/e2e: Kafka, PostgreSQL, worker, gateway and simulator
(``--patients``), and the dashboard in headless Chromium (Debian's, driven by
Playwright). The page records, for every tile whose vitals changed, the time of the
animation frame that painted it minus the reading's device time, and the same for
each alarm reaching the alarm list; the frame intervals say how smooth the page
stays with that many tiles.

    .venv/bin/python bench/alerts.py                       # both parts
    .venv/bin/python bench/alerts.py --part commit --clients 1 100 1000
    .venv/bin/python bench/alerts.py --part display --patients 64 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script, this folder is sys.path[0], and bench/event_store.py would shadow
# the `event_store` package: drop that entry (the project is installed in the venv).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from websockets.client import ClientProtocol  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.http11 import Response  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

from dashboards.tokens import issue_token  # noqa: E402
from event_store.events import NewEvent  # noqa: E402
from event_store.postgres import PostgresRecorder  # noqa: E402
from vigil.services.postgres import PostgresCluster  # noqa: E402
from vigil.services.process import ManagedProcess, cpu_seconds, free_port, wait_until  # noqa: E402

SECRET = "bench-alerts-" + "s" * 32
_SEQ = re.compile(rb'"bench_seq":(\d+)')
_CONNECT_BATCH = 50


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"n={len(values)} (too few samples)"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49]:7.1f}  p99 {q[98]:7.1f}  max {max(values):7.1f} ms  (n={len(values)})"


def _raise_fd_limit() -> None:
    # 1,000 sockets here and as many in the gateway (a child inherits the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 8192):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_gateway(database_url: str, work: Path, extra_env: dict[str, str] | None = None) -> tuple[ManagedProcess, int]:
    port = free_port()
    env = dict(os.environ) | {"VIGIL_DATABASE_URL": database_url, "VIGIL_GATEWAY_HOST": "127.0.0.1",
                              "VIGIL_GATEWAY_PORT": str(port), "VIGIL_JWT_SECRET": SECRET,
                              "VIGIL_GATEWAY_DEMO": "0"} | (extra_env or {})
    gateway = ManagedProcess.start("gateway", [sys.executable, "-m", "vigil", "gateway"], work / "gateway.log", env=env)
    wait_until("gateway", lambda: _healthy(f"http://127.0.0.1:{port}/healthz"), 60, gateway)
    return gateway, port


# ---- part 1: commit -> WebSocket receipt ------------------------------------------------

class BenchClient(asyncio.Protocol):
    """A WebSocket client on the sans-I/O protocol: stamps arrivals first, parses later."""

    def __init__(self, uri: str, token: str, after: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.proto = ClientProtocol(parse_uri(uri), max_size=None)
        self.token, self.after = token, after
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.arrivals: dict[int, float] = {}
        self.tail = b""
        self.pending: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.proto.send_request(self.proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        # Server frames are unmasked and uncompressed (no extension offered): the JSON is in the bytes.
        for m in _SEQ.finditer(self.tail + data):
            self.arrivals.setdefault(int(m[1]), now)
        self.tail = data[-48:]
        self.pending.append(data)
        if len(self.pending) == 1:
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        for data in self.pending:
            self.proto.receive_data(data)
        self.pending.clear()
        for event in self.proto.events_received():
            if isinstance(event, Response):
                if event.status_code != 101 and not self.ready.done():
                    self.ready.set_exception(RuntimeError(f"handshake refused: HTTP {event.status_code}"))
                    continue
                self.proto.send_text(json.dumps({"type": "auth", "token": self.token,
                                                 "last_position": self.after}).encode())
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                if not self.ready.done() and b'"caught_up"' in event.data:
                    self.ready.set_result(None)
            elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE and not self.ready.done():
                self.ready.set_exception(RuntimeError(f"closed by the gateway: {event.data[2:].decode(errors='replace')}"))
        self._flush()

    def _flush(self) -> None:
        assert self.transport is not None
        for data in self.proto.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"connection lost: {exc}"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(port: int, n: int, first: int, after: int) -> list[BenchClient]:
    loop = asyncio.get_running_loop()
    clients: list[BenchClient] = []
    for start in range(first, first + n, _CONNECT_BATCH):
        batch = []
        for i in range(start, min(first + n, start + _CONNECT_BATCH)):
            token = issue_token(SECRET, f"bench{i}", "nurse", ["ward-1"], 3600)
            _, client = await loop.create_connection(
                lambda t=token: BenchClient(f"ws://127.0.0.1:{port}/ws", t, after), "127.0.0.1", port)
            batch.append(client)
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in batch)), 60)
        clients += batch
    return clients


async def measure_commit(database_url: str, work: Path, counts: list[int], alarms: int, interval: float) -> None:
    _raise_fd_limit()
    store = await PostgresRecorder.connect(database_url)
    await store.migrate()
    gateway, port = start_gateway(database_url, work)
    clients: list[BenchClient] = []
    seq = 0
    print(f"commit -> WebSocket receipt: gateway process on local PostgreSQL; {alarms} AlertRaised per round, "
          f"one every {interval:g} s; every client is a ward-1 nurse")
    try:
        for n in sorted(counts):
            if n > len(clients):
                clients += await _connect(port, n - len(clients), len(clients), await store.last_position())
            await asyncio.sleep(1.0)
            cpu_before, round_began = (cpu_seconds(gateway.pid), time.process_time()), time.time()
            committed: dict[int, float] = {}
            append_ms: list[float] = []
            first = seq
            for _ in range(alarms):
                seq += 1
                now = datetime.now(UTC)
                payload = {"patient_id": "bench-p1", "alert_id": f"bench-{uuid.uuid4().hex[:12]}", "condition": "bench",
                           "priority": "high", "message": "bench alarm", "value": None, "limit": None,
                           "technical": False, "onset": now.timestamp(), "at": now.timestamp(), "bench_seq": seq}
                event = NewEvent(uuid.uuid4(), "patient-bench-p1", "AlertRaised", now, payload)
                before = time.time()
                await store.append(event.stream_id, [event])
                committed[seq] = after = time.time()
                append_ms.append((after - before) * 1000)
                await asyncio.sleep(max(0.0, interval - (time.time() - before)))
            await asyncio.sleep(2.0)
            latencies = [(c.arrivals[s] - committed[s]) * 1000 for c in clients[:n] for s in range(first + 1, seq + 1)
                         if s in c.arrivals]
            # Per alarm, the first and the last client to get it: the spread is the fan-out's own cost.
            firsts, lasts = [], []
            for s in range(first + 1, seq + 1):
                got = [c.arrivals[s] for c in clients[:n] if s in c.arrivals]
                if got:
                    firsts.append((min(got) - committed[s]) * 1000)
                    lasts.append((max(got) - committed[s]) * 1000)
            cpu_gateway, cpu_here = cpu_seconds(gateway.pid), time.process_time()
            print(f"  clients={n:5d}  {percentiles(latencies)}  received {len(latencies)}/{n * alarms}")
            print(f"               first client p50 {statistics.median(firsts):6.1f} ms, last client p50 "
                  f"{statistics.median(lasts):6.1f} ms; append round trip p50 {statistics.median(append_ms):.1f} ms; "
                  f"CPU in the round: gateway {cpu_gateway - cpu_before[0]:.1f} s, clients "
                  f"{cpu_here - cpu_before[1]:.1f} s of {time.time() - round_began:.1f} s")
    finally:
        for c in clients:
            c.close()
        gateway.stop()
        await store.close()


# ---- part 2: device -> screen -----------------------------------------------------------

def measure_display(database_url: str, work: Path, kafka: str, embedded: bool, patients: int, seconds: float,
                    viewport: tuple[int, int]) -> None:
    from playwright.sync_api import sync_playwright

    from dashboards.wards import admit_patient
    from streams.topics import TopicNames

    prefix = f"benchalerts{int(time.time())}"
    topics = TopicNames(prefix)

    async def prepare() -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        store = await PostgresRecorder.connect(database_url)
        await store.migrate()
        for i in range(patients):  # everyone in ward 1, beds in order
            await admit_patient(store, f"p{i + 1:04d}", "ward-1", str(i + 1), by="bench")
        await store.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        await admin.create_topics([NewTopic(t, 4, 1) for t in (topics.vitals, topics.ecg, topics.fhir, topics.dead_letter)])
        await admin.close()

    asyncio.run(prepare())
    env = dict(os.environ) | {"VIGIL_KAFKA_URL": f"kafka://{kafka}", "VIGIL_DATABASE_URL": database_url,
                              "VIGIL_TOPIC_PREFIX": prefix, "VIGIL_KAFKA_EMBEDDED": "1" if embedded else "0",
                              "VIGIL_STATE_DIR": str(work / "state")}
    worker = ManagedProcess.start("worker", [sys.executable, "-m", "vigil", "worker"], work / "worker.log", env=env)
    gateway, port = start_gateway(database_url, work)
    warmup = 25.0
    simulator = ManagedProcess.start(
        "simulator", [sys.executable, "-m", "vigil", "simulate", "--patients", str(patients), "--onset",
                      str(warmup + 5), "--ramp", "20"], work / "simulator.log", env=env)
    chromium = os.environ.get("VIGIL_CHROMIUM", "/usr/bin/chromium")
    token = issue_token(SECRET, "bench.nurse", "nurse", ["ward-1"], 3600)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.goto(f"http://127.0.0.1:{port}/#token={token}")
            page.wait_for_function("window.vigil && window.vigil.metrics.live", timeout=60_000)
            time.sleep(warmup)
            page.evaluate("(() => { const m = window.vigil.metrics; for (const k of ['vitalsDisplayMs', "
                          "'alarmDisplay', 'frameMs', 'frameWorkMs', 'longFrames']) m[k].length = 0; })()")
            cpu_before = {p.name: cpu_seconds(p.pid) for p in (worker, gateway, simulator)}
            began = time.time()
            time.sleep(seconds)
            m: dict[str, Any] = page.evaluate(
                "(() => { const m = window.vigil.metrics; const tiles = document.querySelectorAll('.tile').length; "
                "return {vitals: m.vitalsDisplayMs, alarms: m.alarmDisplay, frames: m.frameMs, tiles, "
                "work: m.frameWorkMs, long: m.longFrames, "
                "strips: [...window.vigil.buffers.values()].filter(b => b.runs.length).length}; })()")
            m["cpu"] = {p.name: cpu_seconds(p.pid) - cpu_before[p.name] for p in (worker, gateway, simulator)}
            m["elapsed"] = time.time() - began
            page.screenshot(path=str(work / "display.png"))
            browser.close()
    finally:
        simulator.stop()
        gateway.stop()
        worker.stop()
    frames: list[float] = m["frames"]
    elapsed, cpu = m.pop("elapsed"), m.pop("cpu")
    long = sum(1 for f in frames if f > 50)
    print(f"device -> screen: {patients} patients at 1 Hz, {m['tiles']} tiles ({m['strips']} with a live ECG strip), "
          f"viewport {viewport[0]}x{viewport[1]}, {seconds:.0f} s after {warmup:.0f} s warm-up")
    print(f"  vitals, device time -> painted       : {percentiles(m['vitals'])}")
    print(f"  alarm, device time -> in alarm list  : {percentiles([a['deviceMs'] for a in m['alarms']])}")
    print(f"  alarm, commit -> in alarm list       : {percentiles([a['commitMs'] for a in m['alarms']])}")
    print(f"  frame interval                       : {percentiles(frames)}; {long} of {len(frames)} frames > 50 ms")
    print(f"  page script per frame                : {percentiles(m['work'])}")
    lf = m["long"]
    if lf:
        print(f"  long frames (>50 ms, Chromium LoAF)  : {len(lf)}; median duration "
              f"{statistics.median(x['duration'] for x in lf):.0f} ms of which script "
              f"{statistics.median(x['script'] for x in lf):.0f} ms, style/layout/paint "
              f"{statistics.median(x['render'] for x in lf):.0f} ms")
    print("  CPU over the measured window         : " +
          ", ".join(f"{name} {seconds / elapsed:.0%}" for name, seconds in cpu.items()) + " of one core")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("commit", "display", "both"), default="both")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 100, 1000], help="client counts (commit part)")
    p.add_argument("--alarms", type=int, default=100, help="alarms per client count (commit part)")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between alarms (commit part)")
    p.add_argument("--kafka", choices=("apache", "tansu"), default="apache", help="broker (display part)")
    p.add_argument("--patients", type=int, default=64, help="simulated patients (display part)")
    p.add_argument("--seconds", type=float, default=60, help="measured seconds (display part)")
    p.add_argument("--viewport", default="1920x1080", help="browser window, WIDTHxHEIGHT (display part)")
    args = p.parse_args()
    width, _, height = args.viewport.partition("x")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pg = PostgresCluster.start(work / "pg", database="bench", durable=True)
        try:
            if args.part in ("commit", "both"):
                asyncio.run(measure_commit(pg.url, work / "commit", args.clients, args.alarms, args.interval))
            if args.part in ("display", "both"):
                from vigil.services.kafka import KafkaCluster
                from vigil.services.tansu import TansuBroker

                (work / "display").mkdir()
                kafka = KafkaCluster.start(work / "kafka") if args.kafka == "apache" else TansuBroker.start(work)
                try:
                    base, _, _ = pg.url.rpartition("/")
                    import psycopg

                    with psycopg.connect(pg.url, autocommit=True) as conn:
                        conn.execute("CREATE DATABASE display")
                    measure_display(f"{base}/display", work / "display", kafka.bootstrap, args.kafka == "tansu",
                                    args.patients, args.seconds, (int(width), int(height)))
                finally:
                    kafka.stop()
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
