"""Per-patient vital-sign alarm limits, with defaults by care area.

Each parameter (heart rate, SpO2, respiration rate, systolic and diastolic pressure,
temperature) has a low and a high limit, a clearing *hysteresis* and an
alarm-condition *delay*:

- a limit alarm starts when the value is strictly beyond the limit (``> high`` or
  ``< low``) and has stayed beyond it for ``delay_s`` seconds;
- it clears only once the value is back inside by the hysteresis (``<= high -
  hysteresis`` or ``>= low + hysteresis``), so a value hovering at the limit does
  not make the alarm flap.

A limit of None is switched off (the dashboard must show that it is). The defaults
below are a starting configuration for adults, close to common monitor factory
defaults; a site's clinical engineering reviews them, and the care team changes
them per patient through `AlarmLimits.changed`, which validates the change and
raises `AlarmLimitsError` naming the field at fault (``"hr.low"``).

Pure: no I/O. `to_dict` / `from_dict` give the JSON form stored with the patient's
alarm state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["ParameterLimits", "AlarmLimits", "AlarmLimitsError", "PARAMETERS", "CARE_AREAS", "default_limits",
           "starting_limits"]


class AlarmLimitsError(ValueError):
    """A limit change or stored limits that cannot be accepted; ``field`` names the
    offending field (``"spo2.low"``, ``"care_area"``). Reject the command with this
    message; the patient's current limits stay in force."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


@dataclass(frozen=True, slots=True)
class _Parameter:
    label: str
    unit: str
    plausible: tuple[float, float]
    """Values outside are impossible, so a limit there is a typing error."""
    max_hysteresis: float


PARAMETERS: Mapping[str, _Parameter] = MappingProxyType({
    "hr": _Parameter("HR", "bpm", (0, 350), 20),
    "spo2": _Parameter("SpO2", "%", (0, 100), 5),
    "rr": _Parameter("RR", "/min", (0, 100), 10),
    "sbp": _Parameter("SBP", "mmHg", (0, 350), 20),
    "dbp": _Parameter("DBP", "mmHg", (0, 300), 20),
    "temp": _Parameter("Temp", "°C", (20, 46), 1),
})
"""Parameter key -> label, unit, plausible range, largest hysteresis accepted."""

_MAX_DELAY_S = 300.0  # beyond five minutes a "delay" hides the condition rather than filtering it


@dataclass(frozen=True, slots=True)
class ParameterLimits:
    low: float | None
    high: float | None
    hysteresis: float
    delay_s: float

    def __post_init__(self) -> None:
        # Always floats: stored limits come back from JSON as floats, and the events
        # that quote a limit must read the same before and after a restore.
        for name in ("low", "high", "hysteresis", "delay_s"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))

    def to_dict(self) -> dict[str, float | None]:
        return {"low": self.low, "high": self.high, "hysteresis": self.hysteresis, "delay_s": self.delay_s}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AlarmLimitsError(name, f"must be a number, got {value!r:.40}")
    return float(value)


def _limit(name: str, value: Any) -> float | None:
    """A limit: a number, or null for "switched off"."""
    return None if value is None else _number(name, value)


def _validate(key: str, p: ParameterLimits) -> None:
    meta = PARAMETERS[key]
    lo, hi = meta.plausible
    for side, value in (("low", p.low), ("high", p.high)):
        if value is not None and not lo <= value <= hi:
            raise AlarmLimitsError(f"{key}.{side}", f"{value:g} {meta.unit} is outside the plausible range {lo:g}-{hi:g}")
    if not 0 <= p.hysteresis <= meta.max_hysteresis:
        raise AlarmLimitsError(f"{key}.hysteresis", f"must be 0-{meta.max_hysteresis:g} {meta.unit}, got {p.hysteresis:g}")
    if not 0 <= p.delay_s <= _MAX_DELAY_S:
        raise AlarmLimitsError(f"{key}.delay_s", f"must be 0-{_MAX_DELAY_S:g} s, got {p.delay_s:g}")
    if p.low is not None and p.high is not None and p.high - p.low <= 2 * p.hysteresis:
        # Otherwise clearing one alarm could need a value that raises the other.
        raise AlarmLimitsError(f"{key}.high", f"high {p.high:g} must exceed low {p.low:g} by more than twice the "
                                              f"hysteresis ({p.hysteresis:g} {meta.unit})")


def _scale(value: Any) -> int:
    if value not in (1, 2) or isinstance(value, bool):
        raise AlarmLimitsError("spo2_scale", f"must be 1 or 2 (NEWS2 SpO2 scale), got {value!r:.40}")
    return int(value)


