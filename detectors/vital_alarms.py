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

__all__ = ["LIMIT_CONDITIONS", "PROBE_OFF_SPO2", "limit_observations", "spo2_probe_observation", "spo2_reading",
           "news2_observations"]

LIMIT_CONDITIONS: Mapping[str, tuple[str, str]] = {
    f"{key}_{side}": (key, side) for key in PARAMETERS for side in ("high", "low")
}
"""Condition name -> (parameter, side), e.g. ``"spo2_low" -> ("spo2", "low")``."""


PROBE_OFF_SPO2 = 0.0
"""What an oximeter reports for SpO2 with its probe off: no reading, not a saturation."""


def spo2_reading(value: float | None) -> float | None:
    """An SpO2 value as a measurement: None when absent or `PROBE_OFF_SPO2` (the probe-off
    condition reports that), so neither the limits nor NEWS2 take it for a desaturation."""
    return None if value == PROBE_OFF_SPO2 else value


_PAIRS = tuple((key, f"{key}_high", f"{key}_low") for key in PARAMETERS)


def limit_observations(vitals: VitalsInput, limits: AlarmLimits, active: Collection[str],
                       only: Collection[str] | None = None) -> list[Observation]:
    """One observation per limit condition. ``active`` names the conditions that
    currently have an alarm, which clear with hysteresis. A parameter missing from
    the message gives ``present=None`` (no news); a limit switched off gives False,
    which clears an alarm raised before it was switched off.

    With ``only``, the observations that cannot change anything for an engine whose
    pending and alarming conditions are ``only`` are left out: no news, and absent
    conditions outside ``only`` (nothing to reset, nothing to clear). The engine asks
    for this; a vitals message is mostly parameters within their limits."""
    out = []
    values = vitals.values
    for key, high_name, low_name in _PAIRS:
        unit, p = PARAMETERS[key].unit, limits[key]
        value = values.get(key)
        if key == "spo2":
            value = spo2_reading(value)
        for condition, limit, high in ((high_name, p.high, True), (low_name, p.low, False)):
            if value is None:
                if only is None:
                    out.append(Observation(condition, None, None, limit, unit))
                continue
            if limit is None:
                if only is None or condition in only:
                    out.append(Observation(condition, False, value, None, unit, "limit off"))
                continue
            margin = p.hysteresis if condition in active else 0.0
            present = value > limit - margin if high else value < limit + margin
            if present or only is None or condition in only:
                out.append(Observation(condition, present, value, limit, unit))
    return out


def spo2_probe_observation(vitals: VitalsInput) -> Observation:
    """Probe off: SpO2 reported as 0, or missing while the pleth wave is absent.

    A missing SpO2 with the pleth present (the oximeter still averaging) is not the
    probe; a missing SpO2 from a device that does not report pleth says nothing.
    """
    spo2 = vitals.values.get("spo2")
    if spo2 is not None:
        off = spo2 == PROBE_OFF_SPO2
        return Observation("spo2_probe_off", off, detail="SpO2 reads 0" if off else "")
    if vitals.pleth_present is None:
        return Observation("spo2_probe_off", None)
    present = not vitals.pleth_present
    return Observation("spo2_probe_off", present, detail="no SpO2 reading and no pleth wave" if present else "")


_BANDS = (("news2_high", "high", 7.0), ("news2_medium", "medium", 5.0), ("news2_low_medium", "low-medium", 3.0))


def news2_observations(result: News2Result, only: Collection[str] | None = None) -> list[Observation]:
    """Exactly one band is present (none for low risk): moving from medium to high
    risk clears the medium alarm and raises the high one. The limits are those of
    RCP 2017 Chart 2: aggregate 7, aggregate 5, a single parameter scoring 3.
    ``only``: as for `limit_observations`, absent bands outside it are left out."""
    out = []
    for condition, risk, limit in _BANDS:
        present = result.risk == risk
        if present or only is None or condition in only:
            out.append(Observation(condition, present, float(result.score), limit, "points"))
    return out
