"""The WebSocket gateway against a real PostgreSQL event log, over real sockets.

Shared helpers (`start`, `stop`, `token`, `auth`, `recv`) are imported by
``test_gateway_auth.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from dashboards.config import GatewayConfig
from dashboards.gateway import Gateway
from dashboards.tokens import issue_token
from event_store.events import NewEvent
from event_store.postgres import PostgresRecorder

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

SECRET = "integration-test-secret-" + "x" * 16
CONFIG = GatewayConfig(jwt_secret=SECRET)


def ev(n: int, patient: str = "p1") -> NewEvent:
    return NewEvent(uuid.uuid4(), f"patient-{patient}", "VitalsObserved", datetime.now(UTC),
                    {"patient_id": patient, "hr": n})


def token(user: str = "n1", role: str = "nurse", wards: tuple[str, ...] = ("ward-1",), ttl_s: float = 600) -> str:
    return issue_token(SECRET, user, role, list(wards), ttl_s)


@pytest.fixture
def store(pg_recorder: PostgresRecorder) -> PostgresRecorder:
    return pg_recorder


async def start(store: PostgresRecorder, **changes: Any) -> tuple[Gateway, Any, int]:
    gateway = Gateway(store, dataclasses.replace(CONFIG, **changes))
    server = await gateway.start("127.0.0.1", 0)
    return gateway, server, server.sockets[0].getsockname()[1]


async def stop(gateway: Gateway, server: Any, store: PostgresRecorder) -> None:
    # `PostgresRecorder.subscribe` leaks its LISTEN connection when it is cancelled while
    # still connecting (a ResourceWarning, an error here), which a test that stops the
    # gateway within milliseconds of starting it can hit. Stop only once the gateway's
    # hub has received an event, i.e. once its subscription is set up.
    marker = NewEvent(uuid.uuid4(), "test-teardown", "TestFinished", datetime.now(UTC), {})
    (position,) = await store.append(marker.stream_id, [marker])
    assert await gateway.wait_for_view(position)
    server.close()
    await server.wait_closed()
    await gateway.stop()


async def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return msg


async def auth(ws: ClientConnection, last_position: int = 0, tok: str | None = None) -> dict[str, Any]:
    """Authenticate and return the hello."""
    await ws.send(json.dumps({"type": "auth", "token": tok or token(), "last_position": last_position}))
    hello = await recv(ws)
    assert hello["type"] == "hello", hello
    return hello


async def test_catch_up_then_live_then_resume(store: PostgresRecorder) -> None:
    await store.append("patient-p1", [ev(i) for i in range(5)])
    gateway, server, port = await start(store)
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            hello = await auth(ws, 0)
            assert (hello["user"], hello["role"], hello["wards"], hello["all_wards"]) == ("n1", "nurse", ["ward-1"], False)
            msgs = [await recv(ws) for _ in range(6)]
            assert [m["type"] for m in msgs] == ["event"] * 5 + ["caught_up"]
            assert [(m["position"], m["payload"]["hr"]) for m in msgs[:5]] == [(i + 1, i) for i in range(5)]
            # Position 6 is this connection's own RecordAccessed: read, not shown to a nurse.
            assert msgs[-1]["position"] == 6
            await store.append("patient-p1", [ev(5), ev(6)])
            live = [await recv(ws) for _ in range(2)]
            assert [(m["type"], m["position"], m["payload"]["hr"]) for m in live] == [("event", 7, 5), ("event", 8, 6)]
        await store.append("patient-p1", [ev(7)])
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await auth(ws, 7)
            resumed = [await recv(ws) for _ in range(3)]
            assert [(m["type"], m["position"]) for m in resumed] == [("event", 8), ("event", 9), ("caught_up", 10)]
            assert [m["payload"]["hr"] for m in resumed[:2]] == [6, 7]
    finally:
        await stop(gateway, server, store)


async def test_no_event_lost_or_repeated_across_50_reconnects(store: PostgresRecorder) -> None:
    gateway, server, port = await start(store)
    total = 300
    rng = random.Random(3)

    async def produce() -> None:
        for i in range(total):
            await store.append("patient-p1", [ev(i)])
            await asyncio.sleep(0.002)

    received: list[int] = []
    last = 0
    try:
        producer = asyncio.create_task(produce())
        reconnects = 0
        while len(received) < total:
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await auth(ws, last)
                # Leave after a few messages, at a random point, as a flaky network would.
                for _ in range(rng.randint(1, 6)):
                    if len(received) == total:
                        break
                    msg = await recv(ws)
                    if msg["type"] == "event":
                        received.append(msg["payload"]["hr"])
                    last = max(last, msg["position"])
            reconnects += 1
        await producer
        assert reconnects >= 50
        assert received == list(range(total))
    finally:
        await stop(gateway, server, store)


async def test_slow_client_is_told_to_resync(store: PostgresRecorder) -> None:
    gateway, server, port = await start(store, queue_size=1)
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await auth(ws)
            assert (await recv(ws))["type"] == "caught_up"
            await store.append("patient-p1", [ev(i) for i in range(50)])  # one commit: the hub gets 50 at once
            types = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    types.append((await recv(ws))["type"])
            assert types[-1] == "resync"
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    finally:
        await stop(gateway, server, store)


async def test_bad_last_position_is_refused_with_a_reason(store: PostgresRecorder) -> None:
    await store.append("patient-p1", [ev(0)])
    gateway, server, port = await start(store)
    try:
        for last, words in ((-3, "non-negative"), ("7", "non-negative"), (99, "beyond the log")):
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send(json.dumps({"type": "auth", "token": token(), "last_position": last}))
                with pytest.raises(ConnectionClosed) as closed:
                    await recv(ws)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
                assert "last_position" in closed.value.rcvd.reason and words in closed.value.rcvd.reason
    finally:
        await stop(gateway, server, store)


async def test_serves_the_dashboard_page(store: PostgresRecorder) -> None:
    gateway, server, port = await start(store)
    try:
        def get(path: str) -> tuple[int, str, bytes]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.headers["Content-Type"], r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.headers["Content-Type"], e.read()

        status, ctype, body = await asyncio.to_thread(get, "/")
        assert status == 200 and ctype.startswith("text/html")
        assert b"<html" in body.lower()
        assert await asyncio.to_thread(get, "/static/index.html") == (status, ctype, body)
        # Everything the page loads from /static/ is served, and somewhere in it is the socket's path.
        texts = [body]
        for path in sorted(set(re.findall(rb'(?:src|href)="(/static/[^"]+)"', body))):
            status, ctype, text = await asyncio.to_thread(get, path.decode())
            assert status == 200, path
            texts.append(text)
        assert any(b"/ws" in text for text in texts)
        assert (await asyncio.to_thread(get, "/healthz"))[0] == 200
        for missing in ("/nope", "/static/__init__.py", "/static/../gateway.py", "/static/.hidden",
                        "/static/%2e%2e/gateway.py", "/static/", "/demo-token"):
            assert (await asyncio.to_thread(get, missing))[0] == 404, missing
    finally:
        await stop(gateway, server, store)