@dataclass(frozen=True, slots=True)
class AlarmLimits:
    """One patient's limits: the care area they started from plus every parameter, and
    the NEWS2 SpO2 scale the patient is scored on."""

    care_area: str
    parameters: Mapping[str, ParameterLimits]
    spo2_scale: int = 1
    """1, or 2 for a patient with hypercapnic respiratory failure whom a clinician has
    prescribed a target saturation of 88-92 % (RCP 2017): set with the limits (key
    ``spo2_scale``), by a person, so the choice is audited like any limit change."""

    def __post_init__(self) -> None:
        missing = [k for k in PARAMETERS if k not in self.parameters]
        if missing:
            raise AlarmLimitsError(missing[0], "missing")
        for key, p in self.parameters.items():
            if key not in PARAMETERS:
                raise AlarmLimitsError(key, f"unknown parameter; expected one of {', '.join(PARAMETERS)}")
            _validate(key, p)
        _scale(self.spo2_scale)

    def __getitem__(self, key: str) -> ParameterLimits:
        return self.parameters[key]

    def changed(self, changes: Any) -> AlarmLimits:
        """These limits with ``changes`` applied, validated as a whole.

        ``changes`` is a JSON object such as ``{"hr": {"low": 45, "high": 130},
        "spo2": {"low": 88}}``; keys left out keep their value. Raises
        `AlarmLimitsError` naming the first bad field, so nothing is half-applied.
        """
        if not isinstance(changes, Mapping):
            raise AlarmLimitsError("limits", f"must be a JSON object, got {type(changes).__name__}")
        updated = dict(self.parameters)
        scale = _scale(changes["spo2_scale"]) if "spo2_scale" in changes else self.spo2_scale
        for key, doc in changes.items():
            if key == "spo2_scale":
                continue
            if key not in PARAMETERS:
                raise AlarmLimitsError(str(key), f"unknown parameter; expected one of {', '.join(PARAMETERS)} "
                                                 f"or spo2_scale")
            if not isinstance(doc, Mapping):
                raise AlarmLimitsError(key, f"must be a JSON object, got {type(doc).__name__}")
            unknown = [name for name in doc if name not in ("low", "high", "hysteresis", "delay_s")]
            if unknown:
                raise AlarmLimitsError(f"{key}.{unknown[0]}", "unknown field; expected low, high, hysteresis or delay_s")
            current = updated[key]
            updated[key] = ParameterLimits(
                _limit(f"{key}.low", doc["low"]) if "low" in doc else current.low,
                _limit(f"{key}.high", doc["high"]) if "high" in doc else current.high,
                _number(f"{key}.hysteresis", doc["hysteresis"]) if "hysteresis" in doc else current.hysteresis,
                _number(f"{key}.delay_s", doc["delay_s"]) if "delay_s" in doc else current.delay_s,
            )
        return AlarmLimits(self.care_area, MappingProxyType(updated), scale)

    def to_dict(self) -> dict[str, Any]:
        # The scale only when it is 2: limits stored before it existed read back the same.
        return {"care_area": self.care_area, **{k: self.parameters[k].to_dict() for k in PARAMETERS},
                **({"spo2_scale": self.spo2_scale} if self.spo2_scale != 1 else {})}

    @classmethod
    def from_dict(cls, doc: Any) -> AlarmLimits:
        """Inverse of `to_dict`; raises `AlarmLimitsError` on anything else."""
        if not isinstance(doc, Mapping):
            raise AlarmLimitsError("limits", f"must be a JSON object, got {type(doc).__name__}")
        care_area = doc.get("care_area")
        if not isinstance(care_area, str):
            raise AlarmLimitsError("care_area", f"must be a string, got {care_area!r:.40}")
        params = {}
        for key in PARAMETERS:
            p = doc.get(key)
            if not isinstance(p, Mapping):
                raise AlarmLimitsError(key, "missing")
            params[key] = ParameterLimits(
                _limit(f"{key}.low", p.get("low")), _limit(f"{key}.high", p.get("high")),
                _number(f"{key}.hysteresis", p.get("hysteresis")), _number(f"{key}.delay_s", p.get("delay_s")),
            )
        return cls(care_area, MappingProxyType(params), _scale(doc.get("spo2_scale", 1)))


def _area(name: str, rows: Mapping[str, tuple[float | None, float | None, float, float]]) -> AlarmLimits:
    return AlarmLimits(name, MappingProxyType({k: ParameterLimits(*row) for k, row in rows.items()}))


# (low, high, hysteresis, delay_s). Delays: SpO2 and RR are averaged signals that dip
# briefly with movement (10-15 s is the usual pulse-oximeter setting); blood pressure
# and temperature arrive as single measurements, so a delay would only hold them back.
CARE_AREAS: Mapping[str, AlarmLimits] = MappingProxyType({
    "icu": _area("icu", {
        "hr": (50, 120, 5, 10), "spo2": (90, None, 2, 15), "rr": (8, 30, 2, 15),
        "sbp": (90, 160, 5, 0), "dbp": (50, 90, 5, 0), "temp": (35.5, 38.5, 0.2, 0),
    }),
    "step-down": _area("step-down", {
        "hr": (50, 130, 5, 10), "spo2": (90, None, 2, 15), "rr": (8, 30, 2, 15),
        "sbp": (90, 170, 5, 0), "dbp": (45, 100, 5, 0), "temp": (35.5, 38.5, 0.2, 0),
    }),
    "ward": _area("ward", {
        "hr": (45, 130, 5, 15), "spo2": (88, None, 2, 20), "rr": (8, 30, 2, 20),
        "sbp": (90, 180, 5, 0), "dbp": (45, 110, 5, 0), "temp": (35.0, 39.0, 0.2, 0),
    }),
})


def default_limits(care_area: str) -> AlarmLimits:
    """The defaults of a care area (``icu``, ``step-down``, ``ward``)."""
    try:
        return CARE_AREAS[care_area]
    except KeyError:
        raise AlarmLimitsError("care_area", f"unknown care area {care_area!r:.40}; expected one of "
                                            f"{', '.join(CARE_AREAS)}") from None


def starting_limits(care_area: str, hr_high: float | None = None) -> AlarmLimits:
    """The limits a patient starts from, before any command changes them: the care
    area's defaults, with the site's own high heart-rate limit in place of the area's
    when one is set (``VIGIL_HR_HIGH_LIMIT``). The worker raises alarms against these
    and the gateway resolves a limits command against them, so both must start here:
    a command that changes SpO2 stores the patient's whole limits, heart rate included."""
    limits = default_limits(care_area)
    return limits if hr_high is None else limits.changed({"hr": {"high": hr_high}})
