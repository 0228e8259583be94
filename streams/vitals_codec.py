"""The vitals message contract (schema versions 1 and 2) and its decoder.

A vitals message is a UTF-8 JSON object, at most 64 KiB::

    {"schema_version": 2, "patient_id": "p0001", "device_id": "bed-01",
     "ts": 1764122400000, "hr": 82, "spo2": 97, "rr": 16,
     "sbp": 121, "dbp": 78, "temp": 36.9, "oxygen": false, "acvpu": "A"}

``ts`` is the device time in milliseconds since the Unix epoch. Every measured
field is optional (a device may measure only some) and ``null`` means absent; when
present a numeric field must be a number inside the physiologically possible range
below. Systolic pressure below diastolic (``sbp`` < ``dbp``) is impossible too
(``impossible_value``): a swapped or mis-wired reading, not a patient. Equal
pressures (no pulse pressure) are implausible but measurable, so they are accepted
and left to the alarms. The published JSON Schemas are
``streams/contracts/vitals.v1.schema.json`` and ``vitals.v2.schema.json`` (a schema
cannot compare two fields, so that one rule is the decoder's alone);
``tests/unit/test_contracts.py`` keeps them and this decoder in step.

Versions:

- **1**: the numerics. Unknown fields are ignored, as they always were, so v1
  producers that send extras keep working.
- **2**: adds ``oxygen`` (true while on supplemental oxygen) and ``acvpu`` (one of
  ``A``, ``C``, ``V``, ``P``, ``U``), which NEWS2 needs. Unknown fields are
  rejected (``unknown_field``): a misspelt ``"sp02"`` would otherwise vanish
  silently, and silent loss is the one thing the dead-letter topic exists to prevent.

`decode_vitals` never raises anything but `Rejected`, whose ``reason`` is a short
stable code for the dead-letter topic and its counters.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

__all__ = [
    "ACVPU_LEVELS",
    "ID_PATTERN",
    "MAX_MESSAGE_BYTES",
    "MAX_TS_MS",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "VITAL_RANGES",
    "Rejected",
    "Vitals",
    "decode_vitals",
    "encode_vitals",
    "is_json_integer",
    "is_json_number",
    "is_pseudonymous_id",
    "load_json_object",
    "reject_impossible_pressures",
]

MAX_MESSAGE_BYTES = 64 * 1024
SCHEMA_VERSION = 2
"""The version `encode_vitals` writes by default: the newest one."""
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2})
MAX_TS_MS = 32503680000000
"""3000-01-01T00:00:00Z: a later device time is a broken clock, not a measurement."""

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Pseudonymous patient and device ids, as written in the JSON Schemas (ECMA-262)."""
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # used with fullmatch: Python's ``$`` would accept a trailing "\n"

ACVPU_LEVELS = ("A", "C", "V", "P", "U")
"""Alert, new Confusion, responds to Voice, to Pain, Unresponsive (NEWS2)."""

# Outside these a value is impossible, not merely abnormal (units: bpm, %, /min, mmHg, mmHg, °C).
VITAL_RANGES: dict[str, tuple[float, float]] = {
    "hr": (0, 350),
    "spo2": (0, 100),
    "rr": (0, 100),
    "sbp": (0, 350),
    "dbp": (0, 300),
    "temp": (20, 46),
}

_V1_FIELDS = frozenset({"schema_version", "patient_id", "device_id", "ts", *VITAL_RANGES})
_V2_FIELDS = _V1_FIELDS | {"oxygen", "acvpu"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Rejected(ValueError):
    """A message that cannot be accepted; ``reason`` is a stable code, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Vitals:
    """One accepted reading, whichever topic it came in on (vitals JSON or FHIR)."""

    patient_id: str
    device_id: str | None
    occurred_at: datetime
    values: dict[str, float]
    """Only the numerics present in the message, keyed as in `VITAL_RANGES`."""
    oxygen: bool | None = field(default=None, kw_only=True)
    """On supplemental oxygen; None when the message did not say (always for v1)."""
    acvpu: str | None = field(default=None, kw_only=True)
    """Level of consciousness, one of `ACVPU_LEVELS`; None when not reported."""

    def get(self, name: str) -> float | None:
        return self.values.get(name)


def is_pseudonymous_id(value: object) -> TypeGuard[str]:
    """True for a string that is a valid pseudonymous patient or device id."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def is_json_integer(value: object) -> TypeGuard[int | float]:
    """JSON Schema's "integer": a number with no fractional part (``5.0`` counts,
    ``true`` does not), so the decoders accept exactly what the schemas accept."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def is_json_number(value: object) -> TypeGuard[int | float]:
    """A finite JSON number, not a boolean. Integers are never converted to float
    here: ``math.isfinite(10**400)`` raises OverflowError instead of saying no."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def reject_impossible_pressures(values: dict[str, float]) -> None:
    """Raise `Rejected` ``impossible_value`` when one reading has systolic below
    diastolic pressure. Only ``sbp < dbp``: ``sbp == dbp`` is implausible but can
    be measured (a damped arterial line), and refusing it would hide that reading."""
    sbp, dbp = values.get("sbp"), values.get("dbp")
    if sbp is not None and dbp is not None and sbp < dbp:
        raise Rejected("impossible_value", f"sbp={sbp:g} below dbp={dbp:g}: systolic cannot be below diastolic")


def load_json_object(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    """Parse one UTF-8 JSON object of at most ``max_bytes``, or raise `Rejected`
    (``empty``, ``oversized``, ``malformed_json``).

    Duplicate keys are refused: two parsers may keep different copies, so a
    message that says ``"hr": 80`` and ``"hr": 200`` has no single meaning.
    Deep nesting is refused too (Python's parser raises RecursionError, which is
    not a ValueError and would otherwise escape as a crash).
    """
    if raw is None:
        raise Rejected("empty", "message has no value")
    if len(raw) > max_bytes:
        raise Rejected("oversized", f"{len(raw)} bytes exceeds {max_bytes}")
    try:
        if type(raw) is bytes:
            # What json.loads does with bytes, with one decoder for every message
            # (json.loads builds a new one per call when given a hook).
            doc: Any = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
        else:
            doc = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise Rejected("malformed_json", "nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise Rejected("malformed_json", str(e)[:200]) from None
    if not isinstance(doc, dict):
        raise Rejected("malformed_json", f"top level is {type(doc).__name__}, not an object")
    return doc


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) == len(pairs):  # the common case, checked in C
        return doc
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r:.40}")
        seen.add(key)
    return doc  # not reached: fewer keys than pairs means a repeat


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)


