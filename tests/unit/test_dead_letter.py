from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.dead_letter import (
    MAX_DEAD_LETTER_BYTES,
    MAX_DETAIL_CHARS,
    PART_BYTES,
    DeadLetter,
    DeadLetterAssembler,
    DeadLetterSource,
    dead_letter_headers,
    decode_dead_letter,
    encode_dead_letter,
)
from streams.vitals_codec import Rejected, decode_vitals

SOURCE = DeadLetterSource("vigil.vitals", 3, 1200, timestamp_ms=1764122400000, key=b"p0001")
_PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def one(reason: str, detail: str, source: DeadLetterSource, payload: bytes | None, **kw: Any) -> bytes:
    """The envelope of a message that fits one."""
    (raw,) = encode_dead_letter(reason, detail, source, payload, **kw)
    return raw


def envelope(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(one("malformed_json", "bad", SOURCE, b"{not json", worker="w1"))
    for name, value in changes.items():
        target = doc["source"] if name.startswith("source_") else doc
        key = name.removeprefix("source_")
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return doc


def test_round_trip_keeps_everything() -> None:
    letter = decode_dead_letter(one("malformed_json", "Expecting value", SOURCE, b"{not json", worker="vigil-worker"))
    assert letter == DeadLetter("malformed_json", "Expecting value", SOURCE, b"{not json", 9, False, "vigil-worker")
    assert letter.whole and DeadLetterAssembler().add(letter) is letter


def test_null_and_empty_stay_distinct() -> None:
    src = DeadLetterSource("vigil.ecg", 0, 0)
    null = decode_dead_letter(one("empty", "no value", src, None))
    empty = decode_dead_letter(one("empty", "no value", DeadLetterSource("vigil.ecg", 0, 0, key=b""), b""))
    assert (null.payload, null.source.key, null.payload_size) == (None, None, 0)
    assert (empty.payload, empty.source.key, empty.payload_size) == (b"", b"", 0)
    assert null.source.timestamp_ms is None and null.worker is None and null.whole and empty.whole


def test_the_largest_accepted_input_fits_one_envelope() -> None:
    payload = bytes(range(256)) * (PART_BYTES // 256)
    raw = one("crc_mismatch", "corrupt", SOURCE, payload)
    assert len(raw) <= MAX_DEAD_LETTER_BYTES
    letter = decode_dead_letter(raw)
    assert letter.payload == payload and letter.whole and not letter.payload_truncated


def test_an_oversized_input_goes_whole_in_slices() -> None:
    payload = bytes(range(251)) * 4000  # 1,004,000 bytes: the most a default broker takes
    raws = encode_dead_letter("oversized", "too big", SOURCE, payload, worker="w")
    assert len(raws) == 4 and all(len(r) <= MAX_DEAD_LETTER_BYTES for r in raws)
    letters = [decode_dead_letter(r) for r in raws]
    assert [x.payload_offset for x in letters] == [0, PART_BYTES, 2 * PART_BYTES, 3 * PART_BYTES]
    assert all(x.payload_size == len(payload) and not x.whole and x.reason == "oversized" for x in letters)
    assert b"".join(x.payload or b"" for x in letters) == payload
    # Put together in any order, a slice seen twice counting once.
    assembler = DeadLetterAssembler()
    out = [assembler.add(x) for x in (letters[2], letters[0], letters[2], letters[3])]
    assert out == [None] * 4
    assert [(s.offset, held, size) for s, held, size in assembler.incomplete()] == [
        (1200, 3 * PART_BYTES - (4 * PART_BYTES - len(payload)), len(payload))]
    whole = assembler.add(letters[1])
    assert whole is not None and whole.whole and whole.payload == payload
    assert (whole.reason, whole.source, whole.worker) == ("oversized", SOURCE, "w")
    assert list(assembler.incomplete()) == []


def test_slices_of_two_messages_do_not_mix() -> None:
    big_a, big_b = b"a" * (PART_BYTES + 1), b"b" * (PART_BYTES + 2)
    other = DeadLetterSource("vigil.vitals", 3, 1201, key=b"p0001")
    a = [decode_dead_letter(r) for r in encode_dead_letter("oversized", "", SOURCE, big_a)]
    b = [decode_dead_letter(r) for r in encode_dead_letter("oversized", "", other, big_b)]
    assembler = DeadLetterAssembler()
    first, second, third = (assembler.add(x) for x in (a[0], b[1], a[1]))
    assert first is None and second is None and third is not None and third.payload == big_a
    last = assembler.add(b[0])
    assert last is not None and last.payload == big_b and last.source == other


def test_a_version_1_envelope_still_reads() -> None:
    doc = envelope(payload_offset=..., schema_version=1, payload_truncated=False)
    letter = decode_dead_letter(json.dumps(doc).encode())
    assert letter.payload == b"{not json" and letter.whole and not letter.payload_truncated
    head = b"x" * PART_BYTES
    cut = envelope(payload_offset=..., schema_version=1, payload_truncated=True, payload_size=PART_BYTES + 10,
                   payload_b64=base64.b64encode(head).decode())
    letter = decode_dead_letter(json.dumps(cut).encode())
    assert letter.payload == head and letter.payload_truncated and not letter.whole
    assert DeadLetterAssembler().add(letter) is letter  # all there is of it


def test_long_detail_is_cut_and_odd_text_survives() -> None:
    detail = "\ud800 lone surrogate, é, \x00 " * 100
    letter = decode_dead_letter(one("invalid_field", detail, SOURCE, b""))
    assert letter.detail == detail[:MAX_DETAIL_CHARS]


def test_a_real_rejection_becomes_a_dead_letter() -> None:
    original = b'{"schema_version": 9}'
    with pytest.raises(Rejected) as err:
        decode_vitals(original)
    letter = decode_dead_letter(one(err.value.reason, err.value.detail, SOURCE, original))
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
    (json.dumps(envelope(schema_version=3)).encode(), "unknown_schema_version"),
    (json.dumps(envelope(schema_version=1)).encode(), "unknown_field"),  # payload_offset is not in version 1
    (json.dumps(envelope(payload_offset=..., schema_version=1)).encode(), "invalid_field"),  # no payload_truncated
    (json.dumps(envelope(payload_offset=...)).encode(), "invalid_field"),
    (json.dumps(envelope(payload_offset=1)).encode(), "invalid_field"),
    (json.dumps(envelope(payload_offset=PART_BYTES)).encode(), "invalid_field"),  # past the 9-byte payload
    (json.dumps(envelope(payload_offset=PART_BYTES, payload_size=PART_BYTES + 1)).encode(), "invalid_field"),
    (json.dumps(envelope(payload_offset=-PART_BYTES)).encode(), "invalid_field"),
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
    (json.dumps(envelope(payload_truncated=False)).encode(), "unknown_field"),  # version 1's, not 2's
    (json.dumps(envelope(payload_offset=..., schema_version=1, payload_truncated=True)).encode(), "invalid_field"),
    (json.dumps(envelope(payload_offset=..., schema_version=1, payload_truncated="no")).encode(), "invalid_field"),
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
    raw = one("crc_mismatch", detail, source, payload)
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
