"""Raw ECG for the dashboard, as JSON: the live strips and full disclosure.

The ECG is not in the events; it is in the waveform table (`event_store.waveforms`),
one row per received chunk of int16 counts. The page asks for a time range of one
patient's lead and gets evenly spaced samples in millivolts::

    GET /api/waveform?patient=p0001&lead=II&from=2026-11-26T04:00:00Z&to=2026-11-26T04:00:30Z
    Authorization: Bearer <the dashboard's JWT>

    200 {"patient_id": "p0001", "lead": "II", "fs": 250.0,
         "start": "2026-11-26T04:00:00+00:00", "end": "2026-11-26T04:00:30+00:00",
         "samples_mv": [0.015, 0.02, ..., null, null, ...]}

``samples_mv[k]`` is the sample at ``start + k / fs``; ``null`` marks a gap (no chunk
was received for that time); ``end`` is just after the last sample, so the live
strip's next request starts there. A request spans at most `MAX_SPAN_S` seconds; the
answer is shorter when the data runs out (or when the sampling rate changes: the
client asks again from ``end``). No data: ``fs`` null, ``samples_mv`` empty and
``end`` equal to ``start``.

Two layers. `parse_waveform_query` and `waveform_json` are the pure part plus one
read; `handle_waveform_request` adds the token, the role and ward check of
`dashboards.auth` (the same rule as ``view_patient``) and the audit hook, and returns
``(status, body)`` for the gateway to send. Errors are ``{"error": code, "detail":
text}`` with 400 (``invalid``), 401 (``unauthenticated``) or 403 (``forbidden``).

Auditing: the live strip polls every second, and those reads are covered by the feed
connection's own ``RecordAccessed``; a request for older signal (its end more than
`LIVE_WINDOW_S` before now) is full disclosure and goes through the ``audit`` hook
*before* the read, so no stored ECG leaves without its audit record.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np

from dashboards.auth import may, may_see
from dashboards.tokens import Claims, TokenError
from event_store.waveforms import WaveformChunk

__all__ = [
    "MAX_SPAN_S", "LIVE_WINDOW_S", "WaveformReader", "WaveformQuery", "WaveformRequestError",
    "parse_waveform_query", "assemble", "waveform_json", "bearer_token", "handle_waveform_request",
]

MAX_SPAN_S = 60.0
"""Longest range one request may ask for, in seconds (15,000 samples at 250 Hz)."""
LIVE_WINDOW_S = 30.0
"""A request ending within this many seconds of now is the live strip, not full disclosure."""

_PATIENT = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")  # as in the ``patient-<id>`` stream ids
_LEAD = re.compile(r"^[A-Za-z0-9]{1,8}$")
_DECIMALS = 4  # 0.1 µV: finer than any stored scale (5 µV on the wire, 1 µV for float chunks)


class WaveformReader(Protocol):
    """What this module needs from `event_store.waveforms.WaveformStore`."""

    async def read(self, patient_id: str, lead: str, start: datetime, end: datetime) -> list[WaveformChunk]: ...


class WaveformRequestError(ValueError):
    """A request refused before any read: ``status`` (400, 401, 403), ``code`` and a
    ``detail`` that is safe to show the client."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status, self.code, self.detail = status, code, detail

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class WaveformQuery:
    patient_id: str
    lead: str
    start: datetime
    end: datetime


def _invalid(detail: str) -> WaveformRequestError:
    return WaveformRequestError(400, "invalid", detail)


