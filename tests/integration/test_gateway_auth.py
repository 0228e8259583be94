"""Authentication, authorisation, commands and reconnects through the real gateway:
real PostgreSQL (the session fixture), real WebSocket connections on port 0."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import http.client
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from dashboards.config import GatewayConfigError
from dashboards.gateway import Gateway
from dashboards.wards import admit_patient
from event_store.events import NewEvent
from event_store.postgres import PostgresRecorder
from tests.integration.test_gateway import CONFIG, SECRET, auth, ev, recv, start, stop, token

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.fixture
def store(pg_recorder: PostgresRecorder) -> PostgresRecorder:
    return pg_recorder


def alert(alert_id: str, patient: str = "p1") -> NewEvent:
    return NewEvent(uuid.uuid4(), f"patient-{patient}", "AlertRaised", datetime.now(UTC), {
        "alert_id": alert_id, "patient_id": patient, "condition": "hr_high", "priority": "medium",
        "message": "HR 150 > 130", "value": 150, "limit": 130, "at": 0.0, "technical": False, "onset": 0.0})


def resolved(alert_id: str, patient: str = "p1") -> NewEvent:
    return NewEvent(uuid.uuid4(), f"patient-{patient}", "AlertResolved", datetime.now(UTC),
                    {"alert_id": alert_id, "patient_id": patient, "reason": "condition_ended"})


def forged(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())}"


async def until_caught_up(ws: ClientConnection) -> list[dict[str, Any]]:
    """Messages up to and including ``caught_up``."""
    out = [await recv(ws)]
    while out[-1]["type"] != "caught_up":
        out.append(await recv(ws))
    return out


async def until_result(ws: ClientConnection, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    while True:
        msg = await recv(ws)
        if msg["type"] == "command_result":
            return msg
        if seen is not None:
            seen.append(msg)


async def command(ws: ClientConnection, seen: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "command", "request_id": str(uuid.uuid4()), **fields}))
    return await until_result(ws, seen)


async def test_bad_tokens_are_refused_with_4401_and_a_reason(store: PostgresRecorder) -> None:
    gateway, server, port = await start(store, auth_timeout_s=0.5)
    now = int(time.time())
    claims = {"sub": "n1", "role": "nurse", "wards": ["ward-1"], "aud": "vigil-dashboard", "iat": now, "exp": now + 60}
    cases = [
        ({"type": "auth", "token": "not-a-token"}, "malformed token"),
        ({"type": "auth", "token": forged({"alg": "HS256"}, claims | {"exp": now - 1})}, "token expired"),
        ({"type": "auth", "token": forged({"alg": "HS256"}, claims | {"aud": "billing"})}, "wrong audience"),
        ({"type": "auth", "token": forged({"alg": "none"}, claims)}, "algorithm not allowed"),
        ({"type": "auth", "token": forged({"alg": "HS256"}, claims)[:-4] + "AAAA"}, "bad signature"),
        ({"type": "subscribe", "last_position": 0}, "first message must be"),
        (None, "authentication timeout"),
    ]
    try:
        for first, reason in cases:
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                if first is not None:
                    await ws.send(json.dumps(first))
                with pytest.raises(ConnectionClosed) as closed:
                    await recv(ws)
                assert closed.value.rcvd is not None, reason
                assert closed.value.rcvd.code == 4401 and closed.value.rcvd.reason.startswith(reason), closed.value.rcvd
        assert await store.read_all() == []  # no refused connection was given an audit record, or anything else
    finally:
        await stop(gateway, server, store)


async def test_a_token_that_expires_closes_the_connection(store: PostgresRecorder) -> None:
    gateway, server, port = await start(store)
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await auth(ws, tok=token(ttl_s=1))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await recv(ws)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "token expired")
    finally:
        await stop(gateway, server, store)


async def test_origin_check_and_message_size_limit(store: PostgresRecorder) -> None:
    gateway, server, port = await start(store, allowed_origins=("https://central.example",))
    url = f"ws://127.0.0.1:{port}/ws"
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, origin=Origin("http://evil.example")):
                pass
        assert refused.value.response.status_code == 403
        for origin in (f"http://127.0.0.1:{port}", "https://central.example"):
            async with connect(url, origin=Origin(origin)) as ws:
                await auth(ws)
        async with connect(url, max_size=None) as ws:
            await auth(ws)
            await until_caught_up(ws)
            await ws.send("x" * (64 * 1024 + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        await stop(gateway, server, store)


async def test_events_are_filtered_by_ward(store: PostgresRecorder) -> None:
    await admit_patient(store, "p2", "ward-2", "B1", by="admissions")
    await store.append("patient-p1", [ev(1, "p1")])
    await store.append("patient-p2", [ev(2, "p2"), alert("b1", "p2")])
    gateway, server, port = await start(store)
    users = {"ward-1 nurse": token("n1"), "ward-2 nurse": token("n2", wards=("ward-2",)),
             "auditor": token("aud1", "auditor", wards=())}
    seen: dict[str, list[tuple[str, str]]] = {}
    try:
        for name, tok in users.items():
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                hello = await auth(ws, tok=tok)
                assert hello["all_wards"] == (name == "auditor")
                msgs = [m for m in await until_caught_up(ws) if m["type"] == "event"]
                # Live events go through the same filter: a ward-2 event between two ward-1
                # events, so a leak in either direction would arrive before what is awaited.
                await store.append("patient-p1", [ev(3, "p1")])
                await store.append("alert-b1", [NewEvent(uuid.uuid4(), "alert-b1", "AlertSilenced", datetime.now(UTC),
                                                         {"alert_id": "b1", "patient_id": "p2", "by": "x"})])
                await store.append("patient-p1", [ev(4, "p1")])
                live = {"ward-1 nurse": 2, "ward-2 nurse": 1, "auditor": 3}[name]
                msgs += [await recv(ws) for _ in range(live)]
                seen[name] = [(m["stream_id"], m["event_type"]) for m in msgs]
        assert seen["ward-1 nurse"] == [("patient-p1", "VitalsObserved")] * 3
        # (The first silence was appended while the ward-1 nurse was connected: catch-up brings it.)
        assert seen["ward-2 nurse"] == [("patient-p2", "PatientAdmitted"), ("patient-p2", "VitalsObserved"),
                                        ("patient-p2", "AlertRaised")] + [("alert-b1", "AlertSilenced")] * 2
        auditor = set(seen["auditor"])
        # The auditor sees every ward and the audit trail: the two nurses' feed access.
        assert {("access-n1", "RecordAccessed"), ("access-n2", "RecordAccessed"), ("patient-p1", "VitalsObserved"),
                ("patient-p2", "AlertRaised"), ("alert-b1", "AlertSilenced")} <= auditor
    finally:
        await stop(gateway, server, store)


@pytest.mark.parametrize("gateways", [1, 2])
async def test_two_simultaneous_acknowledgements_give_one_event(store: PostgresRecorder, gateways: int) -> None:
    """Two nurses acknowledge each of ten alarms at the same moment, through one
    gateway or through two (as behind a load balancer): one acknowledgement each."""
    alerts = [f"a{i}" for i in range(10)]
    await store.append("patient-p1", [alert(a) for a in alerts])
    gateway, server, port = await start(store)
    other, other_server, other_port = await start(store) if gateways == 2 else (gateway, server, port)
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws1, connect(f"ws://127.0.0.1:{other_port}/ws") as ws2:
            await auth(ws1, tok=token("n1"))
            await auth(ws2, tok=token("n2"))
            await until_caught_up(ws1)
            await until_caught_up(ws2)
            seen: dict[str, list[dict[str, Any]]] = {"n1": [], "n2": []}
            for a in alerts:
                msg = {"type": "command", "command": "acknowledge", "alert_id": a}
                await asyncio.gather(ws1.send(json.dumps(msg | {"request_id": f"n1-{a}"})),
                                     ws2.send(json.dumps(msg | {"request_id": f"n2-{a}"})))
                r1, r2 = await asyncio.gather(until_result(ws1, seen["n1"]), until_result(ws2, seen["n2"]))
                assert (r1["request_id"], r2["request_id"]) == (f"n1-{a}", f"n2-{a}")
                winner, loser = (r1, r2) if r1["ok"] else (r2, r1)
                assert winner["ok"] is True and loser["ok"] is False, (r1, r2)
                assert loser["error"] == "already_acknowledged"
                assert loser["detail"].endswith("by n1" if winner is r1 else "by n2")
                history = await store.read_stream(f"alert-{a}")
                assert [(e.event_type, e.position) for e in history] == [("AlertAcknowledged", winner["position"])]
                assert history[0].metadata["actor"] in ("n1", "n2") and history[0].payload["role"] == "nurse"
            # The other nurse sees it: every acknowledgement reaches both dashboards.
            for name, ws in (("n1", ws1), ("n2", ws2)):
                while sum(m.get("event_type") == "AlertAcknowledged" for m in seen[name]) < len(alerts):
                    seen[name].append(await recv(ws))
                acked = [m["payload"]["alert_id"] for m in seen[name] if m.get("event_type") == "AlertAcknowledged"]
                assert acked == alerts
    finally:
        await stop(gateway, server, store)
        if other is not gateway:
            await stop(other, other_server, store)


async def test_commands_roles_and_the_audit_of_views(store: PostgresRecorder) -> None:
    await admit_patient(store, "p2", "ward-2")
    await store.append("patient-p1", [ev(i) for i in range(3)] + [alert("a1")])
    await store.append("patient-p1", [resolved("a1")])
    await store.append("patient-p2", [alert("b1", "p2")])
    gateway, server, port = await start(store)
    url = f"ws://127.0.0.1:{port}/ws"
    try:
        async with connect(url) as nurse, connect(url) as doctor, connect(url) as auditor:
            for ws, tok in ((nurse, token("n1")), (doctor, token("d1", "physician")),
                            (auditor, token("aud1", "auditor", ()))):
                await auth(ws, tok=tok)
                await until_caught_up(ws)

            async def error(ws: ClientConnection, **fields: Any) -> str:
                result = await command(ws, **fields)
                assert result["ok"] is False, result
                return f"{result['error']}: {result['detail']}"

            assert (await error(nurse, command="set_limits", patient_id="p1", limits={"hr": {"high": 120}})) \
                .startswith("forbidden")
            assert (await error(nurse, command="acknowledge", alert_id="b1")).startswith("forbidden")  # ward-2
            assert (await error(nurse, command="acknowledge", alert_id="a1")).startswith("not_open")
            assert (await error(nurse, command="acknowledge", alert_id="nope")).startswith("unknown_alert")
            assert (await error(nurse, command="silence", alert_id="a1", duration_s=900)).startswith("invalid")
            assert (await error(auditor, command="note", patient_id="p1", text="hi")).startswith("forbidden")
            assert (await error(doctor, command="set_limits", patient_id="p1", limits={"hr": {"low": 200}})) \
                .startswith("invalid: hr.")

            changed = await command(doctor, command="set_limits", patient_id="p1", limits={"hr": {"high": 120}})
            note = await command(nurse, command="note", patient_id="p1", text="repositioned")
            assert changed["ok"] and note["ok"]
            (limits,) = await store.read_stream("limits-p1")
            assert (limits.event_type, limits.payload["limits"]["hr"]["high"], limits.metadata["actor"]) == \
                ("AlarmLimitsChanged", 120, "d1")

            view = await command(auditor, command="view_patient", patient_id="p1")
            assert view["ok"] is True and view["ward"] == "ward-1"
            assert [e["event_type"] for e in view["events"]] == \
                ["VitalsObserved"] * 3 + ["AlertRaised", "AlertResolved", "NoteAdded"]
            accessed = [e for e in await store.read_stream("access-aud1") if e.payload["what"] == "view_patient"]
            assert [(e.event_type, e.position, e.payload["patient_id"], e.payload["role"]) for e in accessed] == \
                [("RecordAccessed", view["position"], "p1", "auditor")]
            # Refused views are not disclosures and leave no access record.
            assert (await error(nurse, command="view_patient", patient_id="p2")).startswith("forbidden")
            assert [e.payload["what"] for e in await store.read_stream("access-n1")] == ["event_feed"]
    finally:
        await stop(gateway, server, store)


async def test_commands_are_rate_limited_per_connection(store: PostgresRecorder) -> None:
    await store.append("patient-p1", [ev(0)])
    gateway, server, port = await start(store, command_rate=0.001, command_burst=5)
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws, connect(f"ws://127.0.0.1:{port}/ws") as other:
            await auth(ws)
            await auth(other, tok=token("n2"))
            await until_caught_up(ws)
            await until_caught_up(other)
            for i in range(10):
                await ws.send(json.dumps({"type": "command", "request_id": i, "command": "note", "patient_id": "p1",
                                          "text": f"n{i}"}))
            results = [await until_result(ws) for _ in range(10)]
            assert [r.get("error") for r in results] == [None] * 5 + ["rate_limited"] * 5
            assert [r["request_id"] for r in results] == list(range(10))
            # Another connection has its own bucket.
            assert (await command(other, command="note", patient_id="p1", text="x"))["ok"] is True
    finally:
        await stop(gateway, server, store)


async def test_demo_token_only_in_demo_mode_and_only_for_loopback(store: PostgresRecorder) -> None:
    with pytest.raises(GatewayConfigError, match="loopback"):
        await Gateway(store, dataclasses.replace(CONFIG, demo=True)).start("0.0.0.0", 0)
    gateway, server, port = await start(store, demo=True)

    def get(path: str, host: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path, headers={"Host": host})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    try:
        assert (await asyncio.to_thread(get, "/demo-token", "rebound.example:80"))[0] == 403
        status, body = await asyncio.to_thread(get, "/demo-token", f"localhost:{port}")
        assert status == 200
        demo = json.loads(body)
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            hello = await auth(ws, tok=demo["token"])
            assert (hello["user"], hello["role"], hello["wards"]) == ("demo", "physician", ["ward-1"])
    finally:
        await stop(gateway, server, store)


async def test_no_alarm_missed_or_repeated_across_50_reconnects_during_a_run(store: PostgresRecorder) -> None:
    """A ward-1 nurse's dashboard drops its connection 50+ times (clean closes and
    aborted sockets, during catch-up and while live) while alarms are raised and
    resolved for a ward-1 and a ward-2 patient, with bursts that overflow its queue
    (resync). It must end with every ward-1 event exactly once, in order, and
    nothing from ward-2."""
    await admit_patient(store, "p2", "ward-2")
    gateway, server, port = await start(store, queue_size=16)
    rng = random.Random(7)
    raised: list[str] = []
    done = asyncio.Event()
    during_run = 0

    async def produce() -> None:
        i = 0
        while during_run < 50 or i < 200:
            if i % 3 == 0:
                raised.append(f"a{i}")
                await store.append("patient-p1", [alert(f"a{i}")])
                await store.append("patient-p2", [alert(f"b{i}", "p2")])
            elif i % 5 == 0 and raised:
                await store.append("patient-p1", [resolved(raised[-1])])
            elif i % 40 == 1:
                await store.append("patient-p1", [ev(n) for n in range(20)])  # one commit: overflows a queue of 16
            else:
                await store.append("patient-p1", [ev(i)])
            i += 1
            await asyncio.sleep(0.01)
        done.set()

    positions: list[int] = []
    alarms: list[str] = []
    foreign: list[str] = []
    catch_ups: list[int] = []
    left = {"catch-up": 0, "live": 0, "resync": 0, "aborted": 0}
    last = 0

    def take(msg: dict[str, Any]) -> None:
        nonlocal last
        assert msg["type"] == "event", msg
        if msg["stream_id"] != "patient-p1":
            foreign.append(msg["stream_id"])
        positions.append(msg["position"])
        last = max(last, msg["position"])
        if msg["event_type"] == "AlertRaised":
            alarms.append(msg["payload"]["alert_id"])

    async def session(ws: ClientConnection, final: bool) -> None:
        """One connection's life: catch up (a quarter leave part-way), then a few live messages."""
        nonlocal last
        await auth(ws, last)
        budget = rng.randint(1, 5) if not final and rng.random() < 0.25 else 10**9
        count = 0
        while (msg := await recv(ws)).get("type") != "caught_up":
            if msg.get("type") == "resync":
                left["resync"] += 1
                return
            take(msg)
            count += 1
            if count >= budget:
                left["catch-up"] += 1
                return
        catch_ups.append(count)
        last = max(last, msg["position"])
        if final:
            return
        for _ in range(rng.randint(1, 8)):
            try:
                msg = await recv(ws, timeout=5)
            except TimeoutError:
                # Every step of the producer writes a ward-1 event: silence means it has finished.
                assert done.is_set(), "no live event for 5 s while the producer was running"
                break
            if msg["type"] == "resync":
                left["resync"] += 1
                return
            take(msg)
        left["live"] += 1

    try:
        producer = asyncio.create_task(produce())
        while True:
            final = done.is_set()
            during_run += not final
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await session(ws, final)
                if not final and rng.random() < 0.3:
                    ws.transport.abort()  # a dropped network rather than a clean close
                    left["aborted"] += 1
            if final:
                break
        await producer
        log = await store.read_all(0, 100_000)
        expected = [e.position for e in log if e.stream_id == "patient-p1"]
        withheld = sum(e.stream_id == "patient-p2" and e.event_type == "AlertRaised" for e in log)
        print(f"\n50-reconnect run: {during_run} connections during the run, left {left}; "
              f"{len(positions)} of {len(expected)} ward-1 events received, {len(alarms)} of {len(raised)} alarms, "
              f"{withheld} ward-2 alarms withheld; events per catch-up: mean {statistics.mean(catch_ups):.1f}, "
              f"max {max(catch_ups)}")
        assert during_run >= 50
        assert foreign == []
        assert positions == expected  # every ward-1 event exactly once, in order
        assert alarms == raised  # so no alarm missed or repeated
        assert left["resync"] >= 1 and left["catch-up"] >= 1 and left["live"] >= 1  # every way of leaving was tried
    finally:
        await stop(gateway, server, store)
