from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from event_store.events import NewEvent, RecordedEvent
from event_store.exceptions import InvalidEvent
from event_store.integrity import micros


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [("stream_id", {"stream_id": "nope"}), ("event_type", {"event_type": "vitals_observed"}),
     ("occurred_at", {"occurred_at": datetime(2026, 1, 1)}), ("schema_version", {"schema_version": 0})],
)
def test_invalid_events_name_the_field(field: str, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"event_id": uuid.uuid4(), "stream_id": "patient-p1", "event_type": "VitalsObserved",
                               "occurred_at": datetime.now(UTC), "payload": {}} | kwargs
    with pytest.raises(InvalidEvent, match=field):
        NewEvent(**args)  # type: ignore[arg-type]


T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)


def eager(**changes: Any) -> RecordedEvent:
    fields: dict[str, Any] = {
        "position": 7, "event_id": uuid.UUID(int=42), "stream_id": "patient-p1", "stream_version": 3,
        "event_type": "VitalsObserved", "schema_version": 2, "occurred_at": T0, "recorded_at": T1,
        "payload": {"hr": 80, "name": "Zoë"}, "metadata": {"source": {"offset": 9}}, "chain_hash": b"h" * 32,
    } | changes
    return RecordedEvent(**fields)


def lazy() -> RecordedEvent:
    return RecordedEvent.stored(7, uuid.UUID(int=42), "patient-p1", 3, "VitalsObserved", 2, micros(T0), micros(T1),
                                '{"hr":80,"name":"Zoë"}', '{"source":{"offset":9}}', b"h" * 32)


def test_a_stored_event_decodes_on_first_access_and_keeps_the_result() -> None:
    e = lazy()
    assert (e.occurred_at, e.recorded_at) == (T0, T1)
    assert e.occurred_at.tzinfo is not None
    assert e.payload == {"hr": 80, "name": "Zoë"} and e.metadata == {"source": {"offset": 9}}
    assert e.payload is e.payload  # decoded once: what a caller holds stays the event's payload
    assert e == eager()
    assert e.to_json() == eager().to_json()


def test_recorded_events_compare_field_by_field() -> None:
    assert eager() == eager()
    changes: list[dict[str, Any]] = [{"position": 8}, {"payload": {"hr": 81}}, {"metadata": {}}, {"chain_hash": b""},
                                     {"occurred_at": T1}, {"schema_version": 1}]
    for change in changes:
        assert eager(**change) != eager()
    assert eager() != object()
    with pytest.raises(TypeError):
        hash(eager())  # the payload dict is mutable, as it was in the dataclass


@pytest.mark.parametrize("make", [eager, lazy])
def test_recorded_events_are_immutable(make: Callable[[], RecordedEvent]) -> None:
    e = make()
    for name in ("position", "payload", "occurred_at", "chain_hash"):
        with pytest.raises(AttributeError):
            setattr(e, name, None)
    with pytest.raises(AttributeError):
        e.extra = 1  # type: ignore[attr-defined]


def test_with_payload_changes_only_payload_and_schema_version() -> None:
    e = lazy()
    up = e.with_payload({"hr": 80, "unit": "bpm"}, 3)
    assert (up.payload, up.schema_version) == ({"hr": 80, "unit": "bpm"}, 3)
    assert up == eager(payload={"hr": 80, "unit": "bpm"}, schema_version=3)
    assert e.payload == {"hr": 80, "name": "Zoë"}


def test_repr_names_every_field() -> None:
    text = repr(lazy())
    assert text.startswith("RecordedEvent(position=7, event_id=UUID(")
    assert "payload={'hr': 80, 'name': 'Zoë'}" in text and "chain_hash=b'hhhh" in text


@pytest.mark.parametrize("at", [T0, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                                datetime(1970, 1, 1, tzinfo=UTC), datetime(1900, 6, 1, 0, 0, 0, 1, tzinfo=UTC)])
def test_stored_times_may_come_as_postgresql_binary_timestamps(at: datetime) -> None:
    since_2000 = micros(at) - micros(datetime(2000, 1, 1, tzinfo=UTC))
    binary = since_2000.to_bytes(8, "big", signed=True)
    e = RecordedEvent.stored(1, uuid.UUID(int=1), "patient-p1", 1, "VitalsObserved", 1, binary, micros(at), "{}", "{}",
                             b"")
    assert e.occurred_at == e.recorded_at == at


def test_recorded_events_match_patterns_like_the_dataclass_did() -> None:
    match lazy():
        case RecordedEvent(7, _, "patient-p1", 3, payload={"hr": hr}):
            assert hr == 80
        case _:
            pytest.fail("a stored event did not match its fields")


@pytest.mark.parametrize("text", [
    '{"hr":80,"temp":37.1,"ok":true,"none":null,"s":"Zoë"}',
    '{"big":1237940039285380274899124224,"neg":-9223372036854775809}',  # beyond 64 bits: exact ints
    '{"small":0.00012345678901234568,"e":1e+300,"f":1e300}',
    '{"digits":"12345678901234567890123"}',
])
def test_stored_payload_text_reads_back_exactly_as_the_standard_library_reads_it(text: str) -> None:
    e = RecordedEvent.stored(1, uuid.uuid4(), "patient-p1", 1, "VitalsObserved", 1, micros(T0), micros(T0), text, text, b"")
    assert e.payload == json.loads(text)
    assert e.metadata == json.loads(text)
    assert [type(v) for v in e.payload.values()] == [type(v) for v in json.loads(text).values()]
