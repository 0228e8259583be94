"""Where patients are, and which alarms exist: the gateway's in-memory view of the log.

There is no patient registry service yet, so admissions are events like everything
else: `admit_patient` appends ``PatientAdmitted`` {patient_id, ward, bed} to the
patient's stream (a later admission is a transfer). A patient never admitted
belongs to a configurable default ward (``ward-1`` in the demo), or to no ward.

`WardView` is a projection kept in memory by the gateway: it is rebuilt from the
whole log when the gateway starts and then fed every event the gateway follows,
in position order. It answers two questions that must be quick, because they are
asked for every event pushed and every command:

- `WardView.scope_of`: which ward an event belongs to, for filtering the feed
  (`dashboards.auth.may_see`);
- `WardView.alert`: an alarm's patient and whether it is still open, for
  validating commands (`dashboards.commands`).

It is rebuilt rather than stored because it is small (one entry per patient and
per alarm; vitals only bump a counter) and because reading it from the same log the
gateway pushes keeps both consistent by construction. Pure: no I/O here except in
`admit_patient`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from dashboards.auth import AUDIT_ONLY
from dashboards.tokens import valid_name
from event_store.events import NewEvent, RecordedEvent

__all__ = ["Appender", "AlertInfo", "WardView", "admission_event", "admit_patient", "patient_of", "AUDIT_STREAM_KIND"]

AUDIT_STREAM_KIND = "access"
"""``access-<user>`` streams hold RecordAccessed events: the audit trail, all-ward roles only."""


class Appender(Protocol):
    async def append(self, stream_id: str, events: Sequence[NewEvent],
                     expected_version: int | None = None) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class AlertInfo:
    alert_id: str
    patient_id: str
    condition: str
    priority: str
    open: bool
    """False once AlertResolved is in the log."""
    acknowledged_by: str | None
    """Who acknowledged it, as far as this view has seen (the alert's own stream is authoritative)."""
    raised_position: int


def patient_of(event: RecordedEvent) -> str | None:
    """The patient an event is about: the id of a ``patient-<id>`` stream, else the
    payload's ``patient_id`` (alert and limit streams carry it), else None."""
    kind, _, rest = event.stream_id.partition("-")
    if kind == "patient":
        return rest
    pid = event.payload.get("patient_id")
    return pid if isinstance(pid, str) and pid else None


def admission_event(patient_id: str, ward: str, bed: str | None, *, by: str, now: datetime) -> NewEvent:
    """``PatientAdmitted`` for ``patient_id`` into ``ward`` (and ``bed``); raises
    ValueError (`event_store.exceptions.InvalidEvent` for the stream id) on bad input."""
    if not valid_name(ward):
        raise ValueError(f"ward: {ward!r} is not a ward name (letters, digits or _.:-)")
    if bed is not None and (not isinstance(bed, str) or not 0 < len(bed) <= 32):
        raise ValueError(f"bed: {bed!r} must be 1-32 characters or None")
    return NewEvent(uuid.uuid4(), f"patient-{patient_id}", "PatientAdmitted", now,
                    {"patient_id": patient_id, "ward": ward, "bed": bed}, metadata={"actor": by})


async def admit_patient(store: Appender, patient_id: str, ward: str, bed: str | None = None, *,
                        by: str = "system", now: datetime | None = None) -> int:
    """Append the admission (or transfer) of ``patient_id`` to ``ward``; return its position.
    Every gateway following the log moves the patient's events to the new ward's
    dashboards from that position on."""
    event = admission_event(patient_id, ward, bed, by=by, now=now or datetime.now(UTC))
    (position,) = await store.append(event.stream_id, [event])
    return position


class WardView:
    """Patients' wards, patient stream versions and alarms, from events applied in
    position order (`apply` ignores an event at or below `position`)."""

    def __init__(self, default_ward: str | None) -> None:
        self.default_ward = default_ward
        self.position = 0
        self._wards: dict[str, tuple[str, str | None]] = {}
        self._versions: dict[str, int] = {}
        self._alerts: dict[str, AlertInfo] = {}

    def apply(self, event: RecordedEvent) -> None:
        if event.position <= self.position:
            return
        self.position = event.position
        kind, _, pid = event.stream_id.partition("-")
        if kind == "patient":
            self._versions[pid] = max(self._versions.get(pid, 0), event.stream_version)
        handler = _HANDLERS.get(event.event_type)
        if handler is not None:
            handler(self, event)

    def ward_of(self, patient_id: str) -> str | None:
        """The ward of the patient's latest admission, else the default ward."""
        admitted = self._wards.get(patient_id)
        return admitted[0] if admitted else self.default_ward

    def bed_of(self, patient_id: str) -> str | None:
        admitted = self._wards.get(patient_id)
        return admitted[1] if admitted else None

    def knows_patient(self, patient_id: str) -> bool:
        """True once any event of the patient's stream has been applied."""
        return patient_id in self._versions

    def patient_version(self, patient_id: str) -> int:
        """The patient stream's version as of `position` (0: no events seen)."""
        return self._versions.get(patient_id, 0)

    def alert(self, alert_id: str) -> AlertInfo | None:
        return self._alerts.get(alert_id)

    def scope_of(self, event: RecordedEvent) -> str | None:
        """The ward whose dashboards may receive ``event``, or `AUDIT_ONLY`."""
        if event.stream_id.partition("-")[0] == AUDIT_STREAM_KIND:
            return AUDIT_ONLY
        pid = patient_of(event)
        return AUDIT_ONLY if pid is None else self.ward_of(pid)

    # One method per event type that changes the view; anything else only moves `position`.

    def _admitted(self, event: RecordedEvent) -> None:
        pid, ward, bed = patient_of(event), event.payload.get("ward"), event.payload.get("bed")
        if pid is not None and isinstance(ward, str) and valid_name(ward):
            self._wards[pid] = (ward, bed if isinstance(bed, str) else None)

    def _raised(self, event: RecordedEvent) -> None:
        p = event.payload
        aid, pid = p.get("alert_id"), patient_of(event)
        if isinstance(aid, str) and aid and pid is not None:
            self._alerts[aid] = AlertInfo(aid, pid, str(p.get("condition", "")), str(p.get("priority", "")),
                                          open=True, acknowledged_by=None, raised_position=event.position)

    def _known(self, event: RecordedEvent) -> AlertInfo | None:
        aid = event.payload.get("alert_id")
        return self._alerts.get(aid) if isinstance(aid, str) else None

    def _escalated(self, event: RecordedEvent) -> None:
        alert, priority = self._known(event), event.payload.get("priority")
        if alert is not None and isinstance(priority, str):  # a manual escalation has a reason, no new priority
            self._alerts[alert.alert_id] = replace(alert, priority=priority)

    def _resolved(self, event: RecordedEvent) -> None:
        alert = self._known(event)
        if alert is not None:
            self._alerts[alert.alert_id] = replace(alert, open=False)

    def _acknowledged(self, event: RecordedEvent) -> None:
        alert, by = self._known(event), event.payload.get("by")
        if alert is not None:
            self._alerts[alert.alert_id] = replace(alert, acknowledged_by=by if isinstance(by, str) else "unknown")


_HANDLERS = {
    "PatientAdmitted": WardView._admitted,
    "AlertRaised": WardView._raised,
    "AlertEscalated": WardView._escalated,
    "AlertResolved": WardView._resolved,
    "AlertAcknowledged": WardView._acknowledged,
}
