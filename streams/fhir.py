"""FHIR R4 vital-signs Observations, normalised into `Vitals`.

Integrators that already speak FHIR publish Observations (or a Bundle of them) to
the fhir topic instead of learning the vitals JSON. This module accepts the narrow
subset documented in ``streams/contracts/fhir-observation.md`` and maps it onto the
same `Vitals` the vitals topic yields, so everything downstream sees one type.

The subset is strict on purpose. A wrong unit (°F read as °C) or an ambiguous
code is a clinical error, not a formatting nit, so anything this module is unsure
of goes to the dead-letter topic with a reason rather than being guessed at:

| LOINC | vital | `Vitals` key | UCUM code(s) |
| --- | --- | --- | --- |
| 8867-4 | heart rate | hr | ``/min`` |
| 2708-6, 59408-5 | oxygen saturation | spo2 | ``%`` |
| 9279-1 | respiratory rate | rr | ``/min`` |
| 85354-9 | blood pressure panel: components 8480-6, 8462-4 | sbp, dbp | ``mm[Hg]`` |
| 8310-5 | body temperature | temp | ``Cel``, ``[degF]`` (converted) |

A panel whose systolic is below its diastolic is ``impossible_value``, as on the
vitals topic (`reject_impossible_pressures`).

`decode_observation` and `decode_fhir` never raise anything but `Rejected`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from streams.vitals_codec import (
    VITAL_RANGES,
    Rejected,
    Vitals,
    is_json_number,
    is_pseudonymous_id,
    load_json_object,
    reject_impossible_pressures,
)

__all__ = [
    "ACCEPTED_STATUSES",
    "LOINC_SYSTEM",
    "MAX_BUNDLE_ENTRIES",
    "MAX_FHIR_MESSAGE_BYTES",
    "UCUM_SYSTEM",
    "decode_fhir",
    "decode_observation",
]

MAX_FHIR_MESSAGE_BYTES = 256 * 1024
MAX_BUNDLE_ENTRIES = 500
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
VITAL_SIGNS_CATEGORY = ("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")
ACCEPTED_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
"""``registered`` has no value yet; ``cancelled`` and ``entered-in-error`` must not be charted."""

BP_PANEL = "85354-9"
_SIMPLE_CODES: dict[str, str] = {"8867-4": "hr", "2708-6": "spo2", "59408-5": "spo2", "9279-1": "rr", "8310-5": "temp"}
_BP_COMPONENTS: dict[str, str] = {"8480-6": "sbp", "8462-4": "dbp"}


def _same(value: float) -> float:
    return value


def _fahrenheit_to_celsius(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


# Accepted UCUM codes per vital, with the conversion into the `Vitals` unit.
_UNITS: dict[str, dict[str, Callable[[float], float]]] = {
    "hr": {"/min": _same},
    "spo2": {"%": _same},
    "rr": {"/min": _same},
    "sbp": {"mm[Hg]": _same},
    "dbp": {"mm[Hg]": _same},
    "temp": {"Cel": _same, "[degF]": _fahrenheit_to_celsius},
}

# FHIR dateTime with the time part and a zone, which we require: a zoneless local
# time cannot be placed on the timeline. Leap second 60 is not accepted.
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})", re.ASCII)
_TS_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC))


def decode_fhir(raw: bytes | None) -> list[Vitals]:
    """One Observation, or a Bundle whose entries are all Observations, as `Vitals`
    in entry order. A Bundle is all or nothing: one bad entry rejects the message
    (its detail names the entry), so a device never sees half its readings charted."""
    doc = load_json_object(raw, MAX_FHIR_MESSAGE_BYTES)
    if doc.get("resourceType") != "Bundle":
        return [_observation(doc)]
    entries = doc.get("entry")
    if not isinstance(entries, list) or not entries:
        raise Rejected("fhir_bad_bundle", "a Bundle needs a non-empty entry array")
    if len(entries) > MAX_BUNDLE_ENTRIES:
        raise Rejected("fhir_bad_bundle", f"{len(entries)} entries exceeds {MAX_BUNDLE_ENTRIES}")
    out = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise Rejected("fhir_bad_bundle", f"entry[{i}] has no resource object")
        try:
            out.append(_observation(resource))
        except Rejected as r:
            raise Rejected(r.reason, f"entry[{i}]: {r.detail}") from None
    return out


def decode_observation(raw: bytes | None) -> Vitals:
    """One vital-signs Observation as `Vitals`; a Bundle is rejected here."""
    return _observation(load_json_object(raw, MAX_FHIR_MESSAGE_BYTES))


def _observation(doc: dict[str, Any]) -> Vitals:
    resource_type = doc.get("resourceType")
    if resource_type != "Observation":
        raise Rejected("fhir_not_observation", f"resourceType {resource_type!r:.40} is not Observation")
    status = doc.get("status")
    if not isinstance(status, str) or status not in ACCEPTED_STATUSES:
        raise Rejected("fhir_bad_status", f"status {status!r:.40} is not one of {', '.join(sorted(ACCEPTED_STATUSES))}")
    if not _has_vital_signs_category(doc.get("category")):
        raise Rejected("fhir_not_vital_signs", "category must include observation-category#vital-signs")
    code = _loinc_code(doc.get("code"), set(_SIMPLE_CODES) | {BP_PANEL}, "code")
    if code is None:
        raise Rejected("fhir_unknown_code", f"code has none of the accepted LOINC codes {_describe(doc.get('code'))}")
    patient_id = _reference(doc.get("subject"), "Patient", "subject")
    device_ref = doc.get("device")
    device_id = None if device_ref is None else _reference(device_ref, "Device", "device")
    occurred_at = _effective(doc)
    if code == BP_PANEL:
        values = _bp_components(doc.get("component"))
    else:
        name = _SIMPLE_CODES[code]
        values = {name: _quantity(doc.get("valueQuantity"), name, "valueQuantity")}
    return Vitals(patient_id, device_id, occurred_at, values)


def _has_vital_signs_category(category: object) -> bool:
    if not isinstance(category, list):
        return False
    for concept in category:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        if isinstance(codings, list) and any(
            isinstance(c, dict) and (c.get("system"), c.get("code")) == VITAL_SIGNS_CATEGORY for c in codings
        ):
            return True
    return False


def _loinc_code(concept: object, known: set[str], where: str) -> str | None:
    """The one known LOINC code in a CodeableConcept, None if it has none. Several
    codings that agree (2708-6 and 59408-5 both mean SpO2) are fine; codings that
    disagree are not, and a concept without a coding array is malformed."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(codings, list):
        raise Rejected("fhir_unknown_code", f"{where}.coding is missing")
    found = {
        c["code"] for c in codings
        if isinstance(c, dict) and c.get("system") == LOINC_SYSTEM and isinstance(c.get("code"), str)
        and c["code"] in known
    }
    meanings = {_SIMPLE_CODES.get(c) or _BP_COMPONENTS.get(c) or c for c in found}
    if len(meanings) > 1:
        raise Rejected("fhir_ambiguous_code", f"{where} carries LOINC codes for different vitals: {sorted(found)}")
    return min(found) if found else None


