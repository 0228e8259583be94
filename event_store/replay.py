"""The auditor's timeline: the events of one stream or patient, or of the whole log,
within a time range, oldest first, and one human-readable line per event.

`timeline()` reads through any `EventRecorder`, page by page, so a long log is
never held in memory. `format_event()` is pure and never raises on stored data:
the auditor must see every event, including malformed and unknown ones.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from event_store.base import EventRecorder
from event_store.events import JsonObject, RecordedEvent

__all__ = ["timeline", "format_event", "patient_stream"]

# Vitals listed first, in the order a monitor shows them; any others follow by name.
_VITALS_ORDER = ("hr", "spo2", "rr", "sbp", "dbp", "temp")


def patient_stream(patient_id: str) -> str:
    """The stream holding a patient's events."""
    return f"patient-{patient_id}"


async def timeline(
    recorder: EventRecorder,
    *,
    stream_id: str | None = None,
    patient_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    page_size: int = 1000,
) -> AsyncIterator[RecordedEvent]:
    """Events in position order, filtered.

    ``patient_id`` p selects stream ``patient-p``; with neither it nor ``stream_id``
    the whole log is read. ``start`` (inclusive) and ``end`` (exclusive) bound
    ``occurred_at`` (device time), and must be timezone-aware. Device time is not
    monotonic in the log (late readings), so the whole stream is scanned and
    filtered rather than cut off at the first event past ``end``.

    Raises `ValueError` (on first iteration) if ``stream_id`` and ``patient_id``
    name different streams, a bound is naive, or ``page_size`` is not positive.
    """
    if patient_id is not None:
        if stream_id is not None and stream_id != patient_stream(patient_id):
            raise ValueError(f"stream_id {stream_id!r} is not patient {patient_id!r}'s stream")
        stream_id = patient_stream(patient_id)
    for name, bound in (("start", start), ("end", end)):
        if bound is not None and bound.tzinfo is None:
            raise ValueError(f"{name}: {bound.isoformat()} must be timezone-aware")
    if page_size < 1:
        raise ValueError(f"page_size: {page_size} is not positive")

    cursor = 0
    while True:
        if stream_id is None:
            page = await recorder.read_all(cursor, page_size)
        else:
            page = await recorder.read_stream(stream_id, cursor + 1, page_size)
        for event in page:
            if (start is None or event.occurred_at >= start) and (end is None or event.occurred_at < end):
                yield event
        if len(page) < page_size:
            return
        cursor = page[-1].position if stream_id is None else page[-1].stream_version


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _generic(payload: JsonObject) -> str:
    return " ".join(f"{k}={_num(v)}" for k, v in sorted(payload.items()))


def _vitals(p: JsonObject) -> str:
    names = [k for k in _VITALS_ORDER if k in p] + sorted(k for k in p if k not in _VITALS_ORDER and k != "patient_id")
    return " ".join(f"{k}={_num(p[k])}" for k in names)


def _raised(p: JsonObject) -> str:
    text = f"{str(p['priority']).upper()} {p['condition']} {_num(p['value'])}"
    if p.get("limit") is not None:
        text += f" > {_num(p['limit'])}"
    return f"{text}: {p.get('message', '')} [alert {p['alert_id']}]"


def _resolved(p: JsonObject) -> str:
    text = f"resolved alert {p['alert_id']}"
    if "condition" in p:
        text += f" {p['condition']}"
    if "value" in p:
        text += f" at {_num(p['value'])}"
    return text


def _accessed(p: JsonObject) -> str:
    text = f"{p['actor']} {p['action']} {p['subject']}"
    return text + (f" ({_num(p['events'])} events)" if "events" in p else "")


_RENDERERS: dict[str, Callable[[JsonObject], str]] = {
    "VitalsObserved": _vitals,
    "AlertRaised": _raised,
    "AlertResolved": _resolved,
    "RecordAccessed": _accessed,
}


def format_event(e: RecordedEvent) -> str:
    """One line: ``<occurred_at ISO> #<position> <stream_id> <event_type> <facts>``.

    Facts: ``hr=150 spo2=97`` for vitals; ``HIGH hr_high 150 > 130: <message>
    [alert <id>]`` for a raised alert; ``resolved alert <id> hr_high at 110``;
    otherwise (unknown type, or a known type missing a field) every payload field
    as ``key=value`` sorted by key, with `` v<n>`` after the type if ``schema_version``
    is not 1.
    """
    head = f"{e.occurred_at.isoformat()} #{e.position} {e.stream_id} {e.event_type}"
    if e.schema_version != 1:
        head += f" v{e.schema_version}"
    render = _RENDERERS.get(e.event_type) if e.schema_version == 1 else None
    try:
        facts = render(e.payload) if render is not None else _generic(e.payload)
    except KeyError:
        facts = _generic(e.payload)
    return f"{head} {facts}".rstrip()
