"""The alarm engine: one pure state machine per patient, after IEC 60601-1-8.

Call ``engine.step(state, inputs, now)`` for every input of a patient (a vitals
message, an ECG report from `detectors.arrhythmia`, a NEWS2 score, a command from
the care team) and on a regular clock tick (``AlarmInputs()``) so that escalation
timers run while nothing else happens. It returns the new `AlarmState`, to be
stored (``to_dict()``) in place of the old, and the decisions to record as events.
``now`` is device time in seconds (for instance ``occurred_at.timestamp()``); the
engine never reads a clock. Time never runs backwards inside the engine: an input
older than the latest one is processed at the latest time, so a reordered message
cannot make a timer negative.

A step, in this order:

1. commands: acknowledge, silence (audio paused), change limits;
2. observations, from the inputs, one per condition (see
   `detectors.alarm_conditions.Observation`):

   - a physiological condition whose technical condition is in effect (present
     now, or still alarming without news) is *suppressed*: its delay timer
     restarts and an alarm already raised is held as it is, since a lead off is
     no evidence that the patient got better;
   - present: the delay timer runs from the condition's onset; once it has run
     ``delay`` seconds (boundary included) the alarm is raised, at most one per
     condition (de-duplication);
   - absent: the timer resets; an alarm clears, unless it *latches* (high
     priority) and has not been acknowledged: then it stays, marked as no longer
     present, until someone acknowledges it; or unless its condition has a clear
     delay (``clear_delay_s``) that has not run yet since the condition was first
     seen absent: then it stays, marked as no longer present, and clears at the
     first absent observation once the delay has run (a present one resets it);
   - None (no news): nothing changes;

3. escalation: an alarm unacknowledged for ``escalate_after_s[priority]`` goes one
   priority up (high stays high and its level counts up, for paging), at most
   ``max_escalations`` times, and its audio pause ends. Silencing does not stop
   escalation; only acknowledging does.

Alert ids come from ``alert_id(patient, condition, onset, seq)``; the default is a
uuid5 of those, so the same inputs always give the same alarms.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from detectors.alarm_conditions import CONDITIONS, ConditionSpec, Observation, Priority
from detectors.alarm_decisions import (
    AlarmAcknowledged,
    AlarmCleared,
    AlarmEscalated,
    AlarmLimitsChanged,
    AlarmRaised,
    AlarmSilenced,
    CommandRejected,
    Decision,
)
from detectors.alarm_inputs import Acknowledge, AlarmInputs, ChangeLimits, Command, Silence
from detectors.alarm_limits import AlarmLimits, AlarmLimitsError, default_limits
from detectors.alarm_state import ActiveAlarm, AlarmState
from detectors.vital_alarms import LIMIT_CONDITIONS, limit_observations, news2_observations, spo2_probe_observation

__all__ = ["AlarmEngine", "AlarmPolicy", "AlertIdFn", "derived_alert_id", "ALERT_NAMESPACE"]

AlertIdFn = Callable[[str, str, float, int], str]
"""(patient, condition, onset, seq) -> alert id."""

# Fixed namespace of derived alert ids; changing it would change every id on replay.
ALERT_NAMESPACE = uuid.UUID("3b0f6f8e-2c1d-4c55-8f3e-9a4d2e71c6b0")

# Timer comparisons allow this much float rounding (onset = now - held_s), so a
# condition held exactly its delay alarms.
_EPS = 1e-9


def derived_alert_id(patient: str, condition: str, onset: float, seq: int) -> str:
    """uuid5 of the four, the onset in whole milliseconds (so 10 and 10.0 give one id)."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{patient}:{condition}:{round(onset * 1000)}:{seq}"))


def _default_escalation() -> Mapping[Priority, float]:
    return MappingProxyType({Priority.HIGH: 60.0, Priority.MEDIUM: 120.0, Priority.LOW: 300.0})


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """Site configuration, the same for every patient (limits are per patient).

    ``escalate_after_s`` is keyed by the alarm's current priority; ``max_silence_s``
    bounds an audio pause (IEC 60601-1-8 leaves the figure to the manufacturer;
    two minutes is common).
    """

    conditions: Mapping[str, ConditionSpec] = field(default_factory=lambda: CONDITIONS)
    escalate_after_s: Mapping[Priority, float] = field(default_factory=_default_escalation)
    max_escalations: int = 2
    max_silence_s: float = 120.0

    def __post_init__(self) -> None:
        for spec in self.conditions.values():
            unknown = spec.suppressed_by - self.conditions.keys()
            if unknown:
                raise ValueError(f"{spec.name}: suppressed_by names unknown conditions {sorted(unknown)}")
        for p in Priority:
            if not self.escalate_after_s.get(p, 0) > 0:
                raise ValueError(f"escalate_after_s[{p.value}] must be > 0 s")
        if self.max_escalations < 0 or self.max_silence_s <= 0:
            raise ValueError("max_escalations must be >= 0 and max_silence_s > 0")


