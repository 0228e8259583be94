"""One patient's alarm state, as the engine carries it from step to step.

It is stored in a Faust table keyed by patient, so it converts to and from a plain
JSON object (`AlarmState.to_dict` / `AlarmState.from_dict`) that carries
``state_version``; a future layout change adds an upcaster keyed by that version
instead of rewriting what is stored. Times are engine seconds (the caller's device
clock), never wall-clock time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from detectors.alarm_conditions import Priority
from detectors.alarm_limits import AlarmLimits

__all__ = ["ActiveAlarm", "AlarmState", "AlarmStateError", "STATE_VERSION"]

STATE_VERSION = 1

T = TypeVar("T")


class AlarmStateError(ValueError):
    """A stored state that cannot be read back; ``field`` names where. The stored
    value is corrupt or from an unknown version: restore it from the event log."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"alarm state {field}: {detail}")
        self.field = field


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    """An alarm that has been raised and not yet cleared (one per condition).

    ``condition_present`` is False for a latched alarm whose condition has ended, and
    for one whose condition's clear delay is running (``absent_since``: when the
    condition was first seen absent).
    ``escalated_at`` is when the escalation timer last started (the raise or the
    previous escalation). Acknowledged alarms neither sound nor escalate.
    """

    alert_id: str
    condition: str
    priority: Priority
    technical: bool
    latching: bool
    onset: float
    raised_at: float
    escalated_at: float
    condition_present: bool
    message: str
    value: float | None
    limit: float | None
    escalation_level: int = 0
    acknowledged_by: str | None = None
    silenced_until: float | None = None
    absent_since: float | None = None

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None

    def audible(self, now: float) -> bool:
        """Whether the alarm's audio signal should sound at ``now``."""
        return not self.acknowledged and (self.silenced_until is None or now >= self.silenced_until)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"priority": self.priority.value}

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> ActiveAlarm:
        d = _object(doc, where)
        try:
            priority = Priority(_get(d, "priority", str, where))
        except ValueError:
            raise AlarmStateError(f"{where}.priority", f"unknown priority {d.get('priority')!r:.40}") from None
        return cls(
            alert_id=_get(d, "alert_id", str, where), condition=_get(d, "condition", str, where), priority=priority,
            technical=_get(d, "technical", bool, where), latching=_get(d, "latching", bool, where),
            onset=_num(d, "onset", where), raised_at=_num(d, "raised_at", where),
            escalated_at=_num(d, "escalated_at", where),
            condition_present=_get(d, "condition_present", bool, where), message=_get(d, "message", str, where),
            value=_opt_num(d, "value", where), limit=_opt_num(d, "limit", where),
            escalation_level=_get(d, "escalation_level", int, where),
            acknowledged_by=_opt(d, "acknowledged_by", str, where), silenced_until=_opt_num(d, "silenced_until", where),
            absent_since=_opt_num(d, "absent_since", where),
        )


@dataclass(frozen=True, slots=True)
class AlarmState:
    """``pending`` maps a condition that is present but still within its delay to its
    onset time; ``alarms`` maps a condition to its active alarm (so there is at most
    one per condition: de-duplication by construction). ``clock`` is the latest
    engine time seen (None before the first step); ``seq`` counts alarms raised, and
    goes into the alert id so two alarms can never share one."""

    patient: str
    limits: AlarmLimits
    clock: float | None = None
    seq: int = 0
    pending: Mapping[str, float] = field(default_factory=dict)
    alarms: Mapping[str, ActiveAlarm] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state_version": STATE_VERSION, "patient": self.patient, "limits": self.limits.to_dict(),
            "clock": self.clock, "seq": self.seq, "pending": dict(self.pending),
            "alarms": {k: a.to_dict() for k, a in self.alarms.items()},
        }

    @classmethod
    def from_dict(cls, doc: Any) -> AlarmState:
        """Inverse of `to_dict`; raises `AlarmStateError` (or `AlarmLimitsError` for the limits)."""
        d = _object(doc, "state")
        if d.get("state_version") != STATE_VERSION:
            raise AlarmStateError("state_version", f"{d.get('state_version')!r:.40} is not {STATE_VERSION}")
        pending = _object(d.get("pending"), "pending")
        alarms = _object(d.get("alarms"), "alarms")
        return cls(
            patient=_get(d, "patient", str, "state"), limits=AlarmLimits.from_dict(d.get("limits")),
            clock=_opt_num(d, "clock", "state"), seq=_get(d, "seq", int, "state"),
            pending={str(k): _num(pending, k, "pending") for k in pending},
            alarms={str(k): ActiveAlarm.from_dict(v, f"alarms.{k}") for k, v in alarms.items()},
        )


def _object(doc: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise AlarmStateError(where, f"must be a JSON object, got {type(doc).__name__}")
    return doc


def _get(d: Mapping[str, Any], key: str, kind: type[T], where: str) -> T:
    value = d.get(key)
    # bool is an int in Python; an int field must not accept true/false.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise AlarmStateError(f"{where}.{key}", f"must be {kind.__name__}, got {value!r:.40}")
    return value


def _opt(d: Mapping[str, Any], key: str, kind: type[T], where: str) -> T | None:
    return None if d.get(key) is None else _get(d, key, kind, where)


def _num(d: Mapping[str, Any], key: str, where: str) -> float:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AlarmStateError(f"{where}.{key}", f"must be a number, got {value!r:.40}")
    return float(value)


def _opt_num(d: Mapping[str, Any], key: str, where: str) -> float | None:
    return None if d.get(key) is None else _num(d, key, where)

