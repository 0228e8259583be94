"""WebSocket gateway: pushes committed events to dashboards, with catch-up.

One hub task follows the event store (`subscribe`) and hands each new event to
every connected client's bounded queue without waiting: there is no backpressure
from clients onto the hub. A client whose queue is full is told to ``resync`` and
disconnected; it reconnects with its last position and catches up from the store.

Per connection::

    client -> {"type": "subscribe", "last_position": N}
    server -> {"type": "event", ...} for every event after N (catch-up, from the store)
    server -> {"type": "caught_up", "position": P}
    server -> {"type": "event", ...} live, in position order, never repeating one

The client's queue is registered *before* the catch-up read, and events are sent
only if their position is above the last one sent, so an event committed during
catch-up is delivered exactly once whichever path brings it.

The same port serves the dashboard page at ``/`` and a health check at ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from importlib import resources
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from event_store.events import RecordedEvent

__all__ = ["EventSource", "Gateway"]

log = logging.getLogger(__name__)

_CATCH_UP_PAGE = 500


class EventSource(Protocol):
    """What the gateway needs from the event store."""

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]: ...
    async def last_position(self) -> int: ...
    def subscribe(self, after: int = 0, poll_interval: float = 1.0) -> AsyncGenerator[RecordedEvent, None]: ...


class _Client:
    def __init__(self, ws: ServerConnection, queue_size: int) -> None:
        self.ws = ws
        # (position, message already encoded): the hub encodes each event once for everyone.
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(queue_size)
        self.overflowed = asyncio.Event()


def _event_message(event: RecordedEvent) -> str:
    return json.dumps({"type": "event", **event.to_json()}, separators=(",", ":"))


class Gateway:
    def __init__(self, source: EventSource, *, queue_size: int = 1000) -> None:
        self._source = source
        self._queue_size = queue_size
        self._clients: set[_Client] = set()
        self._hub: asyncio.Task[None] | None = None
        self._page = resources.files("dashboards.static").joinpath("index.html").read_bytes()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def start(self, host: str, port: int) -> Server:
        """Start the hub and listen; ``port=0`` picks a free port (see ``server.sockets``)."""
        after = await self._source.last_position()
        self._hub = asyncio.create_task(self._run_hub(after), name="gateway-hub")
        return await serve(
            self._handle, host, port,
            process_request=self._process_request,
            max_size=64 * 1024,  # clients only send small commands
            ping_interval=20, ping_timeout=20,
        )

    async def stop(self) -> None:
        if self._hub is not None:
            self._hub.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hub

    async def _run_hub(self, after: int) -> None:
        # aclosing: on cancellation the subscription's own connection is closed now,
        # not whenever the generator happens to be garbage-collected.
        async with contextlib.aclosing(self._source.subscribe(after)) as events:
            async for event in events:
                item = (event.position, _event_message(event))
                for client in list(self._clients):
                    try:
                        client.queue.put_nowait(item)
                    except asyncio.QueueFull:
                        client.overflowed.set()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None  # go on with the WebSocket handshake
        if path in ("/", "/index.html"):
            return _http(200, "OK", self._page, "text/html; charset=utf-8")
        if path == "/healthz":
            return _http(200, "OK", b"ok\n", "text/plain")
        return _http(404, "Not Found", b"not found\n", "text/plain")

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            last = await self._read_subscribe(ws)
        except (ValueError, TimeoutError) as e:
            await ws.close(1008, f"expected subscribe: {e}"[:120])
            return
        except ConnectionClosed:
            return
        client = _Client(ws, self._queue_size)
        self._clients.add(client)
        try:
            last = await self._catch_up(ws, last)
            await ws.send(json.dumps({"type": "caught_up", "position": last}))
            await self._stream_live(client, last)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)

    async def _read_subscribe(self, ws: ServerConnection) -> int:
        raw = await asyncio.wait_for(ws.recv(), timeout=10)
        try:
            msg: Any = json.loads(raw)
        except ValueError as e:
            raise ValueError("not JSON") from e
        if not isinstance(msg, dict) or msg.get("type") != "subscribe":
            raise ValueError("first message must be {'type': 'subscribe', ...}")
        last = msg.get("last_position", 0)
        if isinstance(last, bool) or not isinstance(last, int) or last < 0:
            raise ValueError("last_position must be a non-negative integer")
        return last

    async def _catch_up(self, ws: ServerConnection, last: int) -> int:
        while True:
            page = await self._source.read_all(last, _CATCH_UP_PAGE)
            for event in page:
                await ws.send(_event_message(event))
                last = event.position
            if len(page) < _CATCH_UP_PAGE:
                return last

    async def _stream_live(self, client: _Client, last: int) -> None:
        # Three things can happen: an event arrives, the client falls behind, or the
        # client goes away (seen by the reader). Waiting on the queue alone would keep
        # a disconnected client's handler alive until the next event.
        reader = asyncio.create_task(self._read_client(client.ws))
        overflow = asyncio.create_task(client.overflowed.wait())
        try:
            while True:
                get = asyncio.create_task(client.queue.get())
                done, _ = await asyncio.wait({get, overflow, reader}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    if overflow in done:
                        await client.ws.send(json.dumps({"type": "resync", "reason": "client fell behind"}))
                        await client.ws.close(1013, "fell behind; reconnect with last_position")
                    return
                position, message = get.result()
                if position > last:
                    await client.ws.send(message)
                    last = position
        finally:
            reader.cancel()
            overflow.cancel()

    async def _read_client(self, ws: ServerConnection) -> None:
        """Drain what the client sends until it disconnects. Reading keeps the
        connection's buffers moving (and its pings answered); commands arrive with
        the dashboard issue, so for now every message gets an error reply."""
        async for _ in ws:
            await ws.send(json.dumps({"type": "error", "reason": "no commands are accepted yet"}))


def _http(status: int, reason: str, body: bytes, content_type: str) -> Response:
    headers = Headers([
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ])
    return Response(status, reason, headers, body)
