"""From one accepted vitals reading to the events it produces. Pure, so it is
unit-tested without a broker; the Faust agents in `streams.app` are thin pumps
around it.

Each reading gives ``VitalsObserved``; a ``News2Scored`` when the reading carries
everything NEWS2 needs (respiration, SpO2, oxygen, systolic pressure, pulse,
consciousness, temperature); and the alarm engine's decisions (`detectors.alarms`)
as ``AlertRaised`` / ``AlertEscalated`` / ``AlertResolved``. Device time drives the
engine, so re-processing gives the same decisions.

Event ids are derived from the message's source ``(topic, partition, offset)``
and the event's index within that message, so re-processing a message after a
crash produces the same ids and the store keeps each event once.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from detectors.alarm_decisions import Decision
from detectors.alarm_inputs import AlarmInputs, VitalsInput
from detectors.alarm_state import AlarmState
from detectors.alarms import AlarmEngine
from detectors.news2 import Acvpu, News2Observation, News2Result, score_news2
from detectors.vital_alarms import spo2_reading
from event_store.events import NewEvent
from streams.vitals_codec import Vitals

__all__ = ["SourceRef", "event_id_for", "vitals_to_events", "decision_event", "VitalsPatient", "news2_of",
           "EVENT_NAMESPACE", "EVENT_TYPES"]

# Fixed namespace for uuid5 ids of derived events; changing it would break idempotency.
EVENT_NAMESPACE = uuid.UUID("6f1d3c0e-8a52-4d0b-9a57-5f3b8f0c2a11")

EVENT_TYPES = {
    "AlarmRaised": "AlertRaised", "AlarmEscalated": "AlertEscalated", "AlarmCleared": "AlertResolved",
    "AlarmAcknowledged": "AlertAcknowledged", "AlarmSilenced": "AlertSilenced",
    "AlarmLimitsChanged": "AlarmLimitsChanged", "CommandRejected": "CommandRejected",
}
"""Engine decision -> event type in the log."""


@dataclass(frozen=True, slots=True)
class SourceRef:
    topic: str
    partition: int
    offset: int

    def as_metadata(self) -> dict[str, object]:
        return {"source": {"topic": self.topic, "partition": self.partition, "offset": self.offset}}


_NAMESPACE_SHA1 = hashlib.sha1(EVENT_NAMESPACE.bytes)
_VERSION_5 = (5 << 76) | (0x8000 << 48)
_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))


def event_id_for(source: SourceRef, index: int) -> uuid.UUID:
    """``uuid5(EVENT_NAMESPACE, "topic:partition:offset:index")``; computed as `uuid.uuid5`
    does, from a SHA-1 of the namespace hashed once (two ids per message add up)."""
    h = _NAMESPACE_SHA1.copy()
    h.update(f"{source.topic}:{source.partition}:{source.offset}:{index}".encode())
    return uuid.UUID(int=(int.from_bytes(h.digest()[:16], "big") & _VERSION_MASK) | _VERSION_5)


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per call


@dataclass(slots=True)
class VitalsPatient:
    """Per patient and source: the engine's state plus the stream bookkeeping."""

    alarms: AlarmState
    offset: int = -1
    """Source offset of the last message applied (a restarted worker skips up to it)."""
    last_ts_ms: int = -1
    """Device time of the last reading; an older or equal one is stale."""
    commands_through: int = 0
    """Log position of the last care-team command given to ``alarms`` (`streams.commands`)."""

    def encode(self) -> bytes:
        return _COMPACT.encode({"offset": self.offset, "last_ts_ms": self.last_ts_ms,
                                "alarms": self.alarms.to_dict(), "commands_through": self.commands_through}).encode()

    @classmethod
    def decode(cls, data: bytes) -> VitalsPatient:
        doc = json.loads(data)
        return cls(AlarmState.from_dict(doc["alarms"]), doc["offset"], doc["last_ts_ms"],
                   doc.get("commands_through", 0))


def news2_of(vitals: Vitals, spo2_scale: int = 1) -> News2Result | None:
    """NEWS2 when the reading has every parameter, else None; SpO2 on the patient's
    scale (`detectors.alarm_limits.AlarmLimits.spo2_scale`). A probe-off SpO2 is no
    reading (`detectors.vital_alarms.spo2_reading`), not a saturation scoring 3, so
    such a reading has no score either."""
    v = vitals.values
    spo2 = spo2_reading(v.get("spo2"))
    if (spo2 is None or vitals.oxygen is None or vitals.acvpu is None
            or any(v.get(k) is None for k in ("rr", "sbp", "hr", "temp"))):
        return None
    return score_news2(News2Observation(rr=v["rr"], spo2=spo2, spo2_scale=spo2_scale, oxygen=vitals.oxygen, sbp=v["sbp"],
                                        hr=v["hr"], acvpu=Acvpu(vitals.acvpu), temp=v["temp"]))


def decision_event(decision: Decision, event_id: uuid.UUID, stream_id: str, occurred_at: datetime,
                   metadata: dict[str, object]) -> NewEvent:
    """One engine decision as an event; the payload is the decision's own fields."""
    payload = decision.to_dict()
    kind = payload.pop("type")
    payload["patient_id"] = payload.pop("patient")
    return NewEvent(event_id=event_id, stream_id=stream_id, event_type=EVENT_TYPES[kind], occurred_at=occurred_at,
                    payload=payload, metadata=metadata)


def vitals_to_events(
    vitals: Vitals, source: SourceRef, state: AlarmState, engine: AlarmEngine, *, first_index: int = 0
) -> tuple[AlarmState, list[NewEvent]]:
    """VitalsObserved, News2Scored when complete, and the alarm decisions. Event ids
    use indices from ``first_index`` on (a FHIR Bundle yields several readings)."""
    stream_id = f"patient-{vitals.patient_id}"
    metadata = source.as_metadata() | {"device_id": vitals.device_id}
    events: list[NewEvent] = []

    def next_id() -> uuid.UUID:
        return event_id_for(source, first_index + len(events))

    observed: dict[str, object] = {"patient_id": vitals.patient_id, **vitals.values}
    if vitals.oxygen is not None:
        observed["oxygen"] = vitals.oxygen
    if vitals.acvpu is not None:
        observed["acvpu"] = vitals.acvpu
    events.append(NewEvent(event_id=next_id(), stream_id=stream_id, event_type="VitalsObserved",
                           occurred_at=vitals.occurred_at, payload=observed, metadata=metadata))
    news2 = news2_of(vitals, state.limits.spo2_scale)
    if news2 is not None:
        events.append(NewEvent(event_id=next_id(), stream_id=stream_id, event_type="News2Scored",
                               occurred_at=vitals.occurred_at,
                               payload={"patient_id": vitals.patient_id, **news2.to_json()}, metadata=metadata))
    new_state, decisions = engine.step(state, AlarmInputs(vitals=VitalsInput(vitals.values), news2=news2),
                                       now=vitals.occurred_at.timestamp())
    for decision in decisions:
        events.append(decision_event(decision, next_id(), stream_id, vitals.occurred_at, metadata))
    return new_state, events
