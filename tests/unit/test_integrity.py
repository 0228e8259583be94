"""The pure parts of appending and verifying: the JSON encoder (orjson, with the
standard library's checking encoder behind it), `assign`/`chain` as the sequencer
uses them, and `verify` over plain tuples as PostgreSQL hands them over."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from event_store.base import NewRow, assign, chain, prepare
from event_store.events import AppendRequest, NewEvent
from event_store.exceptions import ConcurrencyConflict, DuplicateEvent
from event_store.integrity import GENESIS, StoredFields, encode_json, leaf_hash, link, micros, verify

T0 = datetime(2026, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)


def reference(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


VALUES = [
    {}, {"a": 1}, {"hr": 80, "spo2": 97.5, "temp": 37.2, "ok": True, "none": None, "list": [1, [2, [3]]]},
    {"text": "Zoë \u2013 ☃ 😀", "ctl": "\x00\x1f\n\r\t\"\\/", "big": 1e300, "tiny": 5e-324, "neg0": -0.0},
    {"int": 2**100, "neg": -(2**64), "nested": {"k": {"k": {"k": []}}}}, [1, "a", None], "plain", 3.25,
    {"deep": _nested(300)},  # beyond orjson's depth limit of 254
    {"z": 1, "a": 2, "m": {"y": 1e-7, "b": 1e16}},
]


@pytest.mark.parametrize("value", VALUES)
def test_encode_json_is_compact_json_that_reads_back_as_the_value(value: object) -> None:
    text = encode_json(value)
    assert json.loads(text) == value
    assert text == encode_json(json.loads(text))  # the same value always gets the same text
    if isinstance(value, dict):
        assert list(json.loads(text)) == list(value)  # insertion order kept


def test_encode_json_is_compact() -> None:
    assert encode_json({"a": [1, 2.5], "b": {"c": "d e"}, "f": None}) == '{"a":[1,2.5],"b":{"c":"d e"},"f":null}'
    assert encode_json({"a": [1, 2.5], "b": {"c": "d e"}}) == '{"a":[1,2.5],"b":{"c":"d e"}}'


def test_encode_json_keeps_utf8_and_the_sign_of_zero() -> None:
    text = encode_json({"name": "Zoë ☃", "neg0": -0.0})
    assert "Zoë ☃" in text
    assert str(json.loads(text)["neg0"]) == "-0.0"


def test_encode_json_takes_what_the_standard_library_takes_and_no_more() -> None:
    # orjson alone would write a datetime (as RFC 3339 text); JSON payloads hold none.
    with pytest.raises(TypeError):
        encode_json({"at": T0})
    # Subclasses of str and int are written as their plain values, as json.dumps does.
    assert encode_json({"id": _Str("x"), "n": _Int(3)}) == reference({"id": "x", "n": 3})


class _Str(str):
    pass


class _Int(int):
    pass


@pytest.mark.parametrize(("value", "error"), [
    ({"hr": float("nan")}, ValueError), ({"x": [float("inf")]}, ValueError), ({"x": {1, 2}}, TypeError),
    ({"x": object()}, TypeError),
])
def test_encode_json_refuses_what_json_dumps_refuses(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_json(value)
    assert encode_json({"after": "an error"}) == '{"after":"an error"}'  # no state left behind


def test_encode_json_names_a_cycle() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="Circular"):
        encode_json(cyclic)


def ev(stream: str, n: int = 0) -> NewEvent:
    return NewEvent(uuid.uuid4(), stream, "VitalsObserved", T0 + timedelta(seconds=n), {"n": n})


def test_assign_numbers_new_events_and_skips_stored_and_repeated_ones() -> None:
    a1, a2, b1 = ev("patient-a", 1), ev("patient-a", 2), ev("patient-b", 1)
    stored = {a1.event_id: ("patient-a", 4)}
    plan = assign([AppendRequest("patient-a", (a1, a2, a2)), AppendRequest("patient-b", (b1,), 0)],
                  10, {"patient-a": 1}, stored)
    assert (plan.events, plan.versions, plan.first) == ([a2, b1], [2, 1], 11)
    assert plan.positions == {a1.event_id: 4, a2.event_id: 11, b1.event_id: 12}
    assert (plan.streams, plan.position) == ({"patient-a": 2, "patient-b": 1}, 12)
    # Only stored events: nothing to write, and the expected version is not checked.
    again = assign([AppendRequest("patient-a", (a1,), 0)], 10, {"patient-a": 1}, stored)
    assert (again.events, again.positions, again.streams, again.position) == ([], {a1.event_id: 4}, {}, 10)


def test_assign_refuses_a_stale_expectation_or_an_id_of_another_stream() -> None:
    a1 = ev("patient-a")
    with pytest.raises(ConcurrencyConflict) as err:
        assign([AppendRequest("patient-b", (ev("patient-b"),)), AppendRequest("patient-a", (a1,), 2)],
               0, {"patient-a": 3}, {})
    assert (err.value.stream_id, err.value.expected, err.value.actual) == ("patient-a", 2, 3)
    with pytest.raises(DuplicateEvent, match=str(a1.event_id)):
        assign([AppendRequest("patient-a", (a1,))], 0, {}, {a1.event_id: ("patient-z", 1)})


def test_chain_over_slices_equals_chain_over_the_whole() -> None:
    events = [ev(f"patient-{i % 3}", i) for i in range(10)]
    plan = assign([AppendRequest(e.stream_id, (e,)) for e in events], 0, {}, {})
    rows, last = chain(plan, prepare(events, T0), T0, GENESIS)
    sliced: list[NewRow] = []
    previous = GENESIS
    for start in range(0, 10, 3):
        part_rows, previous = chain(plan, prepare(plan.events[start:start + 3], T0), T0, previous, start)
        sliced += part_rows
    assert (sliced, previous) == (rows, last)
    assert [(r[0], r[2], r[3]) for r in rows] == [(i + 1, f"patient-{i % 3}", i // 3 + 1) for i in range(10)]
    expected = GENESIS
    for row, e in zip(rows, events, strict=True):
        expected = link(expected, leaf_hash(str(e.event_id), e.stream_id, e.event_type, 1, micros(e.occurred_at),
                                            micros(T0), f'{{"n":{e.payload["n"]}}}', "{}"))
        assert row[-1] == expected


def stored_rows(count: int) -> list[StoredFields]:
    rows: list[StoredFields] = []
    previous = GENESIS
    for p in range(1, count + 1):
        fields = (str(uuid.UUID(int=p)), f"patient-{p % 2}", "VitalsObserved", 1, 1_000 + p, 2_000 + p,
                  f'{{"n":{p}}}', "{}")
        previous = link(previous, leaf_hash(*fields))
        rows.append((p, fields[0], fields[1], (p + 1) // 2, *fields[2:], previous))
    return rows


async def pages(rows: Sequence[StoredFields], size: int) -> AsyncIterator[Sequence[StoredFields]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


@pytest.mark.asyncio
async def test_verify_reads_plain_tuples_across_pages() -> None:
    rows = stored_rows(2_500)
    report = await verify(pages(rows, 999), 2_500, rows[-1][-1])
    assert report.ok and report.events == 2_500


@pytest.mark.parametrize(("tamper", "first_bad"), [
    (lambda rows: rows.__setitem__(1_200, rows[1_200][:8] + ('{"n":0}',) + rows[1_200][9:]), 1_201),
    (lambda rows: rows.pop(1_700), 1_701),
    (lambda rows: rows.insert(400, rows[400]), 401),
    (lambda rows: rows.__setitem__(slice(10, 12), [rows[11], rows[10]]), 11),
    (lambda rows: rows.__setitem__(60, rows[60][:3] + (99,) + rows[60][4:]), 61),
])
@pytest.mark.asyncio
async def test_verify_finds_tampering_in_plain_tuples(tamper: Any, first_bad: int) -> None:
    rows = stored_rows(2_000)
    head = rows[-1][-1]
    tamper(rows)
    report = await verify(pages(rows, 700), 2_000, head)
    assert not report.ok and report.first_bad_position == first_bad, report.summary()


def test_the_postgres_time_codec_takes_unix_microseconds_and_datetimes_alike() -> None:
    from event_store.postgres import _decode_time, _encode_time

    for t in (T0, datetime(2000, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)):
        assert _encode_time(t) == _encode_time(micros(t))
        assert _decode_time(_encode_time(t)) == t
    assert _encode_time(datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == (1,)  # PostgreSQL counts from 2000
    assert _decode_time(((1 << 63) - 1,)).year == 9999  # 'infinity', as asyncpg's own decoder gives it
