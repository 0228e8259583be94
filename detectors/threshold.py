"""A single-parameter threshold alarm with hysteresis (thin-slice rule).

Pure: the caller passes in the patient's previous `ThresholdState` and gets back
the new state plus the decisions to record. The alarm engine of the detectors
issue (priorities, delays, latching, escalation) replaces this.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ThresholdRule", "ThresholdState", "AlarmRaised", "AlarmCleared", "Decision"]


@dataclass(frozen=True, slots=True)
class ThresholdState:
    active_alert_id: str | None = None


@dataclass(frozen=True, slots=True)
class AlarmRaised:
    alert_id: str
    condition: str
    priority: str
    value: float
    limit: float
    message: str


@dataclass(frozen=True, slots=True)
class AlarmCleared:
    alert_id: str
    condition: str
    value: float


Decision = AlarmRaised | AlarmCleared


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """Raise when ``value > limit``; clear when ``value <= limit - hysteresis``.

    Values between the two keep the current state, so a signal hovering at the
    limit does not make the alarm flap.
    """

    condition: str
    label: str
    unit: str
    limit: float
    hysteresis: float
    priority: str = "high"

    def __post_init__(self) -> None:
        if self.hysteresis < 0:
            raise ValueError(f"hysteresis must be >= 0, got {self.hysteresis}")
        if self.priority not in ("high", "medium", "low"):
            raise ValueError(f"priority must be high, medium or low, got {self.priority!r}")

    def evaluate(self, state: ThresholdState, value: float | None, alert_id: str) -> tuple[ThresholdState, list[Decision]]:
        """Apply one observation. ``alert_id`` names the alert if this one raises it.

        A missing value (None) changes nothing: absence of data is a technical
        condition handled elsewhere, not a reason to clear a physiological alarm.
        """
        if value is None:
            return state, []
        if state.active_alert_id is None and value > self.limit:
            message = f"{self.label} {value:g} {self.unit} above limit {self.limit:g}"
            return ThresholdState(alert_id), [
                AlarmRaised(alert_id, self.condition, self.priority, value, self.limit, message)
            ]
        if state.active_alert_id is not None and value <= self.limit - self.hysteresis:
            return ThresholdState(None), [AlarmCleared(state.active_alert_id, self.condition, value)]
        return state, []
