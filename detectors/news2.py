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


def _whole(value: float) -> int:
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _tenth(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _rr(v: int) -> int:
    if v <= 8:
        return 3
    if v <= 11:
        return 1
    if v <= 20:
        return 0
    if v <= 24:
        return 2
    return 3


def _spo2_scale1(v: int) -> int:
    if v <= 91:
        return 3
    if v <= 93:
        return 2
    if v <= 95:
        return 1
    return 0


def _spo2_scale2(v: int, oxygen: bool) -> int:
    if v <= 83:
        return 3
    if v <= 85:
        return 2
    if v <= 87:
        return 1
    if v <= 92 or not oxygen:
        return 0  # 88-92 %, or >= 93 % on air
    if v <= 94:
        return 1
    if v <= 96:
        return 2
    return 3


def _sbp(v: int) -> int:
    if v <= 90:
        return 3
    if v <= 100:
        return 2
    if v <= 110:
        return 1
    if v <= 219:
        return 0
    return 3


def _pulse(v: int) -> int:
    if v <= 40:
        return 3
    if v <= 50:
        return 1
    if v <= 90:
        return 0
    if v <= 110:
        return 1
    if v <= 130:
        return 2
    return 3


def _temp(v: Decimal) -> int:
    if v <= Decimal("35.0"):
        return 3
    if v <= Decimal("36.0"):
        return 1
    if v <= Decimal("38.0"):
        return 0
    if v <= Decimal("39.0"):
        return 1
    return 2


def score_news2(obs: News2Observation) -> News2Result:
    spo2 = _whole(obs.spo2)
    components = {
        "rr": _rr(_whole(obs.rr)),
        "spo2": _spo2_scale1(spo2) if obs.spo2_scale == 1 else _spo2_scale2(spo2, obs.oxygen),
        "oxygen": 2 if obs.oxygen else 0,
        "sbp": _sbp(_whole(obs.sbp)),
        "hr": _pulse(_whole(obs.hr)),
        "acvpu": 0 if obs.acvpu is Acvpu.ALERT else 3,
        "temp": _temp(_tenth(obs.temp)),
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise News2InputError(field, f"must be a number, got {value!r:.40}")
    lo, hi = _RANGES[field]
    if not lo <= value <= hi:
        raise News2InputError(field, f"{value} is outside the plausible range {lo:g}-{hi:g}")
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
