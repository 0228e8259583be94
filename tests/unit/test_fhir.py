from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.fhir import MAX_BUNDLE_ENTRIES, MAX_FHIR_MESSAGE_BYTES, decode_fhir, decode_observation
from streams.vitals_codec import Rejected, Vitals

CONTRACT = Path(__file__).resolve().parents[2] / "streams" / "contracts" / "fhir-observation.md"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
T0 = datetime(2025, 11, 26, 2, 0, tzinfo=UTC)
_PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def quantity(value: object, code: str, system: str = UCUM) -> dict[str, object]:
    return {"value": value, "unit": code, "system": system, "code": code}


def observation(loinc: str = "8867-4", value: object = 82, unit: str = "/min", **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": "Patient/p0001"},
        "effectiveDateTime": "2025-11-26T02:00:00Z",
        "valueQuantity": quantity(value, unit),
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not ...}


def bp(*components: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return observation("85354-9", valueQuantity=..., component=list(components), **fields)


def component(code: str, value: object, unit: str = "mm[Hg]") -> dict[str, Any]:
    return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": quantity(value, unit)}


def raw(doc: object) -> bytes:
    return json.dumps(doc).encode()


def reason_of(data: bytes | None) -> str:
    with pytest.raises(Rejected) as err:
        decode_fhir(data)
    assert err.value.detail
    return err.value.reason


@pytest.mark.parametrize(("code", "value", "unit", "key", "expected"), [
    ("8867-4", 82, "/min", "hr", 82.0),
    ("2708-6", 97, "%", "spo2", 97.0),
    ("59408-5", 95.5, "%", "spo2", 95.5),
    ("9279-1", 16, "/min", "rr", 16.0),
    ("8310-5", 36.9, "Cel", "temp", 36.9),
    ("8310-5", 98.6, "[degF]", "temp", 37.0),
])
def test_each_vital_maps_to_its_key(code: str, value: float, unit: str, key: str, expected: float) -> None:
    v = decode_observation(raw(observation(code, value, unit)))
    assert v == Vitals("p0001", None, T0, {key: pytest.approx(expected)})  # type: ignore[dict-item]


def test_blood_pressure_panel_gives_both_pressures_and_ignores_other_components() -> None:
    doc = bp(component("8480-6", 121), component("8478-0", 92), component("8462-4", 78))
    assert decode_observation(raw(doc)).values == {"sbp": 121.0, "dbp": 78.0}
    assert decode_observation(raw(bp(component("8480-6", 140)))).values == {"sbp": 140.0}


def test_device_time_zone_and_fraction() -> None:
    doc = observation(device={"reference": "Device/bed-01"}, effectiveDateTime="2025-11-26T03:30:00.1234567+01:30")
    v = decode_observation(raw(doc))
    assert v.device_id == "bed-01"
    assert v.occurred_at == datetime(2025, 11, 26, 2, 0, 0, 123456, tzinfo=UTC)
    assert v.occurred_at.tzinfo is UTC


def test_spo2_codings_that_agree_are_one_code() -> None:
    doc = observation("2708-6", 96, "%")
    doc["code"]["coding"] += [{"system": LOINC, "code": "59408-5"}, {"system": "http://snomed.info/sct", "code": "x"}]
    assert decode_observation(raw(doc)).values == {"spo2": 96.0}


def test_other_statuses_are_accepted() -> None:
    for status in ("amended", "corrected", "preliminary"):
        assert decode_observation(raw(observation(status=status))).values == {"hr": 82.0}


def test_bundle_yields_every_entry_in_order() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": observation()}, {"resource": observation("9279-1", 18)},
        {"resource": bp(component("8462-4", 70), subject={"reference": "Patient/p0002"})}]}
    got = decode_fhir(raw(bundle))
    assert [(v.patient_id, v.values) for v in got] == [
        ("p0001", {"hr": 82.0}), ("p0001", {"rr": 18.0}), ("p0002", {"dbp": 70.0})]


def test_one_bad_entry_rejects_the_whole_bundle_and_names_it() -> None:
    bundle = {"resourceType": "Bundle", "entry": [{"resource": observation()}, {"resource": observation(value=900)}]}
    with pytest.raises(Rejected) as err:
        decode_fhir(raw(bundle))
    assert err.value.reason == "impossible_value" and err.value.detail.startswith("entry[1]:")


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                   "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999+00:00"])
def test_times_at_the_ends_of_the_calendar_are_rejected_in_a_bundle_too(stamp: str) -> None:
    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": observation()}, {"resource": observation(effectiveDateTime=stamp)}]}
    with pytest.raises(Rejected) as err:
        decode_fhir(raw(bundle))
    assert err.value.reason == "fhir_bad_time"
    assert err.value.detail.startswith("entry[1]:") and "after 1970 and before 3000" in err.value.detail


