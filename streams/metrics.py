"""The worker's figures for operators, over HTTP.

    GET /metrics   its counters, gauges and histograms (`streams.worker_metrics`), in
                   Prometheus' text format (0.0.4)
    GET /healthz   200 while the event loop answers (a stuck loop times out)
    GET /readyz    200 once the worker has joined its group and recovered its tables,
                   while the event store takes its writes; else 503 and the reason

Off unless ``VIGIL_WORKER_METRICS_PORT`` is set: workers of one group often share a
host (the tests, the ward bench), and one fixed port would keep all but the first
from starting. The figures are counts the worker keeps anyway (it logs them every
30 s); a scrape only reads them, so the server costs nothing between scrapes. No
label carries a patient id: ids are pseudonymous but still patient data, and one
series per patient would grow without bound. Labels are topic names, partitions,
dead-letter reasons and collector generations.

`MetricsServer` speaks just enough HTTP/1.1 for a scraper, a probe or ``curl``: one
request per connection, GET or HEAD, no body. A request line or headers that do not
arrive within `READ_TIMEOUT_S`, or pass `MAX_HEAD_BYTES`, end the connection.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus

__all__ = ["CONTENT_TYPE", "MAX_HEAD_BYTES", "READ_TIMEOUT_S", "SERVING", "Family", "Histogram", "HistogramFamily",
           "MetricsServer", "parse", "render", "serving_port"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
READ_TIMEOUT_S = 5.0
MAX_HEAD_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Family:
    """One metric: its name, ``counter`` or ``gauge``, a line of help, and its samples
    (label name -> value, and the number)."""

    name: str
    kind: str
    help: str
    samples: Sequence[tuple[Mapping[str, str], float]]

    def __post_init__(self) -> None:
        if self.kind not in ("counter", "gauge"):
            raise ValueError(f"{self.name}: kind must be counter or gauge, got {self.kind!r}")

    def lines(self) -> list[str]:
        return [*_head(self.name, self.kind, self.help), *(_sample(self.name, labels, v) for labels, v in self.samples)]


class Histogram:
    """Observations counted by the first of ``bounds`` they do not exceed (the last
    count: above them all), with their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"bounds must be increasing and not empty, got {bounds}")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class HistogramFamily:
    """A histogram metric: a `Histogram` per label set, exposed as Prometheus'
    cumulative ``_bucket`` series (``le`` the bound), ``_sum`` and ``_count``."""

    name: str
    help: str
    series: Sequence[tuple[Mapping[str, str], Histogram]]

    def lines(self) -> list[str]:
        out = _head(self.name, "histogram", self.help)
        for labels, h in self.series:
            running = 0
            for bound, n in zip((*h.bounds, math.inf), h.counts, strict=True):
                running += n
                out.append(_sample(f"{self.name}_bucket", {**labels, "le": _number(bound)}, running))
            out += [_sample(f"{self.name}_sum", labels, h.sum), _sample(f"{self.name}_count", labels, running)]
        return out


def _escape(value: str, quote: bool) -> str:
    """Backslash and newline escaped, as help text needs; and double quotes, as label values do."""
    value = value.replace("\\", "\\\\").replace("\n", "\\n")
    return value.replace('"', '\\"') if quote else value


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def _head(name: str, kind: str, help_: str) -> list[str]:
    return [f"# HELP {name} {_escape(help_, quote=False)}", f"# TYPE {name} {kind}"]


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{_escape(v, quote=True)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"


def render(families: Iterable[Family | HistogramFamily]) -> str:
    """The exposition text of ``families``: for each, HELP and TYPE lines, then one line per sample."""
    return "\n".join(line for f in families for line in f.lines()) + "\n"


Samples = dict[str, dict[frozenset[tuple[str, str]], float]]
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse(text: str) -> Samples:
    """`render`'s text read back (for the tests and bench/ward.py): sample name (with
    its ``_bucket``/``_sum``/``_count`` suffix) -> label set -> value."""
    out: Samples = {}
    for line in text.splitlines():
        found = _LINE.match(line)
        if found is None:
            continue  # HELP, TYPE, blank
        name, labels, value = found.groups()
        pairs = frozenset((k, re.sub(r"\\.", lambda m: _UNESCAPE[m.group(0)], v))
                          for k, v in _LABEL.findall(labels or ""))
        out.setdefault(name, {})[pairs] = float(value)
    return out


SERVING = "metrics on http://%s:%d/metrics (and /healthz, /readyz)"
"""The line the worker logs once it serves (host, port)."""


def serving_port(log_text: str) -> int | None:
    """The port of the last `SERVING` line in a worker's log, or None."""
    ports = re.findall(r"metrics on http://[^ ]+:(\d+)/metrics \(and", log_text)
    return int(ports[-1]) if ports else None


class MetricsServer:
    """``collect()`` gives the families for /metrics; ``not_ready()`` None when the
    worker is ready, else why not (for /readyz). Both run on the event loop, per request."""

    def __init__(self, collect: Callable[[], Iterable[Family | HistogramFamily]],
                 not_ready: Callable[[], str | None]) -> None:
        self._collect = collect
        self._not_ready = not_ready
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); return the port."""
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD_BYTES)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return  # too long (the reader's limit is MAX_HEAD_BYTES), cut short, or too slow
            status, body, content_type, is_head = self._respond(head)
            data = body.encode()
            writer.write(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {content_type}\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                         + (b"" if is_head else data))
            await writer.drain()
        except ConnectionError:
            pass
        except Exception:  # a bug here must not end the worker: log it, drop the connection
            log.exception("metrics request failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[int, str, str, bool]:
        """(status, body, content type, whether the body is left out) for one request head."""
        text = "text/plain; charset=utf-8"
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return 400, "bad request line\n", text, False
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return 405, "only GET and HEAD\n", text, False
        is_head = method == b"HEAD"
        if target == b"/metrics":
            return 200, render(self._collect()), CONTENT_TYPE, is_head
        if target == b"/healthz":
            return 200, "ok\n", text, is_head
        if target == b"/readyz":
            reason = self._not_ready()
            return (200, "ready\n", text, is_head) if reason is None else (503, f"not ready: {reason}\n", text, is_head)
        return 404, "not found: /metrics, /healthz, /readyz\n", text, is_head