def _describe(concept: object) -> str:
    """``(saw system|code, ...)`` for a rejection detail, kept short."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    seen = [f"{c.get('system')}|{c.get('code')}" for c in codings or () if isinstance(c, dict)]
    return f"(saw {', '.join(seen)[:120] or 'none'})"


def _reference(ref: object, kind: str, where: str) -> str:
    """The id in a relative ``<kind>/<id>`` reference. Absolute URLs are refused:
    the id is the Kafka key and must be the pseudonym itself, not a server address."""
    value = ref.get("reference") if isinstance(ref, dict) else None
    if value is None:
        reason = "fhir_missing_subject" if kind == "Patient" else "fhir_bad_device"
        raise Rejected(reason, f"{where}.reference is missing")
    prefix = f"{kind}/"
    if not isinstance(value, str) or not value.startswith(prefix) or not is_pseudonymous_id(value[len(prefix):]):
        reason = "fhir_bad_subject" if kind == "Patient" else "fhir_bad_device"
        raise Rejected(reason, f"{where}.reference must be '{prefix}<id>' with a pseudonymous id, got {value!r:.60}")
    return value[len(prefix):]


def _effective(doc: dict[str, Any]) -> datetime:
    value = doc.get("effectiveDateTime")
    if value is None:
        other = [k for k in ("effectivePeriod", "effectiveInstant", "effectiveTiming") if k in doc]
        raise Rejected("fhir_missing_time", f"effectiveDateTime is missing{f' ({other[0]} is not accepted)' if other else ''}")
    m = _DATETIME.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise Rejected("fhir_bad_time", f"effectiveDateTime {value!r:.40} needs date, time and zone")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        tz = UTC if zone == "Z" else timezone(
            (-1 if zone[0] == "-" else 1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        at = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                      int((fraction or "0").ljust(6, "0")[:6]), tzinfo=tz)
    except ValueError as e:  # month 13, zone beyond ±24 h, ...
        raise Rejected("fhir_bad_time", f"effectiveDateTime {value!r:.40}: {e}") from None
    # Range first: converting year 1 at +14:00 (or 9999 at -14:00) to UTC leaves
    # datetime's range and raises OverflowError. Aware comparisons need no conversion.
    if not _TS_RANGE[0] < at < _TS_RANGE[1]:
        raise Rejected("fhir_bad_time", f"effectiveDateTime {value!r:.40} is not after 1970 and before 3000")
    return at.astimezone(UTC)


def _bp_components(components: object) -> dict[str, float]:
    """Systolic and/or diastolic from a blood-pressure panel. Other components
    (mean pressure, cuff site) are allowed by the profile and ignored."""
    if not isinstance(components, list):
        raise Rejected("fhir_missing_value", "blood-pressure panel has no component array")
    values: dict[str, float] = {}
    for i, comp in enumerate(components):
        if not isinstance(comp, dict):
            raise Rejected("fhir_bad_component", f"component[{i}] is not an object")
        code = _loinc_code(comp.get("code"), set(_BP_COMPONENTS), f"component[{i}].code")
        if code is None:
            continue
        name = _BP_COMPONENTS[code]
        if name in values:
            raise Rejected("fhir_bad_component", f"component[{i}] repeats {code}")
        values[name] = _quantity(comp.get("valueQuantity"), name, f"component[{i}].valueQuantity")
    if not values:
        raise Rejected("fhir_missing_value", "blood-pressure panel has neither 8480-6 nor 8462-4")
    reject_impossible_pressures(values)
    return values


def _quantity(quantity: object, name: str, where: str) -> float:
    if not isinstance(quantity, dict):
        raise Rejected("fhir_missing_value", f"{where} is missing (dataAbsentReason is not charted)")
    value = quantity.get("value")
    if not is_json_number(value):
        raise Rejected("fhir_bad_value", f"{where}.value must be a number, got {value!r:.40}")
    if "comparator" in quantity:
        raise Rejected("fhir_bad_value", f"{where}.comparator is not accepted: a bound is not a measurement")
    system, code = quantity.get("system"), quantity.get("code")
    convert = _UNITS[name].get(code) if isinstance(code, str) else None
    if system != UCUM_SYSTEM or convert is None:
        raise Rejected("fhir_bad_unit", f"{where} must be UCUM {' or '.join(_UNITS[name])}, got {system!r:.40}|{code!r:.20}")
    lo, hi = VITAL_RANGES[name]
    converted = convert(float(value)) if -1e6 < value < 1e6 else math.inf  # float(10**400) would raise
    if not lo <= converted <= hi:
        raise Rejected("impossible_value", f"{name}={value!r:.40} {code} outside {lo:g}-{hi:g} in the Vitals unit")
    return converted