def test_systolic_below_diastolic_is_impossible_but_equal_is_accepted() -> None:
    with pytest.raises(Rejected, match="sbp=60 below dbp=120") as err:
        decode_observation(raw(bp(component("8480-6", 60), component("8462-4", 120))))
    assert err.value.reason == "impossible_value"
    # Equal pressures are implausible but measurable (a damped line): charted, left to the alarms.
    assert decode_observation(raw(bp(component("8480-6", 80), component("8462-4", 80)))).values == {
        "sbp": 80.0, "dbp": 80.0}


def test_decode_observation_refuses_a_bundle() -> None:
    bundle = {"resourceType": "Bundle", "entry": [{"resource": observation()}]}
    with pytest.raises(Rejected) as err:
        decode_observation(raw(bundle))
    assert err.value.reason == "fhir_not_observation"


def test_the_contract_example_decodes_as_documented() -> None:
    text = CONTRACT.read_text()
    example = re.search(r"## Example\n\n```json\n(.*?)```", text, re.S)
    assert example is not None
    v = decode_observation(example.group(1).encode())
    assert v == Vitals("p0001", "bed-01", T0, {"sbp": 121.0, "dbp": 78.0})


def _without(doc: dict[str, Any], *path: str | int) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target: Any = out
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return out


_REJECTIONS: list[tuple[object, str]] = [
    (None, "empty"),
    (b"x" * (MAX_FHIR_MESSAGE_BYTES + 1), "oversized"),
    (b"<Observation/>", "malformed_json"),
    (b"[]", "malformed_json"),
    (observation(resourceType="Patient"), "fhir_not_observation"),
    (_without(observation(), "resourceType"), "fhir_not_observation"),
    (observation(status="registered"), "fhir_bad_status"),
    (observation(status="entered-in-error"), "fhir_bad_status"),
    (observation(status="cancelled"), "fhir_bad_status"),
    (_without(observation(), "category"), "fhir_not_vital_signs"),
    (observation(category=[{"coding": [{"system": "x", "code": "vital-signs"}]}]), "fhir_not_vital_signs"),
    (observation(category="vital-signs"), "fhir_not_vital_signs"),
    (observation("8480-6"), "fhir_unknown_code"),
    (observation(code={"text": "heart rate"}), "fhir_unknown_code"),
    (observation(code={"coding": [{"system": "http://snomed.info/sct", "code": "8867-4"}]}), "fhir_unknown_code"),
    (observation(code={"coding": [{"system": LOINC, "code": "8867-4"}, {"system": LOINC, "code": "9279-1"}]}),
     "fhir_ambiguous_code"),
    (_without(observation(), "subject"), "fhir_missing_subject"),
    (observation(subject={"display": "Jane"}), "fhir_missing_subject"),
    (observation(subject={"reference": "Group/ward-3"}), "fhir_bad_subject"),
    (observation(subject={"reference": "https://ehr.example/fhir/Patient/p1"}), "fhir_bad_subject"),
    (observation(subject={"reference": "Patient/Jane Doe"}), "fhir_bad_subject"),
    (observation(subject={"reference": 7}), "fhir_bad_subject"),
    (observation(device={"display": "monitor"}), "fhir_bad_device"),
    (observation(device={"reference": "Location/icu"}), "fhir_bad_device"),
    (_without(observation(), "effectiveDateTime"), "fhir_missing_time"),
    (observation(effectiveDateTime=..., effectivePeriod={"start": "2025-11-26T02:00:00Z"}), "fhir_missing_time"),
    (observation(effectiveDateTime="2025-11-26T02:00:00"), "fhir_bad_time"),
    (observation(effectiveDateTime="2025-11-26"), "fhir_bad_time"),
    (observation(effectiveDateTime="2025-13-26T02:00:00Z"), "fhir_bad_time"),
    (observation(effectiveDateTime="2025-11-26T02:00:60Z"), "fhir_bad_time"),
    (observation(effectiveDateTime="2025-11-26T02:00:00+24:00"), "fhir_bad_time"),
    (observation(effectiveDateTime="1969-12-31T23:59:59Z"), "fhir_bad_time"),
    (observation(effectiveDateTime="2025-11-26T02:00:00Z\n"), "fhir_bad_time"),
    (observation(effectiveDateTime=1764122400), "fhir_bad_time"),
    # Valid datetimes whose UTC equivalent leaves datetime's range (OverflowError in astimezone).
    (observation(effectiveDateTime="0001-01-01T00:00:00+14:00"), "fhir_bad_time"),
    (observation(effectiveDateTime="9999-12-31T23:59:59-14:00"), "fhir_bad_time"),
    (observation(valueQuantity=...), "fhir_missing_value"),
    (observation(valueQuantity=..., dataAbsentReason={"text": "asked to stop"}), "fhir_missing_value"),
    (bp(), "fhir_missing_value"),
    (bp(component("8478-0", 92)), "fhir_missing_value"),
    (observation("85354-9", component=...), "fhir_missing_value"),
    (observation(value="82"), "fhir_bad_value"),
    (observation(value=True), "fhir_bad_value"),
    (observation(value=None), "fhir_bad_value"),
    (observation(valueQuantity={**quantity(82, "/min"), "comparator": ">"}), "fhir_bad_value"),
    (observation(unit="beats/min"), "fhir_bad_unit"),
    (observation(valueQuantity=quantity(82, "/min", system="http://example.org")), "fhir_bad_unit"),
    (observation(valueQuantity={"value": 82, "unit": "/min"}), "fhir_bad_unit"),
    (observation("8310-5", 310, "K"), "fhir_bad_unit"),
    (observation("2708-6", 0.97, "1"), "fhir_bad_unit"),
    (bp(component("8480-6", 16, "kPa")), "fhir_bad_unit"),
    (bp(component("8480-6", 120), component("8480-6", 121)), "fhir_bad_component"),
    (bp("systolic"), "fhir_bad_component"),  # type: ignore[arg-type]
    (observation(value=400), "impossible_value"),
    (observation(value=10**400), "impossible_value"),
    (observation("8310-5", -10**400, "[degF]"), "impossible_value"),
    (observation("2708-6", 101, "%"), "impossible_value"),
    (observation("8310-5", 212, "[degF]"), "impossible_value"),
    (bp(component("8462-4", -3)), "impossible_value"),
    (bp(component("8480-6", 60), component("8462-4", 120)), "impossible_value"),
    (bp(component("8462-4", 80.5), component("8480-6", 80)), "impossible_value"),
    ({"resourceType": "Bundle"}, "fhir_bad_bundle"),
    ({"resourceType": "Bundle", "entry": []}, "fhir_bad_bundle"),
    ({"resourceType": "Bundle", "entry": [{"fullUrl": "x"}]}, "fhir_bad_bundle"),
    ({"resourceType": "Bundle", "entry": [{"resource": observation()}] * (MAX_BUNDLE_ENTRIES + 1)}, "fhir_bad_bundle"),
    ({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "MessageHeader"}}]}, "fhir_not_observation"),
]


