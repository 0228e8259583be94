"""What goes into one step of the alarm engine: measurements, detector reports and
the care team's commands. Every field is optional, so a step can carry a vitals
message, an ECG report, a command, or nothing at all (a clock tick that only lets
escalation timers run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from detectors.alarm_conditions import Observation
from detectors.news2 import News2Result

__all__ = ["VitalsInput", "Acknowledge", "Silence", "ChangeLimits", "Command", "AlarmInputs"]


@dataclass(frozen=True, slots=True)
class VitalsInput:
    """One vitals message. ``values`` holds only what the device measured (keys hr,
    spo2, rr, sbp, dbp, temp; units as in `detectors.alarm_limits.PARAMETERS`).

    ``pleth_present`` says whether the pulse oximeter sees a plethysmographic pulse
    wave (None: the device does not say). An SpO2 of 0, or a missing SpO2 with the
    pleth absent, is the probe off or off the finger, never a desaturation.
    """

    values: Mapping[str, float]
    pleth_present: bool | None = None


@dataclass(frozen=True, slots=True)
class Acknowledge:
    alert_id: str
    by: str


@dataclass(frozen=True, slots=True)
class Silence:
    """Pause the audio of one alarm (``alert_id``) or of all active ones (None) for ``duration_s``."""

    alert_id: str | None
    duration_s: float
    by: str


@dataclass(frozen=True, slots=True)
class ChangeLimits:
    """Change the patient's limits. ``changes`` is the JSON object `AlarmLimits.changed`
    accepts; with ``care_area`` set, the limits first reset to that area's defaults
    (a transfer) and ``changes`` apply on top."""

    changes: Mapping[str, Any]
    by: str
    care_area: str | None = None


Command = Acknowledge | Silence | ChangeLimits


@dataclass(frozen=True, slots=True)
class AlarmInputs:
    """Inputs of one engine step. ``observations`` come from the ECG arrhythmia
    detector (`detectors.arrhythmia`) or any other detector whose conditions are in
    the engine's catalogue. Commands apply first, in order, so a limit change
    governs the vitals of the same step."""

    vitals: VitalsInput | None = None
    news2: News2Result | None = None
    observations: Sequence[Observation] = ()
    commands: Sequence[Command] = ()
