"""streams.metrics: the exposition text, and the worker's small HTTP server on a real
socket (no worker behind it: `collect` and `not_ready` are plain functions here; the
fuzz test scrapes a real worker)."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable

import pytest

from streams import metrics
from streams.metrics import (
    CONTENT_TYPE,
    SERVING,
    Family,
    Histogram,
    HistogramFamily,
    MetricsServer,
    parse,
    render,
    serving_port,
)

pytestmark = pytest.mark.asyncio

# A sample line of the text format: name, optional {labels}, value.
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\\\|\\"|\\n)*",?)*\})? '
                    r'(NaN|[+-]Inf|-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?)$')


def families() -> list[Family]:
    return [
        Family("vigil_worker_messages_total", "counter", "Messages taken, by topic",
               [({"topic": "w.ecg"}, 12), ({"topic": "w.vitals"}, 3)]),
        Family("vigil_worker_dead_letters_total", "counter", "Dead letters, by reason", []),
        Family("odd_labels", "gauge", 'Help with a \\ backslash\nand a newline',
               [({"reason": 'say "hi"\\\n'}, 0.25), ({}, math.nan), ({"a": "b"}, math.inf), ({"a": "c"}, 2.0**60)]),
    ]


async def test_the_text_has_help_type_and_one_line_per_sample() -> None:
    text = render(families())
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[:4] == ["# HELP vigil_worker_messages_total Messages taken, by topic",
                         "# TYPE vigil_worker_messages_total counter",
                         'vigil_worker_messages_total{topic="w.ecg"} 12',
                         'vigil_worker_messages_total{topic="w.vitals"} 3']
    # A family with no samples yet still says what it is.
    assert lines[4:6] == ["# HELP vigil_worker_dead_letters_total Dead letters, by reason",
                          "# TYPE vigil_worker_dead_letters_total counter"]
    # Help escapes backslash and newline; label values double quotes too.
    assert lines[6] == "# HELP odd_labels Help with a \\\\ backslash\\nand a newline"
    assert lines[8] == 'odd_labels{reason="say \\"hi\\"\\\\\\n"} 0.25'
    assert lines[9:] == ["odd_labels NaN", 'odd_labels{a="b"} +Inf', 'odd_labels{a="c"} 1.152921504606847e+18']
    for line in lines:
        assert line.startswith("# ") or SAMPLE.match(line), line


async def test_a_histogram_is_exposed_as_cumulative_buckets_sum_and_count() -> None:
    h = Histogram([0.1, 0.5, 2])
    for v in (0.05, 0.1, 0.3, 0.5, 0.7, 5.0):  # a value on a bound counts in that bound's bucket
        h.observe(v)
    assert (h.counts, h.count) == ([2, 2, 1, 1], 6) and h.sum == pytest.approx(6.65)
    lines = HistogramFamily("lat_seconds", "Latency", [({"stage": "a"}, h), ({}, Histogram([1]))]).lines()
    assert lines == ["# HELP lat_seconds Latency", "# TYPE lat_seconds histogram",
                     'lat_seconds_bucket{stage="a",le="0.1"} 2', 'lat_seconds_bucket{stage="a",le="0.5"} 4',
                     'lat_seconds_bucket{stage="a",le="2"} 5', 'lat_seconds_bucket{stage="a",le="+Inf"} 6',
                     f'lat_seconds_sum{{stage="a"}} {h.sum!r}', 'lat_seconds_count{stage="a"} 6',
                     'lat_seconds_bucket{le="1"} 0', 'lat_seconds_bucket{le="+Inf"} 0', "lat_seconds_sum 0",
                     "lat_seconds_count 0"]
    for bad in ([], [1, 1], [2, 1]):
        with pytest.raises(ValueError, match="increasing"):
            Histogram(bad)


async def test_the_text_reads_back_and_the_serving_line_gives_the_port() -> None:
    h = Histogram([0.5])
    h.observe(0.2)
    figures = parse(render([*families(), HistogramFamily("lat_seconds", "Latency", [({"stage": "a"}, h)])]))
    assert figures["vigil_worker_messages_total"] == {frozenset({("topic", "w.ecg")}): 12,
                                                      frozenset({("topic", "w.vitals")}): 3}
    assert "vigil_worker_dead_letters_total" not in figures  # no samples
    odd = figures["odd_labels"]
    assert odd[frozenset({("reason", 'say "hi"\\\n')})] == 0.25 and math.isnan(odd[frozenset()])
    assert odd[frozenset({("a", "b")})] == math.inf and odd[frozenset({("a", "c")})] == 2.0**60
    assert figures["lat_seconds_bucket"] == {frozenset({("stage", "a"), ("le", "0.5")}): 1,
                                             frozenset({("stage", "a"), ("le", "+Inf")}): 1}
    assert figures["lat_seconds_count"] == {frozenset({("stage", "a")}): 1}
    log = "\n".join(["start", SERVING % ("127.0.0.1", 4711), "later", SERVING % ("0.0.0.0", 9464), "end"])
    assert serving_port(log) == 9464 and serving_port("no server here") is None


async def test_a_family_is_a_counter_or_a_gauge() -> None:
    with pytest.raises(ValueError, match="counter or gauge"):
        Family("x", "histogram", "no", [])


async def request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``; the status, headers (lower-case names) and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, v in (h.split(": ", 1) for h in header_lines)}
    return int(status_line.split(" ")[1]), headers, body


class Worker:
    """What the server asks: the families and the readiness, changeable by the test."""

    def __init__(self) -> None:
        self.reason: str | None = "not in its group yet"
        self.fail = False

    def collect(self) -> Iterable[Family]:
        if self.fail:
            raise RuntimeError("a bug in collect")
        return families()

    def not_ready(self) -> str | None:
        return self.reason


async def test_the_server_answers_metrics_health_and_readiness() -> None:
    worker = Worker()
    server = MetricsServer(worker.collect, worker.not_ready)
    port = await server.start("127.0.0.1", 0)
    try:
        status, headers, body = await request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, headers["content-type"]) == (200, CONTENT_TYPE)
        assert body.decode() == render(families()) and int(headers["content-length"]) == len(body)
        status, headers, body = await request(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert status == 200 and body == b"" and int(headers["content-length"]) == len(render(families()).encode())
        assert (await request(port, b"GET /healthz HTTP/1.0\r\n\r\n"))[::2] == (200, b"ok\n")
        assert (await request(port, b"GET /readyz?verbose=1 HTTP/1.1\r\n\r\n"))[::2] == (
            503, b"not ready: not in its group yet\n")
        worker.reason = None
        assert (await request(port, b"GET /readyz HTTP/1.1\r\n\r\n"))[::2] == (200, b"ready\n")
        assert (await request(port, b"GET /other HTTP/1.1\r\n\r\n"))[0] == 404
        assert (await request(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))[0] == 405
        assert (await request(port, b"GET /metrics\r\n\r\n"))[0] == 400
        assert (await request(port, b"\r\n\r\n"))[0] == 400
    finally:
        await server.close()


async def test_bad_clients_are_cut_off_and_the_server_goes_on(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(metrics, "READ_TIMEOUT_S", 0.2)
    worker = Worker()
    server = MetricsServer(worker.collect, worker.not_ready)
    port = await server.start("127.0.0.1", 0)
    try:
        # Headers past the limit: the connection is closed without an answer.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * (metrics.MAX_HEAD_BYTES + 10) + b"\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        # A client that sends nothing is dropped after the read timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        # An error while collecting drops that request, is logged, and the next one is served.
        worker.fail = True
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert "metrics request failed" in caplog.text
        worker.fail = False
        assert (await request(port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 200
    finally:
        await server.close()
