from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from streams.vitals_codec import MAX_MESSAGE_BYTES, Rejected, decode_vitals, encode_vitals


def _msg(**fields: object) -> bytes:
    doc: dict[str, object] = {"schema_version": 1, "patient_id": "p0001", "ts": 1764122400000}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_round_trip() -> None:
    raw = encode_vitals("p0001", 1764122400000, {"hr": 82, "spo2": 97, "temp": 36.9, "rr": None}, device_id="bed-1")
    v = decode_vitals(raw)
    assert v.patient_id == "p0001" and v.device_id == "bed-1"
    assert v.occurred_at == datetime(2025, 11, 26, 2, 0, tzinfo=UTC)
    assert v.values == {"hr": 82.0, "spo2": 97.0, "temp": 36.9}
    assert v.get("rr") is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty"),
        (b"\xff\xfe", "malformed_json"),
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (_msg(schema_version=2), "unknown_schema_version"),
        (_msg(schema_version=...), "unknown_schema_version"),
        (_msg(patient_id=""), "invalid_field"),
        (_msg(patient_id="has space"), "invalid_field"),
        (_msg(patient_id=7), "invalid_field"),
        (_msg(ts="yesterday"), "invalid_field"),
        (_msg(ts=True), "invalid_field"),
        (_msg(ts=-5), "invalid_field"),
        (_msg(hr="fast"), "invalid_field"),
        (_msg(hr=True), "invalid_field"),
        (b'{"schema_version":1,"patient_id":"p1","ts":1,"hr":NaN}', "invalid_field"),
        (_msg(hr=400), "impossible_value"),
        (_msg(spo2=101), "impossible_value"),
        (_msg(temp=10), "impossible_value"),
        (b"x" * (MAX_MESSAGE_BYTES + 1), "oversized"),
    ],
)
def test_rejections_carry_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(Rejected) as err:
        decode_vitals(raw)
    assert err.value.reason == reason
    assert err.value.detail


def test_rejection_names_the_field() -> None:
    with pytest.raises(Rejected, match="spo2"):
        decode_vitals(_msg(spo2=140))
