from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.dead_letter import (
    MAX_DEAD_LETTER_BYTES,
    MAX_DEAD_LETTER_PAYLOAD_BYTES,
    MAX_DETAIL_CHARS,
    DeadLetter,
    DeadLetterSource,
    dead_letter_headers,
    decode_dead_letter,
    encode_dead_letter,
)
from streams.vitals_codec import Rejected, decode_vitals

SOURCE = DeadLetterSource("vigil.vitals", 3, 1200, timestamp_ms=1764122400000, key=b"p0001")
_PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def envelope(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(encode_dead_letter("malformed_json", "bad", SOURCE, b"{not json", worker="w1"))
    for name, value in changes.items():
        target = doc["source"] if name.startswith("source_") else doc
        key = name.removeprefix("source_")
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return doc


def test_round_trip_keeps_everything() -> None:
    letter = decode_dead_letter(encode_dead_letter("malformed_json", "Expecting value", SOURCE, b"{not json",
                                                   worker="vigil-worker"))
    assert letter == DeadLetter("malformed_json", "Expecting value", SOURCE, b"{not json", 9, False, "vigil-worker")


def test_null_and_empty_stay_distinct() -> None:
    src = DeadLetterSource("vigil.ecg", 0, 0)
    null = decode_dead_letter(encode_dead_letter("empty", "no value", src, None))
    empty = decode_dead_letter(encode_dead_letter("empty", "no value", DeadLetterSource("vigil.ecg", 0, 0, key=b""), b""))
    assert (null.payload, null.source.key, null.payload_size) == (None, None, 0)
    assert (empty.payload, empty.source.key, empty.payload_size) == (b"", b"", 0)
    assert null.source.timestamp_ms is None and null.worker is None


def test_the_largest_accepted_input_round_trips_exactly() -> None:
    payload = bytes(range(256)) * (MAX_DEAD_LETTER_PAYLOAD_BYTES // 256)
    raw = encode_dead_letter("crc_mismatch", "corrupt", SOURCE, payload)
    assert len(raw) <= MAX_DEAD_LETTER_BYTES
    letter = decode_dead_letter(raw)
    assert letter.payload == payload and not letter.payload_truncated


def test_an_oversized_input_keeps_its_head_its_size_and_a_flag() -> None:
    payload = b"x" * (MAX_DEAD_LETTER_PAYLOAD_BYTES + 10)
    raw = encode_dead_letter("oversized", "too big", SOURCE, payload)
    assert len(raw) <= MAX_DEAD_LETTER_BYTES
    letter = decode_dead_letter(raw)
    assert letter.payload == payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES]
    assert letter.payload_size == len(payload) and letter.payload_truncated


def test_long_detail_is_cut_and_odd_text_survives() -> None:
    detail = "\ud800 lone surrogate, é, \x00 " * 100
    letter = decode_dead_letter(encode_dead_letter("invalid_field", detail, SOURCE, b""))
    assert letter.detail == detail[:MAX_DETAIL_CHARS]


def test_a_real_rejection_becomes_a_dead_letter() -> None:
    original = b'{"schema_version": 9}'
    with pytest.raises(Rejected) as err:
        decode_vitals(original)
    letter = decode_dead_letter(encode_dead_letter(err.value.reason, err.value.detail, SOURCE, original))
    assert letter.reason == "unknown_schema_version" and letter.payload == original


def test_headers_match_what_the_worker_sends_today() -> None:
    assert dead_letter_headers("malformed_json", "bad \ud800", SOURCE) == [
        ("reason", b"malformed_json"), ("detail", b"bad \\ud800"), ("source", b"vigil.vitals/3/1200")]


@pytest.mark.parametrize(("reason", "source"), [
    ("Malformed JSON", SOURCE),
    ("", SOURCE),
    ("ok", DeadLetterSource("bad topic", 0, 0)),
    ("ok", DeadLetterSource("t", -1, 0)),
    ("ok", DeadLetterSource("t", 0, -1)),
])
def test_encoder_refuses_caller_bugs(reason: str, source: DeadLetterSource) -> None:
    with pytest.raises(ValueError):
        encode_dead_letter(reason, "d", source, b"")


@pytest.mark.parametrize(("raw", "reason"), [
    (None, "empty"),
    (b"x" * (MAX_DEAD_LETTER_BYTES + 1), "oversized"),
    (b"\x80", "malformed_json"),
    (b"[]", "malformed_json"),
    (json.dumps(envelope(schema_version=2)).encode(), "unknown_schema_version"),
    (json.dumps(envelope(schema_version=...)).encode(), "unknown_schema_version"),
    (json.dumps(envelope(extra=1)).encode(), "unknown_field"),
    (json.dumps(envelope(source_extra=1)).encode(), "unknown_field"),
    (json.dumps(envelope(worker=...)).encode(), "invalid_field"),
    (json.dumps(envelope(source_key_b64=...)).encode(), "invalid_field"),
    (json.dumps(envelope(reason="Bad Reason")).encode(), "invalid_field"),
    (json.dumps(envelope(reason=5)).encode(), "invalid_field"),
    (json.dumps(envelope(detail=None)).encode(), "invalid_field"),
    (json.dumps(envelope(detail="x" * (MAX_DETAIL_CHARS + 1))).encode(), "invalid_field"),
    (json.dumps(envelope(worker=3)).encode(), "invalid_field"),
    (json.dumps(envelope(source="vigil.vitals/3/1200")).encode(), "invalid_field"),
    (json.dumps(envelope(source_topic="a b")).encode(), "invalid_field"),
    (json.dumps(envelope(source_partition=-1)).encode(), "invalid_field"),
    (json.dumps(envelope(source_offset="7")).encode(), "invalid_field"),
    (json.dumps(envelope(source_timestamp_ms=1.5)).encode(), "invalid_field"),
    (json.dumps(envelope(source_key_b64="not base64!")).encode(), "invalid_field"),
    (json.dumps(envelope(source_key_b64="A" * 1400)).encode(), "invalid_field"),
    (json.dumps(envelope(payload_b64="é")).encode(), "invalid_field"),
    (json.dumps(envelope(payload_b64="abc")).encode(), "invalid_field"),
    (json.dumps(envelope(payload_size=10)).encode(), "invalid_field"),
    (json.dumps(envelope(payload_size=-1)).encode(), "invalid_field"),
    (json.dumps(envelope(payload_truncated=True)).encode(), "invalid_field"),
    (json.dumps(envelope(payload_truncated="no")).encode(), "invalid_field"),
    (json.dumps(envelope(payload_b64=None)).encode(), "invalid_field"),  # null payload but size 9
])
def test_decoder_rejections(raw: bytes | None, reason: str) -> None:
    with pytest.raises(Rejected) as err:
        decode_dead_letter(raw)
    assert err.value.reason == reason
    assert err.value.detail


def test_envelope_helper_is_valid_unchanged() -> None:
    assert decode_dead_letter(json.dumps(envelope()).encode()).payload == b"{not json"


@_PROPERTY
@given(st.binary(max_size=2048), st.none() | st.binary(max_size=64), st.text(max_size=300),
       st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1))
def test_any_bytes_round_trip_exactly(payload: bytes, key: bytes | None, detail: str, partition: int,
                                      offset: int) -> None:
    source = DeadLetterSource("vigil.ecg", partition, offset, key=key)
    raw = encode_dead_letter("crc_mismatch", detail, source, payload)
    letter = decode_dead_letter(raw)
    assert letter.payload == payload and letter.source == source and letter.detail == detail
    assert base64.b64decode(json.loads(raw)["payload_b64"]) == payload


@_PROPERTY
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_rejected(raw: bytes) -> None:
    try:
        decode_dead_letter(raw)
    except Rejected as r:
        assert r.reason