@pytest.mark.parametrize(("doc", "reason"), _REJECTIONS)
def test_every_rejection_reason(doc: object, reason: str) -> None:
    data = doc if doc is None or isinstance(doc, bytes) else raw(doc)
    assert reason_of(data) == reason


def test_the_documented_reasons_are_exactly_those_tested() -> None:
    fhir_reasons = {r for _, r in _REJECTIONS if r.startswith("fhir_")}
    documented = set(re.findall(r"`(fhir_[a-z_]+)`", CONTRACT.read_text()))
    assert fhir_reasons == documented - {"fhir_mixed_patients"}  # the worker's, not the decoder's


def test_base_observation_is_valid() -> None:
    # Otherwise every rejection above could be for the wrong reason.
    assert decode_fhir(raw(observation())) == [Vitals("p0001", None, T0, {"hr": 82.0})]


@_PROPERTY
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_rejected(data: bytes) -> None:
    try:
        decode_fhir(data)
    except Rejected as r:
        assert r.reason


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
_FIELDS = ["resourceType", "status", "category", "code", "subject", "device", "effectiveDateTime",
           "valueQuantity", "component", "entry"]


@_PROPERTY
@given(st.lists(st.tuples(st.sampled_from(_FIELDS), _JSON), max_size=4), st.booleans())
def test_mutated_observations_raise_only_rejected(changes: list[tuple[str, object]], as_bundle: bool) -> None:
    doc: dict[str, Any] = bp(component("8480-6", 120)) if as_bundle else observation()
    for name, value in changes:
        doc[name] = value
    data = raw({"resourceType": "Bundle", "entry": [{"resource": doc}]} if as_bundle else doc)
    try:
        got = decode_fhir(data)
    except Rejected as r:
        assert r.reason
    else:
        assert len(got) == 1 and got[0].values
