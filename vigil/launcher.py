"""Runs the whole stack on one machine: `vigil demo` and `vigil services`.

The demo starts embedded services unless ``VIGIL_KAFKA_URL`` / ``VIGIL_DATABASE_URL``
point elsewhere, applies migrations, then runs the worker, the gateway and the
simulator as child processes (``python -m vigil ...``) with the services' URLs in
their environment, exactly as docker compose runs them. Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from event_store.postgres import PostgresRecorder
from vigil.config import Settings, make_state_dir
from vigil.services.kafka import KafkaCluster, java_available
from vigil.services.postgres import PostgresCluster, timescaledb_installed
from vigil.services.process import ManagedProcess, ServiceError, free_port, port_open, wait_until
from vigil.services.tansu import TansuBroker

__all__ = ["run_demo", "run_services", "migrate", "rebuild_projections"]


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    # Ignore any further Ctrl-C/SIGTERM from here on (make and the terminal often send
    # one each): a second one must not interrupt the clean-up that this one starts.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Stop()


def _shut_down(stoppers: list[Callable[[], None]]) -> None:
    """Stop what was started, newest first, with Ctrl-C/SIGTERM ignored meanwhile."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stop in reversed(stoppers):
        stop()


def _say(text: str) -> None:
    print(text, flush=True)


async def migrate(database_url: str) -> list[str]:
    store = await PostgresRecorder.connect(database_url)
    try:
        return await store.migrate()
    finally:
        await store.close()


async def rebuild_projections(database_url: str) -> int:
    """Drop the projections' rows and replay the whole log into them."""
    from event_store.projections import PostgresProjector

    store = await PostgresRecorder.connect(database_url)
    try:
        await store.migrate()
        projector = await PostgresProjector.connect(database_url, store)
        try:
            return await projector.rebuild()
        finally:
            await projector.close()
    finally:
        await store.close()


def run_demo(settings: Settings, patients: int, duration: float | None) -> int:
    """Run the live demo until Ctrl-C (or ``duration`` seconds). Returns an exit code."""
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    stoppers: list[Callable[[], None]] = []
    state = settings.state_dir
    make_state_dir(state)
    try:
        kafka_url, embedded, prefix = settings.kafka_url, settings.kafka_embedded, settings.topic_prefix
        if kafka_url is None:
            _say("starting embedded Kafka-protocol broker (Tansu, memory-only) ...")
            broker = TansuBroker.start(state / "tansu")
            stoppers.append(broker.stop)
            kafka_url, embedded = broker.url, True
        if embedded:
            # The embedded broker forgets everything when it stops, so offsets restart at 0.
            # A per-run topic prefix keeps this run's derived event ids apart from earlier runs'.
            prefix = f"{prefix}.run-{uuid.uuid4().hex[:8]}"
        database_url = settings.database_url
        if database_url is None:
            timescale = timescaledb_installed()
            _say(f"starting PostgreSQL{' with TimescaleDB' if timescale else ''} in {state / 'postgres'} ...")
            pg = PostgresCluster.start(state / "postgres", timescaledb=timescale)
            stoppers.append(pg.stop)
            database_url = pg.url
        applied = asyncio.run(migrate(database_url))
        _say(f"database ready ({len(applied)} migration(s) applied)")

        port = settings.gateway_port
        if port == 0 or (port_open(settings.gateway_host, port) and "VIGIL_GATEWAY_PORT" not in os.environ):
            port = free_port(settings.gateway_host)
        # The worker's /metrics, /healthz and /readyz (`streams.metrics`), on a port of its own.
        metrics_port = settings.worker_metrics_port or free_port(settings.worker_metrics_host)
        env = dict(os.environ) | {
            "VIGIL_KAFKA_URL": kafka_url,
            "VIGIL_DATABASE_URL": database_url,
            "VIGIL_TOPIC_PREFIX": prefix,
            "VIGIL_KAFKA_EMBEDDED": "1" if embedded else "0",
            "VIGIL_GATEWAY_PORT": str(port),
            "VIGIL_WORKER_METRICS_PORT": str(metrics_port),
            # The demo page fetches a token from the gateway (loopback only) instead of a login.
            "VIGIL_GATEWAY_DEMO": "1",
            "VIGIL_JWT_SECRET": os.environ.get("VIGIL_JWT_SECRET") or secrets.token_urlsafe(32),
        }
        logs = state / "logs"
        children: list[ManagedProcess] = []
        for name, args in (
            ("worker", ["worker"]),
            ("gateway", ["gateway"]),
            # Deterioration compressed so the demo shows alarms within its first minute.
            ("simulator", ["simulate", "--patients", str(patients), "--onset", "5", "--ramp", "30"]),
        ):
            child = ManagedProcess.start(name, [sys.executable, "-m", "vigil", *args], logs / f"{name}.log", env=env)
            children.append(child)
            stoppers.append(child.stop)
        url = f"http://{settings.gateway_host}:{port}/"
        wait_until("gateway", lambda: _healthy(url + "healthz"), 60, children[1])
        _say(f"Vigil demo: {patients} simulated patients -> Kafka -> Faust worker -> PostgreSQL -> WebSocket")
        _say(f"Worker metrics: http://{settings.worker_metrics_host}:{metrics_port}/metrics")
        _say(f"Dashboard: {url}")
        _say(f"Logs: {logs}   (Ctrl-C to stop)")
        started = time.monotonic()
        while duration is None or time.monotonic() - started < duration:
            for child in children:
                if not child.running():
                    _say(f"{child.name} exited with code {child.popen.returncode}; last lines of {child.log_path}:")
                    _say(child.log_tail())
                    return 1
            time.sleep(0.5)
        return 0
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        _shut_down(stoppers)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def run_services(state_dir: Path, kafka: str, brokers: int) -> int:
    """Start Kafka and PostgreSQL for a person, print their URLs, wait for Ctrl-C."""
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    stoppers: list[Callable[[], None]] = []
    make_state_dir(state_dir)
    try:
        if kafka == "apache" and not java_available():
            _say("WARNING: Java or Maven is missing, so Apache Kafka cannot run here.")
            _say("WARNING: falling back to the embedded Tansu broker, which is NOT fit for correctness tests.")
            kafka = "tansu"
        if kafka == "apache":
            _say(f"starting Apache Kafka ({brokers} node(s)) ...")
            cluster = KafkaCluster.start(state_dir / "kafka", brokers)
            stoppers.append(cluster.stop)
            kafka_url = cluster.url
        else:
            broker = TansuBroker.start(state_dir / "tansu")
            stoppers.append(broker.stop)
            kafka_url = broker.url
        pg = PostgresCluster.start(state_dir / "postgres", timescaledb=timescaledb_installed())
        stoppers.append(pg.stop)
        _say(f"VIGIL_KAFKA_URL={kafka_url}")
        _say(f"VIGIL_DATABASE_URL={pg.url}")
        _say("(Ctrl-C to stop)")
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, _Stop):
        return 0
    except ServiceError as e:
        print(f"vigil: {e}", file=sys.stderr)
        return 1
    finally:
        _shut_down(stoppers)