class _Work:
    """The state being built during one step (mutable, private to `step`)."""

    def __init__(self, state: AlarmState, clock: float) -> None:
        self.patient = state.patient
        self.limits = state.limits
        self.clock = clock
        self.seq = state.seq
        self.pending = dict(state.pending)
        self.alarms = dict(state.alarms)
        self.decisions: list[Decision] = []

    def frozen(self) -> AlarmState:
        return AlarmState(self.patient, self.limits, self.clock, self.seq, self.pending, self.alarms)

    def reject(self, command: str, alert_id: str | None, reason: str, detail: str) -> None:
        self.decisions.append(CommandRejected(self.patient, command, alert_id, reason, detail, self.clock))


def _message(label: str, obs: Observation) -> str:
    text = label
    parts = ([f"{obs.value:g} {obs.unit}".rstrip()] if obs.value is not None else []) + ([obs.detail] if obs.detail else [])
    if parts:
        text += ": " + " ".join(parts)
    if obs.limit is not None:
        text += f" (limit {obs.limit:g} {obs.unit})".replace(" )", ")")
    return text


def _merge(a: Observation, b: Observation) -> Observation:
    """Two reports of one condition in one step: present wins, then absent, then no news."""
    rank = {True: 2, False: 1, None: 0}
    if rank[b.present] > rank[a.present] or (b.present == a.present and b.held_s > a.held_s):
        return b
    return a


