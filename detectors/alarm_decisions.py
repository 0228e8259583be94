"""What the alarm engine decides: plain frozen dataclasses, one per kind of fact.

The worker turns each decision into one event (AlarmRaised -> AlertRaised,
AlarmCleared -> AlertResolved, ...) with ``to_dict()`` as the payload. Every alarm
decision carries the alert id, patient, condition, current priority, a message for
people (values and limits written out, so the event reads correctly without the
code that made it), the value and limit behind it, and ``at``: the engine time
(seconds, the caller's device clock) the decision was made.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, ClassVar

from detectors.alarm_conditions import Priority

__all__ = [
    "AlarmRaised", "AlarmEscalated", "AlarmCleared", "AlarmAcknowledged", "AlarmSilenced",
    "AlarmLimitsChanged", "CommandRejected", "AlarmDecision", "Decision", "ALARM_DECISIONS",
]


@dataclass(frozen=True, slots=True)
class _Record:
    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready payload; ``type`` names the decision."""
        out: dict[str, Any] = {"type": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, Enum) else value
        return out


@dataclass(frozen=True, slots=True)
class _AlarmRecord(_Record):
    alert_id: str
    patient: str
    condition: str
    priority: Priority
    message: str
    value: float | None
    limit: float | None
    at: float


@dataclass(frozen=True, slots=True)
class AlarmRaised(_AlarmRecord):
    """A new alarm. ``onset`` is when its condition began (``at`` minus the delay it waited)."""

    kind: ClassVar[str] = "AlarmRaised"
    technical: bool
    onset: float


@dataclass(frozen=True, slots=True)
class AlarmEscalated(_AlarmRecord):
    """Unacknowledged too long: ``priority`` is the new one (HIGH stays HIGH, ``level`` counts up)."""

    kind: ClassVar[str] = "AlarmEscalated"
    previous_priority: Priority
    level: int


@dataclass(frozen=True, slots=True)
class AlarmCleared(_AlarmRecord):
    """The alarm is over: ``reason`` is ``condition_ended`` or, for a latched alarm, ``acknowledged``."""

    kind: ClassVar[str] = "AlarmCleared"
    reason: str


@dataclass(frozen=True, slots=True)
class AlarmAcknowledged(_AlarmRecord):
    """Someone took note. If the condition persists the alarm stays, without audio or escalation."""

    kind: ClassVar[str] = "AlarmAcknowledged"
    by: str
    condition_present: bool


@dataclass(frozen=True, slots=True)
class AlarmSilenced(_AlarmRecord):
    """Audio paused until ``until``; the alarm stays visible and keeps escalating."""

    kind: ClassVar[str] = "AlarmSilenced"
    by: str
    until: float


@dataclass(frozen=True, slots=True)
class AlarmLimitsChanged(_Record):
    """The patient's limits now in force (the whole set, as `AlarmLimits.to_dict`)."""

    kind: ClassVar[str] = "AlarmLimitsChanged"
    patient: str
    limits: dict[str, Any]
    by: str
    at: float


@dataclass(frozen=True, slots=True)
class CommandRejected(_Record):
    """A command that changed nothing, kept so the audit trail shows it was refused and why.

    ``reason`` is a stable code (``unknown_alert``, ``already_acknowledged``,
    ``invalid_limits``, ``invalid_silence``, ``no_active_alarm``); ``detail`` says more.
    """

    kind: ClassVar[str] = "CommandRejected"
    patient: str
    command: str
    alert_id: str | None
    reason: str
    detail: str
    at: float


AlarmDecision = AlarmRaised | AlarmEscalated | AlarmCleared | AlarmAcknowledged | AlarmSilenced
"""The decisions about one alarm: all carry alert_id, patient, condition, priority, message, value, limit, at."""
ALARM_DECISIONS = (AlarmRaised, AlarmEscalated, AlarmCleared, AlarmAcknowledged, AlarmSilenced)

Decision = AlarmDecision | AlarmLimitsChanged | CommandRejected
