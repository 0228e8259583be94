"""End-to-end latency of the thin slice: device timestamp -> WebSocket client.

Starts Kafka (Apache or the embedded Tansu) and PostgreSQL, one worker process, an
in-process gateway and one WebSocket client, then publishes a simulated ward at 1 Hz.
For every VitalsObserved the client receives it records:

  device->client   receive time - the message's device timestamp (``occurred_at``)
  store->client    receive time - ``recorded_at`` (the insert's transaction time)

and prints p50 / p95 / p99 / max. Nothing is asserted; figures only.

    .venv/bin/python bench/slice_latency.py --kafka apache --patients 64 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from websockets.asyncio.client import connect

# Run as a script, this folder is sys.path[0], and bench/event_store.py would shadow
# the `event_store` package: drop that entry (the project is installed in the venv).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from dashboards.config import GatewayConfig  # noqa: E402
from dashboards.gateway import Gateway  # noqa: E402
from dashboards.tokens import issue_token  # noqa: E402
from event_store.postgres import PostgresRecorder  # noqa: E402
from streams.topics import TopicNames  # noqa: E402
from streams.ward import SimulatedWard, publish_ward  # noqa: E402
from vigil.services.kafka import KafkaCluster  # noqa: E402
from vigil.services.postgres import PostgresCluster  # noqa: E402
from vigil.services.process import ManagedProcess  # noqa: E402
from vigil.services.tansu import TansuBroker  # noqa: E402


def percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49]:7.1f}  p95 {q[94]:7.1f}  p99 {q[98]:7.1f}  max {max(values):7.1f}  ms  (n={len(values)})"


async def measure(bootstrap: str, database_url: str, embedded: bool, patients: int, seconds: float, work: Path) -> None:
    prefix = f"bench{int(time.time())}"
    store = await PostgresRecorder.connect(database_url)
    await store.migrate()
    secret = secrets.token_urlsafe(32)
    gateway = Gateway(store, GatewayConfig(jwt_secret=secret))
    server = await gateway.start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = dict(os.environ) | {
        "VIGIL_KAFKA_URL": f"kafka://{bootstrap}", "VIGIL_DATABASE_URL": database_url,
        "VIGIL_TOPIC_PREFIX": prefix, "VIGIL_KAFKA_EMBEDDED": "1" if embedded else "0",
    }
    worker = ManagedProcess.start("worker", [sys.executable, "-m", "vigil", "worker"], work / "worker.log", env=env)
    device: list[float] = []
    stored: list[float] = []
    warmup_until = 0.0

    async def client() -> None:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(json.dumps({"type": "auth", "last_position": 0,
                                      "token": issue_token(secret, "bench", "nurse", ["ward-1"], ttl_s=3600)}))
            async for raw in ws:
                now = time.time()
                msg = json.loads(raw)
                if msg.get("event_type") != "VitalsObserved" or now < warmup_until:
                    continue
                device.append((now - datetime.fromisoformat(msg["occurred_at"]).timestamp()) * 1000)
                stored.append((now - datetime.fromisoformat(msg["recorded_at"]).timestamp()) * 1000)

    try:
        watcher = asyncio.create_task(client())
        # Warm-up: the worker joins its group and the first messages wait for it; skip them.
        warmup = 20.0
        warmup_until = time.time() + warmup
        ward = SimulatedWard(patients, topics=TopicNames(prefix), ecg=False)  # vitals only, 1 Hz per bed
        await publish_ward(bootstrap, ward, seconds=math.ceil(warmup + seconds))
        await asyncio.sleep(3)
        watcher.cancel()
        print(f"patients={patients} rate=1 Hz measured={seconds:.0f} s after {warmup:.0f} s warm-up")
        print(f"  device -> WebSocket client : {percentiles(device)}")
        print(f"  store  -> WebSocket client : {percentiles(stored)}")
    finally:
        worker.stop()
        server.close()
        await server.wait_closed()
        await gateway.stop()
        await store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kafka", choices=("apache", "tansu"), default="apache")
    p.add_argument("--patients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=60)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pg = PostgresCluster.start(work / "pg", database="bench", durable=True)
        kafka = KafkaCluster.start(work / "kafka") if args.kafka == "apache" else TansuBroker.start(work)
        try:
            print(f"broker={args.kafka}")
            asyncio.run(measure(kafka.bootstrap, pg.url, args.kafka == "tansu", args.patients, args.seconds, work))
        finally:
            kafka.stop()
            pg.stop()


if __name__ == "__main__":
    main()