class AlarmEngine:
    def __init__(self, policy: AlarmPolicy | None = None, alert_id: AlertIdFn = derived_alert_id) -> None:
        """The policy is read here, once: build a new engine for another policy."""
        self.policy = policy or AlarmPolicy()
        self._alert_id = alert_id
        conditions = self.policy.conditions
        self._rank = {name: i for i, name in enumerate(conditions)}
        # Only conditions that suppress another need to know whether they are in effect;
        # only those observed in a step, or that can be suppressed, need visiting in it.
        self._suppressors = tuple(n for n in conditions if any(n in c.suppressed_by for c in conditions.values()))
        self._suppressible = frozenset(n for n, c in conditions.items() if c.suppressed_by)
        self._visits: dict[frozenset[str], tuple[tuple[str, ConditionSpec], ...]] = {}
        # Vitals give an observation of every limit and NEWS2 band; most are "absent"
        # for a condition neither pending nor alarming, which changes nothing. Leave
        # those out, unless the policy lacks one of them (then it must raise, as ever).
        vitals_conditions = set(LIMIT_CONDITIONS) | {"news2_high", "news2_medium", "news2_low_medium"}
        self._skip_idle = vitals_conditions <= conditions.keys() and all(k == c.name for k, c in conditions.items())

    def _visit(self, observed: Mapping[str, Observation]) -> tuple[tuple[str, ConditionSpec], ...]:
        """``(name, spec)`` in catalogue order of every condition a step with these
        observations can change (the others: no news, and nothing to suppress)."""
        key = frozenset(observed)
        hit = self._visits.get(key)
        if hit is None:
            if len(self._visits) >= 256:
                self._visits.clear()
            hit = self._visits[key] = tuple((name, spec) for name, spec in self.policy.conditions.items()
                                            if name in key or name in self._suppressible)
        return hit

    def new_state(self, patient: str, care_area: str, limits: AlarmLimits | None = None) -> AlarmState:
        """A patient's first state: the care area's default limits unless ``limits`` is given."""
        return AlarmState(patient, limits or default_limits(care_area))

    def step(self, state: AlarmState, inputs: AlarmInputs, now: float) -> tuple[AlarmState, list[Decision]]:
        """Apply one step's inputs at engine time ``now`` (seconds). Pure: ``state`` is not modified.

        Raises ValueError for a non-finite ``now`` or an observation of a condition
        that is not in the policy's catalogue (both are bugs in the caller).
        """
        now = float(now)
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite number of seconds, got {now}")
        w = _Work(state, now if state.clock is None else max(now, state.clock))
        for command in inputs.commands:
            self._command(w, command)
        observed = self._observations(w, inputs)
        in_effect = {name for name in self._suppressors if self._in_effect(w, name, observed.get(name))}
        for name, spec in self._visit(observed):
            obs = observed.get(name)
            if spec.suppressed_by & in_effect:
                w.pending.pop(name, None)
            elif obs is None or obs.present is None:
                continue
            elif obs.present:
                self._present(w, spec, obs)
            elif spec.name in w.pending or spec.name in w.alarms:  # else absent changes nothing
                self._absent(w, spec, obs)
        self._escalate(w)
        return w.frozen(), w.decisions

    # -- observations -------------------------------------------------------------------------------

    def _observations(self, w: _Work, inputs: AlarmInputs) -> dict[str, Observation]:
        found: list[Observation] = []
        busy = (w.pending.keys() | w.alarms.keys()) if self._skip_idle else None
        if inputs.vitals is not None:
            found += limit_observations(inputs.vitals, w.limits, w.alarms.keys(), busy)
            found.append(spo2_probe_observation(inputs.vitals))
        if inputs.news2 is not None:
            found += news2_observations(inputs.news2, busy)
        found += inputs.observations
        out: dict[str, Observation] = {}
        for obs in found:
            if obs.condition not in self.policy.conditions:
                raise ValueError(f"observation of unknown condition {obs.condition!r}")
            out[obs.condition] = _merge(out[obs.condition], obs) if obs.condition in out else obs
        return out

    @staticmethod
    def _in_effect(w: _Work, name: str, obs: Observation | None) -> bool:
        if obs is not None and obs.present is not None:
            return obs.present
        alarm = w.alarms.get(name)
        return name in w.pending or (alarm is not None and alarm.condition_present)

    def _delay(self, w: _Work, spec: ConditionSpec) -> float:
        if spec.name in LIMIT_CONDITIONS:
            return w.limits[LIMIT_CONDITIONS[spec.name][0]].delay_s
        return spec.delay_s

    def _present(self, w: _Work, spec: ConditionSpec, obs: Observation) -> None:
        message = _message(spec.label, obs)
        alarm = w.alarms.get(spec.name)
        if alarm is not None:
            w.alarms[spec.name] = replace(alarm, condition_present=True, message=message, value=obs.value,
                                          limit=obs.limit, absent_since=None)
            return
        onset = min(w.pending.get(spec.name, w.clock), w.clock - max(obs.held_s, 0.0))
        if w.clock - onset < self._delay(w, spec) - _EPS:
            w.pending[spec.name] = onset
            return
        w.pending.pop(spec.name, None)
        w.seq += 1
        alert_id = self._alert_id(w.patient, spec.name, onset, w.seq)
        w.alarms[spec.name] = ActiveAlarm(
            alert_id=alert_id, condition=spec.name, priority=spec.priority, technical=spec.technical,
            latching=spec.latches, onset=onset, raised_at=w.clock, escalated_at=w.clock, condition_present=True,
            message=message, value=obs.value, limit=obs.limit,
        )
        w.decisions.append(AlarmRaised(alert_id, w.patient, spec.name, spec.priority, message, obs.value, obs.limit,
                                       w.clock, spec.technical, onset))

    def _absent(self, w: _Work, spec: ConditionSpec, obs: Observation) -> None:
        w.pending.pop(spec.name, None)
        alarm = w.alarms.get(spec.name)
        if alarm is None:
            return
        if alarm.latching and not alarm.acknowledged:
            w.alarms[spec.name] = replace(alarm, condition_present=False)
            return
        since = w.clock if alarm.absent_since is None else alarm.absent_since
        if w.clock - since < spec.clear_delay_s - _EPS:
            if alarm.absent_since is None:
                w.alarms[spec.name] = replace(alarm, condition_present=False, absent_since=since)
            return
        del w.alarms[spec.name]
        message = _message(f"{spec.label} ended", obs)
        w.decisions.append(AlarmCleared(alarm.alert_id, w.patient, spec.name, alarm.priority, message, obs.value,
                                        obs.limit, w.clock, "condition_ended"))

    # -- commands -----------------------------------------------------------------------------------

    def _command(self, w: _Work, command: Command) -> None:
        if isinstance(command, Acknowledge):
            self._acknowledge(w, command)
        elif isinstance(command, Silence):
            self._silence(w, command)
        else:
            self._change_limits(w, command)

    @staticmethod
    def _find(w: _Work, alert_id: str) -> ActiveAlarm | None:
        return next((a for a in w.alarms.values() if a.alert_id == alert_id), None)

    def _acknowledge(self, w: _Work, cmd: Acknowledge) -> None:
        alarm = self._find(w, cmd.alert_id)
        if alarm is None:
            return w.reject("acknowledge", cmd.alert_id, "unknown_alert", "no active alarm has this id")
        if alarm.acknowledged:
            return w.reject("acknowledge", cmd.alert_id, "already_acknowledged", f"by {alarm.acknowledged_by}")
        w.decisions.append(AlarmAcknowledged(alarm.alert_id, w.patient, alarm.condition, alarm.priority, alarm.message,
                                             alarm.value, alarm.limit, w.clock, cmd.by, alarm.condition_present))
        if alarm.condition_present:
            w.alarms[alarm.condition] = replace(alarm, acknowledged_by=cmd.by, silenced_until=None)
            return None
        # A latched alarm whose condition has ended: acknowledging it is what ends it.
        del w.alarms[alarm.condition]
        w.decisions.append(AlarmCleared(alarm.alert_id, w.patient, alarm.condition, alarm.priority, alarm.message,
                                        alarm.value, alarm.limit, w.clock, "acknowledged"))
        return None

    def _silence(self, w: _Work, cmd: Silence) -> None:
        if not 0 < cmd.duration_s <= self.policy.max_silence_s:
            return w.reject("silence", cmd.alert_id, "invalid_silence",
                            f"duration_s must be > 0 and <= {self.policy.max_silence_s:g}, got {cmd.duration_s:g}")
        targets: Iterable[ActiveAlarm]
        if cmd.alert_id is not None:
            alarm = self._find(w, cmd.alert_id)
            if alarm is None:
                return w.reject("silence", cmd.alert_id, "unknown_alert", "no active alarm has this id")
            if alarm.acknowledged:
                return w.reject("silence", cmd.alert_id, "already_acknowledged", "an acknowledged alarm is silent")
            targets = [alarm]
        else:
            targets = [a for a in w.alarms.values() if not a.acknowledged]
            if not targets:
                return w.reject("silence", None, "no_active_alarm", "nothing to silence")
        until = w.clock + cmd.duration_s
        for a in sorted(targets, key=lambda a: self._order(a.condition)):
            w.alarms[a.condition] = replace(a, silenced_until=until)
            w.decisions.append(AlarmSilenced(a.alert_id, w.patient, a.condition, a.priority, a.message, a.value,
                                             a.limit, w.clock, cmd.by, until))
        return None

    def _change_limits(self, w: _Work, cmd: ChangeLimits) -> None:
        try:
            base = w.limits if cmd.care_area is None else default_limits(cmd.care_area)
            w.limits = base.changed(cmd.changes)
        except AlarmLimitsError as e:
            return w.reject("change_limits", None, "invalid_limits", str(e))
        w.decisions.append(AlarmLimitsChanged(w.patient, w.limits.to_dict(), cmd.by, w.clock))
        return None

    # -- escalation ---------------------------------------------------------------------------------

    def _order(self, condition: str) -> int:
        return self._rank.get(condition, -1)

    def _escalate(self, w: _Work) -> None:
        for condition in sorted(w.alarms, key=self._order):
            alarm = w.alarms[condition]
            if alarm.acknowledged:
                continue
            # Catch up on every level that fell due since the last step, each timed from the previous one.
            while alarm.escalation_level < self.policy.max_escalations:
                due = alarm.escalated_at + self.policy.escalate_after_s[alarm.priority]
                if w.clock < due - _EPS:
                    break
                waited = w.clock - alarm.raised_at
                previous = alarm.priority
                alarm = replace(alarm, priority=previous.raised(), escalation_level=alarm.escalation_level + 1,
                                escalated_at=due, silenced_until=None)
                message = f"{alarm.message}; unacknowledged for {waited:g} s"
                w.decisions.append(AlarmEscalated(alarm.alert_id, w.patient, condition, alarm.priority, message,
                                                  alarm.value, alarm.limit, w.clock, previous, alarm.escalation_level))
            w.alarms[condition] = alarm
