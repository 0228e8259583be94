"""The vitals message contract (schema version 1) and its decoder.

A vitals message is a UTF-8 JSON object, at most 64 KiB::

    {"schema_version": 1, "patient_id": "p0001", "device_id": "bed-01",
     "ts": 1764122400000, "hr": 82, "spo2": 97, "rr": 16,
     "sbp": 121, "dbp": 78, "temp": 36.9}

``ts`` is the device time in milliseconds since the Unix epoch. Every numeric
field is optional (a device may measure only some); when present it must be a
number inside the physiologically possible range below. `decode_vitals` never
raises anything but `Rejected`, whose ``reason`` is a short code for the
dead-letter topic and its counters.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Rejected", "Vitals", "decode_vitals", "encode_vitals", "VITAL_RANGES", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 64 * 1024
SCHEMA_VERSION = 1
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Outside these a value is impossible, not merely abnormal (units: bpm, %, /min, mmHg, mmHg, °C).
VITAL_RANGES: dict[str, tuple[float, float]] = {
    "hr": (0, 350),
    "spo2": (0, 100),
    "rr": (0, 100),
    "sbp": (0, 350),
    "dbp": (0, 300),
    "temp": (20, 46),
}


class Rejected(ValueError):
    """A message that cannot be accepted; ``reason`` is a stable code, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Vitals:
    patient_id: str
    device_id: str | None
    occurred_at: datetime
    values: dict[str, float]
    """Only the fields present in the message."""

    def get(self, name: str) -> float | None:
        return self.values.get(name)


def decode_vitals(raw: bytes | None) -> Vitals:
    if raw is None:
        raise Rejected("empty", "message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Rejected("oversized", f"{len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        doc: Any = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise Rejected("malformed_json", str(e)[:200]) from None
    if not isinstance(doc, dict):
        raise Rejected("malformed_json", f"top level is {type(doc).__name__}, not an object")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise Rejected("unknown_schema_version", f"schema_version {version!r} is not {SCHEMA_VERSION}")
    patient_id = doc.get("patient_id")
    if not isinstance(patient_id, str) or not _ID.match(patient_id):
        raise Rejected("invalid_field", "patient_id must be 1-64 letters, digits, '-' or '_'")
    device_id = doc.get("device_id")
    if device_id is not None and (not isinstance(device_id, str) or not _ID.match(device_id)):
        raise Rejected("invalid_field", "device_id must be 1-64 letters, digits, '-' or '_'")
    ts = doc.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 < ts < 32503680000000:
        raise Rejected("invalid_field", "ts must be integer milliseconds since the epoch")
    values: dict[str, float] = {}
    for name, (lo, hi) in VITAL_RANGES.items():
        value = doc.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Rejected("invalid_field", f"{name} must be a number, got {value!r:.40}")
        if not lo <= value <= hi:
            raise Rejected("impossible_value", f"{name}={value} outside {lo:g}-{hi:g}")
        values[name] = float(value)
    return Vitals(patient_id, device_id, datetime.fromtimestamp(ts / 1000, tz=UTC), values)


def encode_vitals(patient_id: str, ts_ms: int, values: dict[str, float | None], device_id: str | None = None) -> bytes:
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "patient_id": patient_id, "ts": ts_ms}
    if device_id is not None:
        doc["device_id"] = device_id
    doc.update({k: v for k, v in values.items() if v is not None})
    return json.dumps(doc, separators=(",", ":")).encode()
