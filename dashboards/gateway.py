"""WebSocket gateway: pushes committed events to authorised dashboards, with catch-up,
and takes the care team's commands over the same socket.

Protocol (JSON text messages on ``ws://host:port/ws``)::

    client -> {"type": "auth", "token": "<JWT>", "last_position": N}      first, within 5 s
    server -> {"type": "hello", "user": U, "role": R, "wards": [...], "all_wards": B, "expires_at": T}
    server -> {"type": "event", <RecordedEvent.to_json() fields>}         each visible event after N
    server -> {"type": "caught_up", "position": P}                        the log has been read up to P
    server -> {"type": "event", ...}                                       live, in position order
    server -> {"type": "resync", "reason": ...}, then close 1013          fell behind: reconnect

    client -> {"type": "command", "request_id": ID, "command": "acknowledge", "alert_id": A}
              "silence" (alert_id, duration_s 1-600), "escalate" (alert_id, reason),
              "set_limits" (patient_id, limits), "note" (patient_id, text <= 2000 chars),
              "view_patient" (patient_id)
    server -> {"type": "command_result", "request_id": ID, "ok": true, "event_id": E, "position": P}
              (view_patient adds "patient_id", "ward", "bed" and "events": its last 200 events)
    server -> {"type": "command_result", "request_id": ID, "ok": false, "error": CODE, "detail": TEXT}
              CODE: forbidden, unknown_alert, already_acknowledged, not_open, invalid,
              conflict_resolved, rate_limited, unavailable (the event store is down; retry)
    server -> {"type": "error", "reason": TEXT}     a message that is not a command (not JSON, binary, ...)

Resuming: reconnect with ``last_position`` = the larger of the last event's
``position`` and the last ``caught_up`` ``position`` received. Every event the
client may see is delivered exactly once across reconnects: none is lost (the store
is read from ``last_position``) and none repeats (positions only grow).

Close codes: 4401 authentication failed, with the reason (``token expired``, ``bad
signature``, ``algorithm not allowed``, ``wrong audience``, ``authentication
timeout``, ...), also sent when the token expires on an open connection; 1008 a
malformed ``last_position`` (or one beyond the log, e.g. after the database was
reset: start again from 0); 1013 resync; 1011 the gateway cannot read the log now.
Commands sent before ``caught_up`` are answered after it. Messages over 64 KiB close
the connection (1009); more than `GatewayConfig.command_rate` messages a second
(burst `GatewayConfig.command_burst`) are answered ``rate_limited``.

Visibility (`dashboards.auth`): nurses and physicians receive events about patients
in the wards of their token (a patient's ward: `dashboards.wards`); auditors and
admins receive everything, including the audit trail (``access-*`` streams) and
events about no patient. Each connection appends one ``RecordAccessed`` (what:
``event_feed``), and each ``view_patient`` one more, before any data is sent.

Fan-out: one hub task follows the event store (`subscribe`), applies each event to
the gateway's `WardView`, and hands it to every authorised client's bounded queue
without waiting: there is no backpressure from clients onto the hub. A client
whose queue is full gets nothing more from the hub, is told to ``resync`` and
disconnected; it reconnects with its last position and catches up from the store.
The client's queue is registered *before* the catch-up read, and events are sent
only if their position is above the last one read, so an event committed during
catch-up is delivered exactly once whichever path brings it.

HTTP on the same port: ``/`` (the dashboard page), ``/static/<file>`` (any file
under ``dashboards/static``), ``/healthz``, and ``/demo-token`` only when the
gateway runs with ``demo=True`` on a loopback address. A WebSocket handshake whose
``Origin`` is neither the gateway's own host nor in `GatewayConfig.allowed_origins`
is refused with HTTP 403 (clients that send no ``Origin`` are not browsers; their
token is their only credential).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import re
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from dashboards.auth import may_see, sees_all_wards
from dashboards.commands import CommandHandler, CommandStore, Rejected, access_event, parse_command, request_id_of
from dashboards.config import GatewayConfig, is_loopback
from dashboards.ratelimit import TokenBucket
from dashboards.tokens import Claims, TokenError, issue_token, verify_token
from dashboards.wards import WardView
from dashboards.waveform_api import WaveformQuery, WaveformReader, handle_waveform_request
from event_store.events import JsonObject, RecordedEvent
from event_store.exceptions import EventStoreError

__all__ = ["EventSource", "Gateway", "AUTH_FAILED"]

log = logging.getLogger(__name__)

AUTH_FAILED = 4401
"""Close code for a missing, bad or expired token (4000-4999 are for applications)."""
_RESYNC = 1013
_PAGE = 500
_VIEW_WAIT_S = 10.0  # how long a reader waits for the hub to apply what the reader saw in the store
_STRIKES = 100  # rate-limited messages in a row before the connection is closed
_STATIC_PART = re.compile(r"^[A-Za-z0-9-][A-Za-z0-9_.-]*$")


class EventSource(CommandStore, Protocol):
    """What the gateway needs from the event store (`EventStore` or a recorder)."""

    def subscribe(self, after: int = 0, poll_interval: float = 1.0) -> AsyncGenerator[RecordedEvent, None]: ...


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class _Client:
    def __init__(self, ws: ServerConnection, claims: Claims, config: GatewayConfig) -> None:
        self.ws, self.claims = ws, claims
        # (position, message already encoded): the hub encodes each event once for everyone.
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(config.queue_size)
        self.overflowed = asyncio.Event()
        self.bucket = TokenBucket(config.command_rate, config.command_burst, time.monotonic())
        self.strikes = 0


def _event_message(event: RecordedEvent) -> str:
    return json.dumps({"type": "event", **event.to_json()}, separators=(",", ":"))


class Gateway:
    """The WebSocket server over ``source`` (see the module docstring for the protocol).

    Call `start` inside a running event loop, then ``close()`` the returned server and
    call `stop` to end the hub. The gateway keeps no state of its own beyond the
    in-memory `WardView`, which it rebuilds from the log on `start`: any number of
    gateways can run over one store, and a restarted one misses nothing.
    """

    def __init__(self, source: EventSource, config: GatewayConfig, waveforms: WaveformReader | None = None) -> None:
        self._source, self._config = source, config
        self._waveforms = waveforms  # full disclosure at /api/waveform; None: the route answers 404
        self._view = WardView(config.default_ward)
        self._progress = asyncio.Event()
        self._commands = CommandHandler(source, self._view, config.starting_limits, self.wait_for_view,
                                        lambda: datetime.now(UTC))
        self._clients: set[_Client] = set()
        self._hub: asyncio.Task[None] | None = None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def view(self) -> WardView:
        """The gateway's projection of wards and alarms (read-only use)."""
        return self._view

    async def start(self, host: str, port: int) -> Server:
        """Read the log into the view, start the hub and listen; ``port=0`` picks a
        free port (see ``server.sockets``)."""
        self._config.check_bind(host)
        while page := await self._source.read_all(self._view.position, _PAGE * 2):
            for event in page:
                self._view.apply(event)
        self._hub = asyncio.create_task(self._run_hub(), name="gateway-hub")
        c = self._config
        return await serve(
            self._handle, host, port, process_request=self._process_request, max_size=c.max_message_bytes,
            ping_interval=c.ping_interval_s, ping_timeout=c.ping_timeout_s,
        )

    async def stop(self) -> None:
        if self._hub is not None:
            self._hub.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hub

    async def wait_for_view(self, position: int, timeout: float = _VIEW_WAIT_S) -> bool:
        """Wait until the view has applied the log up to ``position``; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while self._view.position < position:
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    # The hub: the only reader of the live log.

    async def _run_hub(self) -> None:
        while True:
            try:
                # aclosing: on cancellation the subscription's own connection is closed now,
                # not whenever the generator happens to be garbage-collected.
                async with contextlib.aclosing(self._source.subscribe(self._view.position)) as events:
                    async for event in events:
                        self._dispatch(event)
            except (EventStoreError, OSError) as e:
                # Resubscribing from the view's position loses and repeats nothing.
                log.warning("gateway hub: %s; resubscribing in 1 s", e)
                await asyncio.sleep(1.0)

    def _dispatch(self, event: RecordedEvent) -> None:
        self._view.apply(event)
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()
        if not self._clients:
            return
        scope = self._view.scope_of(event)
        item: tuple[int, str] | None = None
        for client in self._clients:
            if client.overflowed.is_set() or not may_see(client.claims, scope):
                continue
            item = item or (event.position, _event_message(event))
            try:
                client.queue.put_nowait(item)
            except asyncio.QueueFull:
                # Nothing more for this client: a later event must never reach it after this
                # one was dropped, or its last position would jump the gap.
                client.overflowed.set()

    # HTTP: pages, health, demo token, and the origin check of the WebSocket handshake.

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/api/waveform" and self._waveforms is not None:
            return await self._waveform(request)
        if path == "/ws":
            return None if self._origin_allowed(request.headers) else _http(403, "Forbidden", b"origin not allowed\n")
        if path in ("/", "/index.html"):
            return _static("index.html")
        if path.startswith("/static/"):
            return _static(path[len("/static/"):])
        if path == "/healthz":
            return _http(200, "OK", b"ok\n")
        if path == "/demo-token" and self._config.demo:
            return self._demo_token(request.headers)
        return _http(404, "Not Found", b"not found\n")

    async def _waveform(self, request: Request) -> Response:
        """Raw ECG for the live strip and full disclosure; same token, role and ward
        rules as ``view_patient``, and reads of the past are audited before the data
        leaves (`dashboards.waveform_api`)."""
        assert self._waveforms is not None
        auth = request.headers.get_all("Authorization")  # get() raises on a repeated header

        async def audit(claims: Claims, q: WaveformQuery) -> None:
            ev = access_event(claims, "waveform", q.patient_id, datetime.now(UTC), None, lead=q.lead,
                              start=q.start.isoformat(), end=q.end.isoformat())
            await self._source.append(ev.stream_id, [ev])

        try:
            status, body = await handle_waveform_request(
                request.path, auth[0] if len(auth) == 1 else None,
                verify=lambda t: verify_token(self._config.jwt_secret, t), ward_of=self._view.ward_of,
                store=self._waveforms, audit=audit)
        except EventStoreError:
            status, body = 503, {"error": "unavailable", "detail": "waveform store unavailable; retry"}
        response = _http(status, _REASONS.get(status, "Error"), json.dumps(body, separators=(",", ":")).encode(),
                         "application/json")
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    def _origin_allowed(self, headers: Headers) -> bool:
        origins = headers.get_all("Origin")
        if not origins:
            return True
        if len(origins) > 1:
            return False
        origin = origins[0].rstrip("/")
        if origin in self._config.allowed_origins:
            return True
        hosts = headers.get_all("Host")
        parts = urlsplit(origin)
        return len(hosts) == 1 and parts.scheme in ("http", "https") and parts.netloc.lower() == hosts[0].lower()

    def _demo_token(self, headers: Headers) -> Response:
        # A page from another site that resolves its own name to 127.0.0.1 (DNS rebinding)
        # would pass a same-origin check; it cannot make the browser send a loopback Host.
        hosts = headers.get_all("Host")
        host = urlsplit(f"//{hosts[0]}").hostname if len(hosts) == 1 else None
        if host is None or not is_loopback(host) or not self._origin_allowed(headers):
            return _http(403, "Forbidden", b"demo tokens are for pages served from this machine\n")
        c = self._config
        wards = [c.default_ward] if c.default_ward else []
        token = issue_token(c.jwt_secret, c.demo_user, c.demo_role, wards, c.demo_ttl_s)
        body = json.dumps({"token": token, "user": c.demo_user, "role": c.demo_role, "wards": wards}).encode()
        return _http(200, "OK", body, "application/json")

    # One WebSocket connection.

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            claims, last = await self._authenticate(ws)
        except _Refused as r:
            await ws.close(r.code, r.reason)
            return
        except ConnectionClosed:
            return
        client = _Client(ws, claims, self._config)
        try:
            audit = access_event(claims, "event_feed", None, datetime.now(UTC), None, from_position=last,
                                 wards=["*"] if sees_all_wards(claims.role) else list(claims.wards))
            await self._source.append(audit.stream_id, [audit])  # before anything is sent
            await ws.send(json.dumps({"type": "hello", "user": claims.user, "role": claims.role,
                                      "wards": list(claims.wards), "all_wards": sees_all_wards(claims.role),
                                      "expires_at": claims.expires_at}))
            self._clients.add(client)
            last = await self._catch_up(client, last)
            await ws.send(json.dumps({"type": "caught_up", "position": last}))
            await self._stream_live(client, last)
        except ConnectionClosed:
            pass
        except _Refused as r:
            await ws.close(r.code, r.reason)
        except EventStoreError as e:
            log.warning("gateway: closing %s's connection: %s", claims.user, e)
            await ws.close(1011, "event store unavailable; reconnect later")
        finally:
            self._clients.discard(client)

    async def _authenticate(self, ws: ServerConnection) -> tuple[Claims, int]:
        try:
            raw = await asyncio.wait_for(ws.recv(), self._config.auth_timeout_s)
        except TimeoutError:
            raise _Refused(AUTH_FAILED, "authentication timeout") from None
        try:
            msg: Any = json.loads(raw)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") != "auth" or not isinstance(msg.get("token"), str):
            raise _Refused(AUTH_FAILED, "first message must be {\"type\": \"auth\", \"token\": ...}")
        try:
            claims = verify_token(self._config.jwt_secret, msg["token"])
        except TokenError as e:
            raise _Refused(AUTH_FAILED, e.reason) from None
        last = msg.get("last_position", 0)
        if isinstance(last, bool) or not isinstance(last, int) or last < 0:
            raise _Refused(1008, "last_position must be a non-negative integer")
        head = await self._source.last_position()
        if last > head:
            raise _Refused(1008, f"last_position {last} is beyond the log (at {head}); start again from 0")
        return claims, last

    async def _catch_up(self, client: _Client, last: int) -> int:
        """Send every visible event after ``last`` from the store; return the position read up to."""
        while True:
            page = await self._source.read_all(last, _PAGE)
            # Filter with the wards as of these events, not as of an older view.
            if page and not await self.wait_for_view(page[-1].position):
                raise _Refused(1011, "gateway is behind the log; reconnect later")
            for event in page:
                if may_see(client.claims, self._view.scope_of(event)):
                    await client.ws.send(_event_message(event))
                last = event.position
            if len(page) < _PAGE:
                return last

    async def _stream_live(self, client: _Client, last: int) -> None:
        # Four things can happen: an event arrives, the client falls behind, its token
        # expires, or it goes away (seen by the reader). One sender task drains the queue
        # for the life of the connection, and this task waits once for whichever of the
        # other three comes first: per event there is only a queue get and a send, which
        # is what lets one gateway feed a thousand dashboards.
        sender = asyncio.create_task(self._send_queued(client, last))
        reader = asyncio.create_task(self._read_client(client))
        overflow = asyncio.create_task(client.overflowed.wait())
        expiry = asyncio.create_task(asyncio.sleep(max(0.0, client.claims.expires_at - time.time())))
        try:
            done, _ = await asyncio.wait({sender, overflow, reader, expiry}, return_when=asyncio.FIRST_COMPLETED)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if client.overflowed.is_set():
                await client.ws.send(json.dumps({"type": "resync", "reason": "client fell behind"}))
                await client.ws.close(_RESYNC, "fell behind; reconnect with last_position")
            elif expiry in done:
                await client.ws.close(AUTH_FAILED, "token expired")
            elif reader in done:
                reader.result()  # raises what ended the reader, if anything
        finally:
            for task in (sender, reader, overflow, expiry):
                task.cancel()

    @staticmethod
    async def _send_queued(client: _Client, last: int) -> None:
        """Send queued events in position order, never one at or below ``last``; stop at
        once when the client has fallen behind (it is told to resync instead)."""
        while True:
            position, message = await client.queue.get()
            if client.overflowed.is_set():
                return
            if position > last:
                await client.ws.send(message)
                last = position

    async def _read_client(self, client: _Client) -> None:
        """Answer what the client sends until it disconnects. Reading also keeps the
        connection's buffers moving, so its pings are answered."""
        async for raw in client.ws:
            reply = await self._on_message(client, raw)
            if reply is None:
                return
            await client.ws.send(json.dumps(reply, separators=(",", ":")))

    async def _on_message(self, client: _Client, raw: str | bytes) -> JsonObject | None:
        if isinstance(raw, bytes):
            return {"type": "error", "reason": "binary messages are not accepted"}
        try:
            msg: Any = json.loads(raw)
        except ValueError:
            return {"type": "error", "reason": "not JSON"}
        rid = request_id_of(msg)
        if not client.bucket.take(time.monotonic()):
            client.strikes += 1
            if client.strikes > _STRIKES:
                await client.ws.close(1008, "rate limit exceeded")
                return None
            return {"type": "command_result", "request_id": rid, "ok": False, "error": "rate_limited",
                    "detail": f"at most {self._config.command_rate:g} messages a second"}
        client.strikes = 0
        if not isinstance(msg, dict) or msg.get("type") != "command":
            return {"type": "error", "reason": "expected {\"type\": \"command\", ...}"}
        try:
            command = parse_command(msg)
        except Rejected as r:
            return {"type": "command_result", "request_id": rid, "ok": False, "error": r.code, "detail": r.detail}
        try:
            return await self._commands.handle(command, client.claims, rid)
        except EventStoreError as e:
            log.warning("gateway: command from %s failed: %s", client.claims.user, e)
            return {"type": "command_result", "request_id": rid, "ok": False, "error": "unavailable",
                    "detail": "the event store is unavailable; retry"}


def _static(name: str) -> Response:
    """A file under ``dashboards/static``: path parts of letters, digits and ``_.-``
    (no leading dot or underscore, so no ``..``, hidden files or ``__init__.py``),
    never Python source."""
    parts = name.split("/")
    if not all(_STATIC_PART.match(p) for p in parts) or parts[-1].endswith((".py", ".pyc")):
        return _http(404, "Not Found", b"not found\n")
    node = resources.files("dashboards.static")
    for part in parts:
        node = node.joinpath(part)
    if not node.is_file():
        return _http(404, "Not Found", b"not found\n")
    ctype = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        ctype += "; charset=utf-8"
    return _http(200, "OK", node.read_bytes(), ctype)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            503: "Service Unavailable"}


def _http(status: int, reason: str, body: bytes, content_type: str = "text/plain") -> Response:
    headers = Headers([
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    ])
    return Response(status, reason, headers, body)
