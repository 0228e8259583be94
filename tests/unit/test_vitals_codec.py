from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.vitals_codec import MAX_MESSAGE_BYTES, Rejected, decode_vitals, encode_vitals


def _msg(**fields: object) -> bytes:
    doc: dict[str, object] = {"schema_version": 1, "patient_id": "p0001", "ts": 1764122400000}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def _v2(**fields: object) -> bytes:
    return _msg(schema_version=2, **fields)


def test_round_trip() -> None:
    raw = encode_vitals("p0001", 1764122400000, {"hr": 82, "spo2": 97, "temp": 36.9, "rr": None}, device_id="bed-1")
    v = decode_vitals(raw)
    assert v.patient_id == "p0001" and v.device_id == "bed-1"
    assert v.occurred_at == datetime(2025, 11, 26, 2, 0, tzinfo=UTC)
    assert v.values == {"hr": 82.0, "spo2": 97.0, "temp": 36.9}
    assert v.get("rr") is None
    assert v.oxygen is None and v.acvpu is None


def test_v2_round_trip_carries_oxygen_and_acvpu() -> None:
    raw = encode_vitals("p0001", 1764122400123, {"spo2": 91}, oxygen=True, acvpu="C")
    assert json.loads(raw)["schema_version"] == 2
    v = decode_vitals(raw)
    assert (v.oxygen, v.acvpu, v.values) == (True, "C", {"spo2": 91.0})
    assert v.occurred_at == datetime(2025, 11, 26, 2, 0, 0, 123000, tzinfo=UTC)  # exact milliseconds


def test_v1_is_still_accepted_and_still_ignores_extra_fields() -> None:
    raw = encode_vitals("p0001", 1764122400000, {"hr": 70}, schema_version=1)
    assert json.loads(raw)["schema_version"] == 1
    assert decode_vitals(raw).values == {"hr": 70.0}
    v = decode_vitals(_msg(hr=70, oxygen=True, firmware="1.2"))
    assert v.oxygen is None  # v1 has no oxygen field: not read, as before v2 existed


def test_equal_pressures_are_accepted_and_one_pressure_alone_is_not_compared() -> None:
    # Only sbp < dbp is impossible; sbp == dbp is implausible but can be measured.
    assert decode_vitals(_msg(sbp=80, dbp=80)).values == {"sbp": 80.0, "dbp": 80.0}
    assert decode_vitals(_msg(sbp=40)).values == {"sbp": 40.0}
    assert decode_vitals(_msg(sbp=None, dbp=120)).values == {"dbp": 120.0}


def test_null_means_absent() -> None:
    v = decode_vitals(_v2(hr=None, oxygen=None, acvpu=None, device_id=None))
    assert v.values == {} and v.oxygen is None and v.acvpu is None and v.device_id is None


def test_integral_floats_count_as_integers_like_json_schema() -> None:
    v = decode_vitals(_msg(schema_version=2.0, ts=1764122400000.0))
    assert v.occurred_at == datetime(2025, 11, 26, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty"),
        (b"\xff\xfe", "malformed_json"),
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b'{"schema_version":1,"patient_id":"p1","ts":1,"hr":80,"hr":200}', "malformed_json"),
        (b"[" * 50_000, "malformed_json"),
        (_msg(schema_version=3), "unknown_schema_version"),
        (_msg(schema_version=0), "unknown_schema_version"),
        (_msg(schema_version="1"), "unknown_schema_version"),
        (_msg(schema_version=True), "unknown_schema_version"),
        (_msg(schema_version=1.5), "unknown_schema_version"),
        (_msg(schema_version=...), "unknown_schema_version"),
        (_v2(sp02=97), "unknown_field"),
        (_msg(patient_id=""), "invalid_field"),
        (_msg(patient_id="has space"), "invalid_field"),
        (_msg(patient_id="p1\n"), "invalid_field"),
        (_msg(patient_id="x" * 65), "invalid_field"),
        (_msg(patient_id=7), "invalid_field"),
        (_msg(device_id="bed 1"), "invalid_field"),
        (_msg(ts="yesterday"), "invalid_field"),
        (_msg(ts=True), "invalid_field"),
        (_msg(ts=-5), "invalid_field"),
        (_msg(ts=1.5), "invalid_field"),
        (_msg(ts=32503680000000), "invalid_field"),
        (_msg(hr="fast"), "invalid_field"),
        (_msg(hr=True), "invalid_field"),
        (b'{"schema_version":1,"patient_id":"p1","ts":1,"hr":NaN}', "invalid_field"),
        (b'{"schema_version":1,"patient_id":"p1","ts":1,"hr":1e400}', "invalid_field"),
        (_v2(oxygen="yes"), "invalid_field"),
        (_v2(oxygen=1), "invalid_field"),
        (_v2(acvpu="X"), "invalid_field"),
        (_v2(acvpu="a"), "invalid_field"),
        (_msg(hr=400), "impossible_value"),
        (_msg(hr=10**400), "impossible_value"),  # too big for a float: must not raise OverflowError
        (_msg(hr=-1), "impossible_value"),
        (_msg(spo2=101), "impossible_value"),
        (_msg(temp=10), "impossible_value"),
        (_msg(sbp=60, dbp=120), "impossible_value"),
        (_v2(sbp=79.9, dbp=80), "impossible_value"),
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
    with pytest.raises(Rejected, match="sbp=60 below dbp=120"):
        decode_vitals(_msg(sbp=60, dbp=120))
    with pytest.raises(Rejected, match="sp02"):
        decode_vitals(_v2(sp02=97))


@pytest.mark.parametrize(("values", "kwargs"), [
    ({"heart_rate": 80}, {}),
    ({"hr": 80}, {"oxygen": True, "schema_version": 1}),
    ({"hr": 80}, {"schema_version": 3}),
])
def test_encoder_refuses_what_it_cannot_say(values: dict[str, float | None], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        encode_vitals("p1", 1764122400000, values, **kwargs)  # type: ignore[arg-type]


# No deadline and no slowness check: the machine is shared, and these tests are about
# what is raised, not how fast. No example database: nothing is written into the tree.
_PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@_PROPERTY
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_rejected(raw: bytes) -> None:
    try:
        decode_vitals(raw)
    except Rejected as r:
        assert r.reason


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@_PROPERTY
@given(st.dictionaries(
    st.sampled_from(["schema_version", "patient_id", "device_id", "ts", "hr", "spo2", "oxygen", "acvpu", "x"]),
    _JSON, max_size=9))
def test_random_json_objects_raise_only_rejected(doc: dict[str, object]) -> None:
    try:
        v = decode_vitals(json.dumps(doc).encode())
    except Rejected as r:
        assert r.reason
    else:
        assert v.patient_id == doc["patient_id"]