def _time(value: str | None, name: str) -> datetime:
    if not value:
        raise _invalid(f"{name} is missing (an ISO 8601 time with a zone, e.g. 2026-11-26T04:00:00Z)")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid(f"{name}: {value[:40]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise _invalid(f"{name}: {value[:40]!r} has no time zone (add Z or +00:00)")
    return parsed


def _check_range(start: datetime, end: datetime) -> None:
    span = (end - start).total_seconds()
    if not 0 < span <= MAX_SPAN_S:
        raise _invalid(f"to - from is {span:g} s; it must be more than 0 and at most {MAX_SPAN_S:g} s")


def parse_waveform_query(target: str) -> WaveformQuery:
    """The query of a request target such as ``/api/waveform?patient=p1&lead=II&from=...&to=...``
    (``lead`` defaults to II); raises `WaveformRequestError` (400) naming the bad field."""
    params = parse_qs(urlsplit(target).query, keep_blank_values=True)

    def one(name: str, default: str | None = None) -> str | None:
        values = params.get(name)
        if not values:
            return default
        if len(values) > 1:
            raise _invalid(f"{name} is given {len(values)} times")
        return values[0]

    patient = one("patient") or ""
    if not _PATIENT.match(patient):
        raise _invalid("patient must be 1-128 letters, digits or _.:-")
    lead = one("lead", "II") or ""
    if not _LEAD.match(lead):
        raise _invalid("lead must be 1-8 letters or digits, e.g. II")
    start, end = _time(one("from"), "from"), _time(one("to"), "to")
    _check_range(start, end)
    return WaveformQuery(patient, lead, start, end)


def _first_index(chunk: WaveformChunk, at: datetime) -> int:
    """Index of the chunk's first sample at or after ``at`` (may be <0 or past the end)."""
    # 1 µs of tolerance: datetimes are microsecond-exact, sample periods (4 ms at 250 Hz) are not always.
    return math.ceil((at - chunk.starts_at).total_seconds() * chunk.sampling_hz - 1e-6 * chunk.sampling_hz)


def assemble(chunks: list[WaveformChunk], start: datetime, end: datetime) -> tuple[float | None, datetime,
                                                                                       list[float | None]]:
    """``(fs, first sample time, samples)`` of ``chunks`` (time order) cut to ``[start, end)``,
    gaps between chunks filled with None. Stops at a chunk whose rate differs from the first."""
    fs: float | None = None
    first: datetime = start
    out: list[float | None] = []
    for chunk in chunks:
        if fs is not None and chunk.sampling_hz != fs:
            break
        n = chunk.sample_count
        i0, i1 = max(0, _first_index(chunk, start)), min(n, _first_index(chunk, end))
        if i0 >= i1:
            continue
        values = np.round(chunk.millivolts()[i0:i1], _DECIMALS)
        if fs is None:
            fs = chunk.sampling_hz
            first = chunk.starts_at + timedelta(seconds=i0 / fs)
        else:
            # Where this chunk's first kept sample falls on the output's grid: a gap adds
            # nulls, an overlap (a chunk re-sent with another start) drops what is already there.
            offset = round((chunk.starts_at - first).total_seconds() * fs) + i0
            if offset > len(out):
                out.extend([None] * (offset - len(out)))
            elif offset < len(out):
                values = values[len(out) - offset:]
        out.extend(values.tolist())
    return fs, first, out


async def waveform_json(store: WaveformReader, patient_id: str, lead: str, start: datetime,
                        end: datetime) -> dict[str, Any]:
    """``{"patient_id", "lead", "fs", "start", "end", "samples_mv"}`` for ``[start, end)``
    (at most `MAX_SPAN_S`; raises `WaveformRequestError` otherwise). One read."""
    if start.tzinfo is None or end.tzinfo is None:
        raise _invalid("start and end must be timezone-aware")
    _check_range(start, end)
    fs, first, samples = assemble(await store.read(patient_id, lead, start, end), start, end)
    last = first + timedelta(seconds=len(samples) / fs) if fs else first
    return {"patient_id": patient_id, "lead": lead, "fs": fs, "start": first.astimezone(UTC).isoformat(),
            "end": last.astimezone(UTC).isoformat(), "samples_mv": samples}


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def handle_waveform_request(
    target: str,
    authorization: str | None,
    *,
    verify: Callable[[str], Claims],
    ward_of: Callable[[str], str | None],
    store: WaveformReader,
    audit: Callable[[Claims, WaveformQuery], Awaitable[None]] | None = None,
    now: datetime | None = None,
) -> tuple[int, dict[str, Any]]:
    """``(HTTP status, JSON body)`` for ``GET /api/waveform?...``.

    ``verify`` checks a token (`dashboards.tokens.verify_token` with the gateway's
    secret; raises `TokenError`), ``ward_of`` is the gateway's `WardView.ward_of`,
    ``audit`` appends the ``RecordAccessed`` of a full-disclosure read and is awaited
    before the read (an exception from it fails the request: no audit, no data).
    Store errors propagate; the gateway answers them 503.
    """
    token = bearer_token(authorization)
    try:
        if token is None:
            raise WaveformRequestError(401, "unauthenticated", "send the dashboard token as 'Authorization: Bearer ...'")
        try:
            claims = verify(token)
        except TokenError as e:
            raise WaveformRequestError(401, "unauthenticated", e.reason) from None
        query = parse_waveform_query(target)
        if not may(claims.role, "view_patient"):
            raise WaveformRequestError(403, "forbidden", f"the {claims.role} role may not view patients")
        if not may_see(claims, ward_of(query.patient_id)):
            raise WaveformRequestError(403, "forbidden", f"patient {query.patient_id} is not in your wards")
    except WaveformRequestError as e:
        return e.status, e.body()
    at = now or datetime.now(UTC)
    if audit is not None and query.end < at - timedelta(seconds=LIVE_WINDOW_S):
        await audit(claims, query)
    return 200, await waveform_json(store, query.patient_id, query.lead, query.start, query.end)

