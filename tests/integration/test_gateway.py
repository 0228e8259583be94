"""The WebSocket gateway against a real PostgreSQL event log, over real sockets."""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from dashboards.gateway import Gateway
from event_store.events import NewEvent
from event_store.postgres import PostgresRecorder

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def ev(n: int) -> NewEvent:
    return NewEvent(uuid.uuid4(), "patient-p1", "VitalsObserved", datetime.now(UTC), {"patient_id": "p1", "hr": n})


@pytest.fixture
def store(pg_recorder: PostgresRecorder) -> PostgresRecorder:
    return pg_recorder


async def start(store: PostgresRecorder, queue_size: int = 1000) -> tuple[Gateway, Any, int]:
    gateway = Gateway(store, queue_size=queue_size)
    server = await gateway.start("127.0.0.1", 0)
    return gateway, server, server.sockets[0].getsockname()[1]


async def stop(gateway: Gateway, server: Any) -> None:
    server.close()
    await server.wait_closed()
    await gateway.stop()


async def test_catch_up_then_live_then_resume(store: PostgresRecorder) -> None:
    await store.append("patient-p1", [ev(i) for i in range(5)])
    gateway, server, port = await start(store)
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(json.dumps({"type": "subscribe", "last_position": 0}))
            msgs = [json.loads(await ws.recv()) for _ in range(6)]
            assert [m.get("position") for m in msgs] == [1, 2, 3, 4, 5, 5]
            assert msgs[-1]["type"] == "caught_up"
            await store.append("patient-p1", [ev(5), ev(6)])
            live = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
            assert [(m["type"], m["position"], m["payload"]["hr"]) for m in live] == [("event", 6, 5), ("event", 7, 6)]
        await store.append("patient-p1", [ev(7)])
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(json.dumps({"type": "subscribe", "last_position": 6}))
            resumed = [json.loads(await ws.recv()) for _ in range(3)]
            assert [(m["type"], m["position"]) for m in resumed] == [("event", 7), ("event", 8), ("caught_up", 8)]
    finally:
        await stop(gateway, server)


async def test_no_event_lost_or_repeated_across_50_reconnects(store: PostgresRecorder) -> None:
    gateway, server, port = await start(store)
    total = 300
    rng = random.Random(3)

    async def produce() -> None:
        for i in range(total):
            await store.append("patient-p1", [ev(i)])
            await asyncio.sleep(0.002)

    received: list[int] = []
    try:
        producer = asyncio.create_task(produce())
        reconnects = 0
        while len(received) < total:
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send(json.dumps({"type": "subscribe", "last_position": received[-1] if received else 0}))
                # Leave after a few messages, at a random point, as a flaky network would.
                for _ in range(rng.randint(1, 6)):
                    if len(received) == total:
                        break
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if msg["type"] == "event":
                        received.append(msg["position"])
            reconnects += 1
        await producer
        assert reconnects >= 50
        assert received == list(range(1, total + 1))
    finally:
        await stop(gateway, server)


async def test_slow_client_is_told_to_resync(store: PostgresRecorder) -> None:
    gateway, server, port = await start(store, queue_size=1)
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(json.dumps({"type": "subscribe", "last_position": 0}))
            assert json.loads(await ws.recv())["type"] == "caught_up"
            await store.append("patient-p1", [ev(i) for i in range(50)])  # one commit: the hub gets 50 at once
            types = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    types.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["type"])
            assert types[-1] == "resync"
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    finally:
        await stop(gateway, server)


async def test_bad_subscribe_is_refused_with_a_reason(store: PostgresRecorder) -> None:
    gateway, server, port = await start(store)
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(json.dumps({"type": "subscribe", "last_position": -3}))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert "last_position" in closed.value.rcvd.reason
    finally:
        await stop(gateway, server)


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
        assert b"<html" in body.lower() and b"/ws" in body
        assert (await asyncio.to_thread(get, "/healthz"))[0] == 200
        assert (await asyncio.to_thread(get, "/nope"))[0] == 404
    finally:
        await stop(gateway, server)
