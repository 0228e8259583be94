"""Observations from a vitals message (limit violations, SpO2 probe off) and from a
NEWS2 score (risk bands). Pure functions; the engine calls them each step.

Hysteresis lives here, because only here is the value compared with the limit:
an alarm that is not active starts at ``value > high``; one that is active (or
latched) stays until ``value <= high - hysteresis`` (mirrored for low limits).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from detectors.alarm_conditions import Observation
from detectors.alarm_inputs import VitalsInput
from detectors.alarm_limits import PARAMETERS, AlarmLimits
from detectors.news2 import News2Result

__all__ = ["LIMIT_CONDITIONS", "limit_observations", "spo2_probe_observation", "news2_observations"]

LIMIT_CONDITIONS: Mapping[str, tuple[str, str]] = {
    f"{key}_{side}": (key, side) for key in PARAMETERS for side in ("high", "low")
}
"""Condition name -> (parameter, side), e.g. ``"spo2_low" -> ("spo2", "low")``."""


def limit_observations(vitals: VitalsInput, limits: AlarmLimits, active: Collection[str]) -> list[Observation]:
    """One observation per limit condition. ``active`` names the conditions that
    currently have an alarm, which clear with hysteresis. A parameter missing from
    the message gives ``present=None`` (no news); a limit switched off gives False,
    which clears an alarm raised before it was switched off."""
    out = []
    for condition, (key, side) in LIMIT_CONDITIONS.items():
        meta, p = PARAMETERS[key], limits[key]
        value = vitals.values.get(key)
        if key == "spo2" and value == 0:
            value = None  # an SpO2 of 0 is "no reading": the probe-off condition reports it
        limit = p.high if side == "high" else p.low
        if value is None:
            out.append(Observation(condition, None, None, limit, meta.unit))
            continue
        if limit is None:
            out.append(Observation(condition, False, value, None, meta.unit, "limit off"))
            continue
        margin = p.hysteresis if condition in active else 0.0
        present = value > limit - margin if side == "high" else value < limit + margin
        out.append(Observation(condition, present, value, limit, meta.unit))
    return out


def spo2_probe_observation(vitals: VitalsInput) -> Observation:
    """Probe off: SpO2 reported as 0, or missing while the pleth wave is absent.

    A missing SpO2 with the pleth present (the oximeter still averaging) is not the
    probe; a missing SpO2 from a device that does not report pleth says nothing.
    """
    spo2 = vitals.values.get("spo2")
    if spo2 is not None:
        return Observation("spo2_probe_off", spo2 == 0, detail="SpO2 reads 0" if spo2 == 0 else "")
    if vitals.pleth_present is None:
        return Observation("spo2_probe_off", None)
    present = not vitals.pleth_present
    return Observation("spo2_probe_off", present, detail="no SpO2 reading and no pleth wave" if present else "")


_BANDS = (("news2_high", "high", 7.0), ("news2_medium", "medium", 5.0), ("news2_low_medium", "low-medium", 3.0))


def news2_observations(result: News2Result) -> list[Observation]:
    """Exactly one band is present (none for low risk): moving from medium to high
    risk clears the medium alarm and raises the high one. The limits are those of
    RCP 2017 Chart 2: aggregate 7, aggregate 5, a single parameter scoring 3."""
    out = []
    for condition, risk, limit in _BANDS:
        out.append(Observation(condition, result.risk == risk, float(result.score), limit, "points"))
    return out
