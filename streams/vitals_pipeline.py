"""From one accepted vitals message to the events it produces. Pure, so it is
unit-tested without a broker; the Faust agent in `streams.app` is a thin pump
around it.

Event ids are derived from the message's source ``(topic, partition, offset)``
and the event's index within that message, so re-processing a message after a
crash produces the same ids and the store keeps each event once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from detectors.threshold import AlarmCleared, AlarmRaised, ThresholdRule, ThresholdState
from event_store.events import NewEvent
from streams.vitals_codec import Vitals

__all__ = ["SourceRef", "event_id_for", "vitals_to_events", "EVENT_NAMESPACE"]

# Fixed namespace for uuid5 ids of derived events; changing it would break idempotency.
EVENT_NAMESPACE = uuid.UUID("6f1d3c0e-8a52-4d0b-9a57-5f3b8f0c2a11")


@dataclass(frozen=True, slots=True)
class SourceRef:
    topic: str
    partition: int
    offset: int

    def as_metadata(self) -> dict[str, object]:
        return {"source": {"topic": self.topic, "partition": self.partition, "offset": self.offset}}


def event_id_for(source: SourceRef, index: int) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE, f"{source.topic}:{source.partition}:{source.offset}:{index}")


def vitals_to_events(
    vitals: Vitals, source: SourceRef, state: ThresholdState, rule: ThresholdRule, *, first_index: int = 0
) -> tuple[ThresholdState, list[NewEvent]]:
    """VitalsObserved for every message, plus AlertRaised / AlertResolved when the
    heart-rate rule changes state. Event ids use indices from ``first_index`` on (a
    FHIR Bundle yields several readings from one message)."""
    stream_id = f"patient-{vitals.patient_id}"
    metadata = source.as_metadata() | {"device_id": vitals.device_id}
    events = [
        NewEvent(
            event_id=event_id_for(source, first_index),
            stream_id=stream_id,
            event_type="VitalsObserved",
            occurred_at=vitals.occurred_at,
            payload={"patient_id": vitals.patient_id, **vitals.values},
            metadata=metadata,
        )
    ]
    alert_id = str(event_id_for(source, first_index + 1))
    new_state, decisions = rule.evaluate(state, vitals.get("hr"), alert_id)
    for decision in decisions:
        index = first_index + len(events)
        if isinstance(decision, AlarmRaised):
            event_type = "AlertRaised"
            payload: dict[str, object] = {
                "alert_id": decision.alert_id, "patient_id": vitals.patient_id, "priority": decision.priority,
                "condition": decision.condition, "value": decision.value, "limit": decision.limit,
                "message": decision.message,
            }
        elif isinstance(decision, AlarmCleared):
            event_type = "AlertResolved"
            payload = {"alert_id": decision.alert_id, "patient_id": vitals.patient_id,
                       "condition": decision.condition, "value": decision.value}
        events.append(NewEvent(
            event_id=event_id_for(source, index), stream_id=stream_id, event_type=event_type,
            occurred_at=vitals.occurred_at, payload=payload, metadata=metadata,
        ))
    return new_state, events