def decode_vitals(raw: bytes | None) -> Vitals:
    """Parse and check one vitals message of version 1 or 2; raises `Rejected`
    (``empty``, ``oversized``, ``malformed_json``, ``unknown_schema_version``,
    ``unknown_field``, ``invalid_field``, ``impossible_value``)."""
    doc = load_json_object(raw, MAX_MESSAGE_BYTES)
    version = doc.get("schema_version")
    if not is_json_integer(version) or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise Rejected("unknown_schema_version", f"schema_version {version!r:.40} is not one of 1, 2")
    if version == 2:
        unknown = sorted(set(doc) - _V2_FIELDS)
        if unknown:
            raise Rejected("unknown_field", f"schema_version 2 has no field {unknown[0]!r:.40}")
    patient_id = doc.get("patient_id")
    if not is_pseudonymous_id(patient_id):
        raise Rejected("invalid_field", "patient_id must be 1-64 letters, digits, '-' or '_'")
    device_id = doc.get("device_id")
    if device_id is not None and not is_pseudonymous_id(device_id):
        raise Rejected("invalid_field", "device_id must be 1-64 letters, digits, '-' or '_'")
    ts = doc.get("ts")
    if not is_json_integer(ts) or not 0 < ts < MAX_TS_MS:
        raise Rejected("invalid_field", "ts must be integer milliseconds since the epoch")
    values: dict[str, float] = {}
    for name, (lo, hi) in VITAL_RANGES.items():
        value = doc.get(name)
        if value is None:
            continue
        if not is_json_number(value):
            raise Rejected("invalid_field", f"{name} must be a number, got {value!r:.40}")
        if not lo <= value <= hi:
            raise Rejected("impossible_value", f"{name}={value!r:.40} outside {lo:g}-{hi:g}")
        values[name] = float(value)
    reject_impossible_pressures(values)
    oxygen: bool | None = None
    acvpu: str | None = None
    if version == 2:
        oxygen = doc.get("oxygen")
        if oxygen is not None and not isinstance(oxygen, bool):
            raise Rejected("invalid_field", f"oxygen must be true or false, got {oxygen!r:.40}")
        acvpu = doc.get("acvpu")
        if acvpu is not None and acvpu not in ACVPU_LEVELS:
            raise Rejected("invalid_field", f"acvpu must be one of A, C, V, P, U, got {acvpu!r:.40}")
    # timedelta, not fromtimestamp(ts / 1000): integer milliseconds stay exact.
    occurred_at = _EPOCH + timedelta(milliseconds=int(ts))
    return Vitals(patient_id, device_id, occurred_at, values, oxygen=oxygen, acvpu=acvpu)


def encode_vitals(
    patient_id: str,
    ts_ms: int,
    values: dict[str, float | None],
    device_id: str | None = None,
    *,
    oxygen: bool | None = None,
    acvpu: str | None = None,
    schema_version: int = SCHEMA_VERSION,
) -> bytes:
    """The message for these readings; ``None`` values are left out.

    Raises ValueError for a reading this contract has no field for, or for
    ``oxygen``/``acvpu`` in a version 1 message: both are caller bugs that would
    otherwise lose data downstream. It does not range-check values; the decoder does.
    """
    if schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(f"cannot encode schema_version {schema_version}")
    unknown = sorted(set(values) - set(VITAL_RANGES))
    if unknown:
        raise ValueError(f"no vitals field named {unknown[0]!r}")
    if schema_version == 1 and (oxygen is not None or acvpu is not None):
        raise ValueError("oxygen and acvpu need schema_version 2")
    doc: dict[str, Any] = {"schema_version": schema_version, "patient_id": patient_id, "ts": ts_ms}
    if device_id is not None:
        doc["device_id"] = device_id
    doc.update({k: v for k, v in values.items() if v is not None})
    if oxygen is not None:
        doc["oxygen"] = oxygen
    if acvpu is not None:
        doc["acvpu"] = acvpu
    return json.dumps(doc, separators=(",", ":")).encode()
