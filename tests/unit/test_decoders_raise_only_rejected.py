"""Every decoder of outside input returns a value or raises `Rejected`, never anything else.

The worker catches only `Rejected` around decoding (streams/app.py), so any other
exception from a decoder crashes its agent instead of making a dead letter. The
inputs here aim at the escapes found so far: integers too big for a float
(OverflowError), ``NaN``/``Infinity`` literals, nesting deeper than the recursion
limit (RecursionError), dates at the ends of datetime's range (OverflowError when
converted to UTC), invalid UTF-8 and extreme binary header fields.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.dead_letter import decode_dead_letter
from streams.ecg_codec import decode_ecg_chunk
from streams.fhir import decode_fhir
from streams.vitals_codec import Rejected, decode_vitals

_PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

_NUMBERS = st.one_of(
    st.integers(), st.floats(),  # floats include nan and inf: json.dumps writes NaN and Infinity
    st.sampled_from([10**400, -(10**400), 2**63, 2**64, 0, -0.0, 1e308, 5e-324, 80, 120, 60.5]),
)
_TIMES = st.builds(
    str.__add__,
    st.sampled_from(["0001-01-01T00:00:00", "0001-01-01T13:59:59", "9999-12-31T10:00:00", "9999-12-31T23:59:59.999999",
                     "1970-01-01T00:00:00", "2999-12-31T23:59:59", "2025-02-29T00:00:00", "2025-13-01T00:00:00",
                     "2025-11-26T24:00:00"]),
    st.sampled_from(["Z", "+14:00", "-14:00", "+23:59", "-23:59", "+24:00", "+00:00", "-00:00"]),
)
_LEAVES = st.none() | st.booleans() | _NUMBERS | _TIMES | st.text(max_size=8)
_JSON: st.SearchStrategy[Any] = st.recursive(
    _LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10)
_DEPTH = st.sampled_from([1, 100, 990, 1000, 3000, 100_000])


def _nest(value: str, depth: int) -> str:
    return "[" * depth + value + "]" * depth


def _as_bytes(doc: Any, how: int, depth: int) -> bytes:
    """``doc`` as JSON, then sometimes damaged: deeply nested, or with a byte that is not UTF-8."""
    text = json.dumps(doc)
    if how == 1:
        text = f'{{"schema_version": 1, "resourceType": "Observation", "x": {_nest(text, depth)}}}'
    data = text.encode()
    if how == 2:
        data = data[: len(data) // 2] + b"\xff" + data[len(data) // 2:]
    return data


def _must_only_reject(decode: Callable[[bytes], object], data: bytes) -> None:
    try:
        decode(data)
    except Rejected as r:
        assert r.reason and r.detail


_VITALS_FIELDS = ["schema_version", "patient_id", "device_id", "ts", "hr", "spo2", "rr", "sbp", "dbp", "temp",
                  "oxygen", "acvpu", "x"]


@_PROPERTY
@given(st.dictionaries(st.sampled_from(_VITALS_FIELDS), _JSON, max_size=8), st.sampled_from([1, 2]),
       st.integers(0, 2), _DEPTH)
def test_vitals_decoder(changes: dict[str, Any], version: int, how: int, depth: int) -> None:
    doc: dict[str, Any] = {"schema_version": version, "patient_id": "p1", "ts": 1764122400000, **changes}
    _must_only_reject(decode_vitals, _as_bytes(doc, how, depth))


def _observation(code: str, changes: dict[str, Any]) -> dict[str, Any]:
    quantity = {"value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
    doc: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-11-26T02:00:00Z",
        "valueQuantity": {**quantity, "code": "/min"},
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": c}]}, "valueQuantity": dict(quantity)}
                      for c in ("8480-6", "8462-4")],
    }
    for key, value in sorted(changes.items(), key=lambda kv: not kv[0].startswith("value=")):  # numbers first
        if key.startswith("value="):  # a number where the decoder reads one
            target = doc["valueQuantity"] if code != "85354-9" else doc["component"][int(key == "value=dbp")]
            target["value"] = value
        else:
            doc[key] = value
    return doc


_FHIR_FIELDS = ["resourceType", "status", "code", "subject", "device", "effectiveDateTime", "valueQuantity",
                "component", "entry", "value=hr", "value=sbp", "value=dbp"]


@_PROPERTY
@given(st.sampled_from(["8867-4", "8310-5", "85354-9", "x"]), st.dictionaries(st.sampled_from(_FHIR_FIELDS), _JSON,
                                                                              max_size=4),
       st.none() | _TIMES, st.integers(0, 3), st.booleans(), _DEPTH)
def test_fhir_decoder(code: str, changes: dict[str, Any], stamp: str | None, bundle_size: int, damage: bool,
                      depth: int) -> None:
    doc = _observation(code, changes if stamp is None else changes | {"effectiveDateTime": stamp})
    if bundle_size:
        doc = {"resourceType": "Bundle", "entry": [{"resource": doc}] * bundle_size}
    _must_only_reject(decode_fhir, _as_bytes(doc, 2 if damage else 1 if depth > 1 else 0, depth))


@_PROPERTY
@given(st.sampled_from(["8867-4", "8310-5", "85354-9"]), _TIMES, _NUMBERS, _NUMBERS, st.booleans())
def test_fhir_decoder_with_any_time_and_numbers_in_an_otherwise_valid_observation(
        code: str, stamp: str, first: float, second: float, in_bundle: bool) -> None:
    # The changes above mostly break a field checked before the time; here only time and values vary.
    doc = _observation(code, {"effectiveDateTime": stamp, "value=hr": first, "value=sbp": first, "value=dbp": second})
    if in_bundle:
        doc = {"resourceType": "Bundle", "entry": [{"resource": _observation(code, {})}, {"resource": doc}]}
    _must_only_reject(decode_fhir, json.dumps(doc).encode())


@_PROPERTY
@given(_JSON, st.integers(0, 2), _DEPTH)
def test_dead_letter_decoder(doc: Any, how: int, depth: int) -> None:
    _must_only_reject(decode_dead_letter, _as_bytes(doc, how, depth))


@_PROPERTY
@given(st.binary(max_size=200) | st.sampled_from([b"NaN", b"Infinity", b"-1e400", b"1" * 5000, b"[" * 100_000]))
def test_every_json_decoder_on_raw_bytes(data: bytes) -> None:
    for decode in (decode_vitals, decode_fhir, decode_dead_letter):
        _must_only_reject(decode, data)


_HEADER = struct.Struct("<4sBBHBQqIf")


@_PROPERTY
@given(st.integers(0, 3), st.integers(0, 2**16 - 1), st.integers(0, 255), st.integers(0, 2**64 - 1),
       st.integers(-(2**63), 2**63 - 1) | st.sampled_from([-(2**63), 2**63 - 1, 0, 32503680000000_000]),
       st.floats(width=32), st.binary(max_size=70), st.binary(max_size=70), st.binary(max_size=64), st.booleans())
def test_ecg_decoder_with_any_header_values_and_a_valid_crc(
        fmt: int, rate: int, lead: int, sequence: int, first_us: int, scale: float, patient: bytes, device: bytes,
        samples: bytes, exact_count: bool) -> None:
    # A valid CRC, so the meaning checks (time, scale, ids, samples) are the ones exercised.
    count = len(samples) // (4 if fmt == 2 else 2) if exact_count else len(samples)
    body = (_HEADER.pack(b"VECG", 1, fmt, rate, lead, sequence, first_us, count, scale)
            + bytes([len(patient) % 256]) + patient + bytes([len(device) % 256]) + device + samples)
    _must_only_reject(decode_ecg_chunk, body + struct.pack("<I", zlib.crc32(body)))
