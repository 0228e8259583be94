"""National Early Warning Score 2 (NEWS2), exactly as the Royal College of Physicians'
2017 Chart 1.

Reference: Royal College of Physicians. National Early Warning Score (NEWS) 2:
Standardising the assessment of acute-illness severity in the NHS. Updated report
of a working party. London: RCP, 2017. Chart 1: The NEWS scoring system; Chart 2:
thresholds and triggers.

Values are scored as they are charted: respiration rate, SpO2, systolic pressure and
pulse as whole numbers, temperature to one decimal place (°C). A value that falls
between two chart rows after that rounding cannot occur; rounding is half-up
(37.05 -> 37.1), not Python's banker's rounding.

Pure: no I/O. `score_news2` takes a validated `News2Observation`;
`parse_observation` builds one from a JSON object and raises `News2InputError`
naming the offending field.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from typing import Any

__all__ = ["Acvpu", "News2Observation", "News2Result", "News2InputError", "score_news2", "parse_observation"]


class Acvpu(Enum):
    ALERT = "A"
    NEW_CONFUSION = "C"
    VOICE = "V"
    PAIN = "P"
    UNRESPONSIVE = "U"


class News2InputError(ValueError):
    """An observation cannot be scored; ``field`` names the parameter at fault."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


@dataclass(frozen=True, slots=True)
class News2Observation:
    rr: float
    """Respiration rate, breaths/min."""
    spo2: float
    """Oxygen saturation, %."""
    spo2_scale: int
    """1, or 2 for patients with a prescribed target range of 88-92 % (hypercapnic respiratory failure)."""
    oxygen: bool
    """True if on supplemental oxygen."""
    sbp: float
    """Systolic blood pressure, mmHg."""
    hr: float
    """Pulse, beats/min."""
    acvpu: Acvpu
    temp: float
    """Temperature, °C."""


@dataclass(frozen=True, slots=True)
class News2Result:
    score: int
    risk: str
    """``high`` (>= 7), ``medium`` (5-6), ``low-medium`` (a single parameter scoring 3, total < 5), ``low``."""
    components: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "risk": self.risk, "components": dict(self.components)}


# Cached: a ward's readings repeat the same few hundred charted values, and the
# decimal rounding cost more than the rest of the score. (Equal keys give equal
# results: 80 and 80.0, or -0.0 and 0.0, round to the same row.)
@functools.lru_cache(maxsize=4096)
def _whole(value: float) -> int:
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@functools.lru_cache(maxsize=4096)
def _tenth(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


# Chart 1 as tables: (highest value of the row, points), then the points above the last row.
_RR_ROWS = ((8, 3), (11, 1), (20, 0), (24, 2)), 3
_SPO2_SCALE1_ROWS = ((91, 3), (93, 2), (95, 1)), 0
_SPO2_SCALE2_ROWS = ((83, 3), (85, 2), (87, 1), (92, 0)), None  # above 92: depends on oxygen
_SPO2_SCALE2_OXYGEN_ROWS = ((94, 1), (96, 2)), 3
_SBP_ROWS = ((90, 3), (100, 2), (110, 1), (219, 0)), 3
_PULSE_ROWS = ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2)), 3
_TEMP_ROWS = ((Decimal("35.0"), 3), (Decimal("36.0"), 1), (Decimal("38.0"), 0), (Decimal("39.0"), 1)), 2


def _points(value: Decimal | int, table: tuple[tuple[tuple[Any, int], ...], int | None]) -> int | None:
    rows, above = table
    for highest, points in rows:
        if value <= highest:
            return points
    return above


def _spo2(v: int, scale: int, oxygen: bool) -> int:
    if scale == 1:
        return _points(v, _SPO2_SCALE1_ROWS) or 0
    points = _points(v, _SPO2_SCALE2_ROWS)
    if points is not None:
        return points
    # >= 93 %: no points on air; on oxygen, a saturation above target scores.
    return 0 if not oxygen else _points(v, _SPO2_SCALE2_OXYGEN_ROWS) or 0


def score_news2(obs: News2Observation) -> News2Result:
    spo2 = _whole(obs.spo2)
    components = {
        "rr": _points(_whole(obs.rr), _RR_ROWS) or 0,
        "spo2": _spo2(spo2, obs.spo2_scale, obs.oxygen),
        "oxygen": 2 if obs.oxygen else 0,
        "sbp": _points(_whole(obs.sbp), _SBP_ROWS) or 0,
        "hr": _points(_whole(obs.hr), _PULSE_ROWS) or 0,
        "acvpu": 0 if obs.acvpu is Acvpu.ALERT else 3,
        "temp": _points(_tenth(obs.temp), _TEMP_ROWS) or 0,
    }
    total = sum(components.values())
    if total >= 7:
        risk = "high"
    elif total >= 5:
        risk = "medium"
    elif 3 in components.values():
        risk = "low-medium"
    else:
        risk = "low"
    return News2Result(total, risk, components)


# Plausible measurement ranges: outside them the value is an input error, not a score.
_RANGES: dict[str, tuple[float, float]] = {
    "rr": (0, 100), "spo2": (0, 100), "sbp": (0, 350), "hr": (0, 350), "temp": (20, 46),
}


def _number(doc: dict[str, Any], field: str) -> float:
    if field not in doc:
        raise News2InputError(field, "missing")
    value = doc[field]
    # An int is always finite; math.isfinite(10**400) would raise OverflowError instead of saying so.
    if isinstance(value, bool) or not (isinstance(value, int) or isinstance(value, float) and math.isfinite(value)):
        raise News2InputError(field, f"must be a number, got {value!r:.40}")
    lo, hi = _RANGES[field]
    if not lo <= value <= hi:  # before float(): an int too big for a float fails here
        raise News2InputError(field, f"{value!r:.40} is outside the plausible range {lo:g}-{hi:g}")
    return float(value)


def parse_observation(doc: Any) -> News2Observation:
    """Validate one JSON observation (keys rr, spo2, spo2_scale, oxygen, sbp, hr,
    acvpu, temp); raises `News2InputError` naming the first bad field."""
    if not isinstance(doc, dict):
        raise News2InputError("observation", f"must be a JSON object, got {type(doc).__name__}")
    scale = doc.get("spo2_scale", 1)
    if isinstance(scale, bool) or scale not in (1, 2):
        raise News2InputError("spo2_scale", f"must be 1 or 2, got {scale!r:.40}")
    oxygen = doc.get("oxygen")
    if not isinstance(oxygen, bool):
        raise News2InputError("oxygen", "missing" if oxygen is None else f"must be true or false, got {oxygen!r:.40}")
    acvpu = doc.get("acvpu")
    try:
        level = Acvpu(acvpu)
    except ValueError:
        raise News2InputError("acvpu", "missing" if acvpu is None else f"must be one of A, C, V, P, U, got {acvpu!r:.40}") from None
    return News2Observation(
        rr=_number(doc, "rr"), spo2=_number(doc, "spo2"), spo2_scale=int(scale), oxygen=oxygen,
        sbp=_number(doc, "sbp"), hr=_number(doc, "hr"), acvpu=level, temp=_number(doc, "temp"),
    )
