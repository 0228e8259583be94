"""The care team's commands, as the dashboard appended them to the log, turned into
alarm-engine inputs for the patients this worker holds.

The gateway validates a command and appends it (``AlertAcknowledged``,
``AlertSilenced``, ``AlarmLimitsChanged``) with the actor; the worker follows the
log and gives the same command to the alarm engine of each of the patient's
sources (device vitals, FHIR vitals, ECG leads), so that an acknowledged alarm stops
escalating, a silenced one stays quiet, and new limits govern the next reading. An
engine that does not know the alarm (another source raised it) rejects the command
quietly. Only the engine's *consequences* are logged (a latched alarm cleared by its
acknowledgement): the command itself is already in the log, once, from the gateway.

Each patient state records the log position of the last command it was given
(``commands_through``, in its checkpoint). The follower starts at the log's head, so
a state that comes into a worker's memory (restored after a crash, a restart or a
rebalance, or new) is first caught up (`streams.command_follower`): the commands in its
``limits-<patient>`` stream and in the ``alert-<id>`` stream of each of its alarms,
after its position, are given to it in log order. So a command given while no
worker held the patient, or after its last checkpoint, still reaches it, and none
is given twice.

Limit: a command is given when the worker reads it, not at its place in the device
data. After a crash, the worker replays the input since the checkpoint; a command
for an alarm first raised in that replayed stretch finds no alarm when the state is
caught up (the replay raises it again, unacknowledged).
"""

from __future__ import annotations

import uuid

from detectors.alarm_decisions import AlarmCleared, Decision
from detectors.alarm_inputs import Acknowledge, AlarmInputs, ChangeLimits, Command, Silence
from detectors.alarm_state import AlarmState
from detectors.alarms import AlarmEngine
from event_store.events import NewEvent, RecordedEvent
from streams.vitals_pipeline import EVENT_NAMESPACE, decision_event

__all__ = ["COMMAND_EVENTS", "command_of", "apply_command"]

COMMAND_EVENTS = frozenset({"AlertAcknowledged", "AlertSilenced", "AlarmLimitsChanged"})


def command_of(event: RecordedEvent) -> tuple[str, Command] | None:
    """``(patient_id, engine command)`` for a person's command event, else None."""
    if event.event_type not in COMMAND_EVENTS:
        return None
    p = event.payload
    patient, by = p.get("patient_id"), p.get("by")
    if not isinstance(patient, str) or not isinstance(by, str):
        return None  # not from the gateway (the engine's own decisions carry no "by")
    if event.event_type == "AlertAcknowledged" and isinstance(p.get("alert_id"), str):
        return patient, Acknowledge(p["alert_id"], by)
    if event.event_type == "AlertSilenced" and isinstance(p.get("alert_id"), str):
        seconds = p.get("duration_s")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
            return None
        return patient, Silence(p["alert_id"], float(seconds), by)
    if event.event_type == "AlarmLimitsChanged" and isinstance(p.get("limits"), dict):
        changes = {k: v for k, v in p["limits"].items() if k != "care_area"}
        return patient, ChangeLimits(changes, by)
    return None


def apply_command(engine: AlarmEngine, state: AlarmState, command: Command, source: RecordedEvent, key: str
                  ) -> tuple[AlarmState, list[NewEvent]]:
    """The engine's new state and the events its consequences produce (ids derived
    from the command event and the state's key, so re-applying stores nothing twice)."""
    new_state, decisions = engine.step(state, AlarmInputs(commands=[command]), now=source.occurred_at.timestamp())
    logged: list[Decision] = [d for d in decisions if isinstance(d, AlarmCleared)]
    events = []
    for i, decision in enumerate(logged):
        event_id = uuid.uuid5(EVENT_NAMESPACE, f"command:{source.event_id}:{key}:{i}")
        metadata: dict[str, object] = {"causation_id": str(source.event_id), "actor": command.by}
        events.append(decision_event(decision, event_id, f"patient-{decision.patient}", source.occurred_at, metadata))
    return new_state, events
