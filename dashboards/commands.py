"""Care-team commands sent over the dashboard socket: parse, authorise, decide, append.

Two layers, as in the rest of Vigil. The top half is pure: `parse_command` turns a
client message into a typed command or raises `Rejected`; `decide_alert`,
`decide_limits`, `note_event` and `access_event` turn a command plus the state it
applies to into the event to append (or raise `Rejected`). `CommandHandler` does the
I/O: it reads the state, calls those functions and appends with optimistic
concurrency.

Streams and concurrency:

- ``acknowledge`` / ``silence`` / ``escalate`` append to ``alert-<alert_id>`` with
  ``expected_version`` = the version just read. Two nurses acknowledging at once
  both read version n and both try n: the store takes one, the other gets
  `ConcurrencyConflict`, re-reads, finds the acknowledgement and is told
  ``already_acknowledged`` (with who). Other commands that lose a race decide again
  on the new state; after `CommandHandler.attempts` lost races the answer is
  ``conflict_resolved`` (reload and retry).
- An acknowledgement's event id is derived from the alert id (`acknowledgement_id`),
  so the log holds at most one per alarm whatever the version check does: the
  store's event-id key refuses a second, and returns the first's position instead.
  The handler reads that event back and answers ``already_acknowledged`` unless it
  is its own. (Alert ids are unique per alarm episode, `detectors.alarms`.)
- Within one gateway, commands on the same stream are decided one at a time, so
  they do not race each other at all; the checks above are for several gateways.
- ``set_limits`` appends the *whole* resulting limits to ``limits-<patient_id>``
  with the same check, so two changes made at once both apply, one on top of the
  other, instead of the second silently undoing the first. The limits include the
  NEWS2 SpO2 scale (``{"spo2_scale": 2}`` for a patient a clinician has given a
  target of 88-92 %), so that choice is a person's, audited like any limit.
- ``note`` appends to ``patient-<patient_id>``; ``view_patient`` appends
  ``RecordAccessed`` to ``access-<user>`` *before* reading, so no data leaves
  without its audit record.

Every event's metadata carries ``actor``, ``role`` and the client's ``request_id``.
Event ids are random: a person clicking twice means it twice, and a client's
request ids are not unique enough to derive ids from.

Error codes (``Rejected.code``): forbidden, unknown_alert, already_acknowledged,
not_open, invalid, conflict_resolved, rate_limited (the last is the gateway's).
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from dashboards.auth import Action, may, may_see
from dashboards.tokens import Claims
from dashboards.wards import AUDIT_STREAM_KIND, AlertInfo, WardView
from detectors.alarm_limits import AlarmLimits, AlarmLimitsError
from event_store.events import JsonObject, NewEvent, RecordedEvent
from event_store.exceptions import ConcurrencyConflict

__all__ = [
    "ErrorCode", "Rejected", "Acknowledge", "Silence", "Escalate", "SetLimits", "AddNote", "ViewPatient", "Command",
    "parse_command", "request_id_of", "action_of", "decide_alert", "decide_limits", "note_event", "access_event",
    "CommandStore", "CommandHandler", "MAX_NOTE", "RECENT_EVENTS", "acknowledgement_id",
]

ErrorCode = Literal["forbidden", "unknown_alert", "already_acknowledged", "not_open", "invalid",
                    "conflict_resolved", "rate_limited"]

MAX_NOTE = 2000
MAX_REASON = 500
RECENT_EVENTS = 200
SILENCE_RANGE_S = (1.0, 600.0)
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")  # the part after "alert-" / "patient-" in a stream id
_ACK_NAMESPACE = uuid.UUID("0b7f3a52-6c1e-4d8a-9f21-5e4c3b2a1d09")  # fixed: changing it allows a second ack per alarm


class Rejected(Exception):
    """A command that changed nothing; ``code`` is one of `ErrorCode`, ``detail`` says why."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code: ErrorCode = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Acknowledge:
    alert_id: str


@dataclass(frozen=True, slots=True)
class Silence:
    alert_id: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class Escalate:
    alert_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class SetLimits:
    patient_id: str
    limits: Mapping[str, Any]
    """The changes, as `AlarmLimits.changed` takes them."""


@dataclass(frozen=True, slots=True)
class AddNote:
    patient_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ViewPatient:
    patient_id: str


AlertCommand = Acknowledge | Silence | Escalate
Command = Acknowledge | Silence | Escalate | SetLimits | AddNote | ViewPatient

_ACTIONS: Mapping[type[Command], Action] = {
    Acknowledge: "acknowledge", Silence: "silence", Escalate: "escalate", SetLimits: "set_limits",
    AddNote: "note", ViewPatient: "view_patient",
}


def action_of(command: Command) -> Action:
    return _ACTIONS[type(command)]


def request_id_of(message: object) -> str | int | None:
    """The client's ``request_id`` to echo back: a string (at most 128 characters) or
    an integer; anything else is dropped rather than echoed."""
    rid = message.get("request_id") if isinstance(message, dict) else None
    if isinstance(rid, str) and len(rid) <= 128:
        return rid
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None


def _ident(msg: Mapping[str, Any], name: str) -> str:
    value = msg.get(name)
    if not isinstance(value, str) or not _ID.match(value):
        raise Rejected("invalid", f"{name} must be 1-128 letters, digits or _.:-")
    return value


def _text(msg: Mapping[str, Any], name: str, limit: int) -> str:
    value = msg.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Rejected("invalid", f"{name} must be a non-empty string")
    if len(value) > limit:
        raise Rejected("invalid", f"{name} has {len(value)} characters; at most {limit}")
    return value.strip()


def _duration(msg: Mapping[str, Any]) -> float:
    value = msg.get("duration_s")
    lo, hi = SILENCE_RANGE_S
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise Rejected("invalid", f"duration_s must be a number of seconds from {lo:g} to {hi:g}")
    return float(value)


def parse_command(message: Mapping[str, Any]) -> Command:
    """The command in a ``{"type": "command", "command": ...}`` message; raises
    `Rejected` ("invalid") naming the first bad field."""
    kind = message.get("command")
    if kind == "acknowledge":
        return Acknowledge(_ident(message, "alert_id"))
    if kind == "silence":
        return Silence(_ident(message, "alert_id"), _duration(message))
    if kind == "escalate":
        return Escalate(_ident(message, "alert_id"), _text(message, "reason", MAX_REASON))
    if kind == "set_limits":
        limits = message.get("limits")
        if not isinstance(limits, dict) or not limits:
            raise Rejected("invalid", "limits must be a non-empty JSON object, e.g. {\"hr\": {\"high\": 120}}")
        return SetLimits(_ident(message, "patient_id"), limits)
    if kind == "note":
        return AddNote(_ident(message, "patient_id"), _text(message, "text", MAX_NOTE))
    if kind == "view_patient":
        return ViewPatient(_ident(message, "patient_id"))
    raise Rejected("invalid", "command must be one of acknowledge, silence, escalate, set_limits, note, view_patient")


def acknowledgement_id(alert_id: str) -> uuid.UUID:
    """The event id of an alarm's acknowledgement: one per alarm, whoever sends it."""
    return uuid.uuid5(_ACK_NAMESPACE, alert_id)


def _metadata(actor: Claims, request_id: str | int | None) -> JsonObject:
    return {"actor": actor.user, "role": actor.role, "request_id": request_id}


def _acknowledged_by(alert: AlertInfo, history: Sequence[RecordedEvent]) -> str | None:
    for event in history:
        if event.event_type == "AlertAcknowledged":
            by = event.payload.get("by")
            return by if isinstance(by, str) else "unknown"
    return alert.acknowledged_by


def decide_alert(command: AlertCommand, alert: AlertInfo, history: Sequence[RecordedEvent], actor: Claims,
                 now: datetime, request_id: str | int | None = None) -> NewEvent:
    """The event for ``command`` on ``alert``, given the ``alert-<id>`` stream's
    ``history`` (authoritative for acknowledgements). Pure."""
    if not alert.open:
        raise Rejected("not_open", f"alert {alert.alert_id} is resolved")
    base: JsonObject = {"alert_id": alert.alert_id, "patient_id": alert.patient_id, "by": actor.user}
    event_id = uuid.uuid4()
    if isinstance(command, Acknowledge):
        by = _acknowledged_by(alert, history)
        if by is not None:
            raise Rejected("already_acknowledged", f"alert {alert.alert_id} was acknowledged by {by}")
        kind, payload, event_id = "AlertAcknowledged", base | {"role": actor.role}, acknowledgement_id(alert.alert_id)
    elif isinstance(command, Silence):
        until = now + timedelta(seconds=command.duration_s)
        kind, payload = "AlertSilenced", base | {"until": until.isoformat(), "duration_s": command.duration_s}
    else:
        kind, payload = "AlertEscalated", base | {"reason": command.reason, "manual": True}
    return NewEvent(event_id, f"alert-{alert.alert_id}", kind, now, payload, metadata=_metadata(actor, request_id))


def decide_limits(command: SetLimits, history: Sequence[RecordedEvent], default: AlarmLimits, actor: Claims,
                  now: datetime, request_id: str | int | None = None) -> NewEvent:
    """``AlarmLimitsChanged`` with the patient's whole new limits: ``command.limits``
    applied to the last limits in the ``limits-<patient_id>`` ``history`` (or to
    ``default``), validated by `AlarmLimits.changed`. Pure."""
    current = default
    for event in reversed(history):
        if event.event_type == "AlarmLimitsChanged":
            try:
                current = AlarmLimits.from_dict(event.payload.get("limits"))
            except AlarmLimitsError as e:  # written by this module, so a bug or tampering; do not build on it
                raise Rejected("invalid", f"stored limits at position {event.position} are unreadable: {e}") from e
            break
    try:
        changed = current.changed(command.limits)
    except AlarmLimitsError as e:
        raise Rejected("invalid", str(e)) from e
    payload = {"patient_id": command.patient_id, "limits": changed.to_dict(), "changes": dict(command.limits),
               "by": actor.user}
    return NewEvent(uuid.uuid4(), f"limits-{command.patient_id}", "AlarmLimitsChanged", now, payload,
                    metadata=_metadata(actor, request_id))


def note_event(command: AddNote, actor: Claims, now: datetime, request_id: str | int | None = None) -> NewEvent:
    payload = {"patient_id": command.patient_id, "text": command.text, "by": actor.user}
    return NewEvent(uuid.uuid4(), f"patient-{command.patient_id}", "NoteAdded", now, payload,
                    metadata=_metadata(actor, request_id))


def access_event(actor: Claims, what: str, patient_id: str | None, now: datetime,
                 request_id: str | int | None = None, **details: Any) -> NewEvent:
    """``RecordAccessed`` {patient_id, by, role, what, ...details} on ``access-<user>``,
    the stream ``vigil audit replay`` also writes its reads to."""
    payload = {"patient_id": patient_id, "by": actor.user, "role": actor.role, "what": what, **details}
    return NewEvent(uuid.uuid4(), f"{AUDIT_STREAM_KIND}-{actor.user}", "RecordAccessed", now, payload,
                    metadata=_metadata(actor, request_id))


class CommandStore(Protocol):
    """What commands need from the event store."""

    async def append(self, stream_id: str, events: Sequence[NewEvent],
                     expected_version: int | None = None) -> list[int]: ...
    async def read_stream(self, stream_id: str, from_version: int = 1,
                          limit: int | None = None) -> list[RecordedEvent]: ...
    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]: ...
    async def last_position(self) -> int: ...


class CommandHandler:
    """Runs commands for connected users against ``store`` and ``view``.

    ``wait_for_view(position)`` returns once ``view`` has applied the log up to
    ``position`` (False on timeout). It is used when a command names an alarm or
    patient the view does not know yet: the client may have read it from the store
    (catch-up, ``view_patient``) a moment before the gateway's own follower did.
    """

    attempts = 3
    """Lost optimistic-concurrency races before answering ``conflict_resolved``."""

    def __init__(self, store: CommandStore, view: WardView, default_limits: AlarmLimits,
                 wait_for_view: Callable[[int], Awaitable[bool]], clock: Callable[[], datetime]) -> None:
        self._store, self._view, self._default = store, view, default_limits
        self._wait_for_view, self._clock = wait_for_view, clock
        # One lock per stream being decided on; gone once no command holds or waits for it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def handle(self, command: Command, actor: Claims, request_id: str | int | None) -> JsonObject:
        """The ``command_result`` message for ``command`` (``ok`` false on any `Rejected`)."""
        reply: JsonObject = {"type": "command_result", "request_id": request_id}
        try:
            result = await self._run(command, actor, request_id)
        except Rejected as r:
            return reply | {"ok": False, "error": r.code, "detail": r.detail}
        return reply | {"ok": True} | result

    async def _run(self, command: Command, actor: Claims, request_id: str | int | None) -> JsonObject:
        action = action_of(command)
        if not may(actor.role, action):
            raise Rejected("forbidden", f"the {actor.role} role may not {action.replace('_', ' ')}")
        if isinstance(command, Acknowledge | Silence | Escalate):
            return await self._alert_command(command, actor, request_id)
        pid = command.patient_id
        if not self._view.knows_patient(pid) and not await self._caught_up():
            raise Rejected("invalid", "the gateway is behind the log; retry in a moment")
        if not self._view.knows_patient(pid):
            raise Rejected("invalid", f"unknown patient {pid}")
        self._check_ward(actor, pid)
        if isinstance(command, SetLimits):
            return await self._append_checked(
                f"limits-{pid}", lambda history: decide_limits(command, history, self._default, actor, self._clock(),
                                                               request_id))
        if isinstance(command, AddNote):
            return await self._append(note_event(command, actor, self._clock(), request_id))
        return await self._view_patient(command.patient_id, actor, request_id)

    async def _caught_up(self) -> bool:
        return await self._wait_for_view(await self._store.last_position())

    def _check_ward(self, actor: Claims, patient_id: str) -> None:
        if not may_see(actor, self._view.ward_of(patient_id)):
            raise Rejected("forbidden", f"patient {patient_id} is not in your wards")

    async def _alert_command(self, command: AlertCommand, actor: Claims, request_id: str | int | None) -> JsonObject:
        aid = command.alert_id
        if self._view.alert(aid) is None:
            await self._caught_up()
        found = self._view.alert(aid)
        if found is None:
            raise Rejected("unknown_alert", f"no alert {aid}")
        self._check_ward(actor, found.patient_id)

        def decide(history: Sequence[RecordedEvent]) -> NewEvent:
            # The view moves on while we wait for the store; always decide on its newest state.
            return decide_alert(command, self._view.alert(aid) or found, history, actor, self._clock(), request_id)

        return await self._append_checked(f"alert-{aid}", decide)

    async def _append_checked(self, stream_id: str, decide: Callable[[Sequence[RecordedEvent]], NewEvent]) -> JsonObject:
        """Read ``stream_id``, decide, append at the version read; on a lost race, again."""
        lock = self._locks.get(stream_id)
        if lock is None:
            lock = self._locks[stream_id] = asyncio.Lock()
        async with lock:
            for _ in range(self.attempts):
                history = await self._store.read_stream(stream_id)
                event = decide(history)
                try:
                    (position,) = await self._store.append(stream_id, [event], expected_version=len(history))
                except ConcurrencyConflict:
                    continue
                await self._check_own(event, position)
                return {"event_id": str(event.event_id), "position": position}
        raise Rejected("conflict_resolved", f"{stream_id} changed {self.attempts} times while this command was "
                                            "being decided; reload and try again")

    async def _check_own(self, event: NewEvent, position: int) -> None:
        """An event with a derived id (an acknowledgement) may already have been stored
        by someone else, in which case the append returned *their* position."""
        if event.event_type != "AlertAcknowledged":
            return
        stored = await self._store.read_all(position - 1, 1)
        if not stored or (stored[0].payload, stored[0].metadata) != (event.payload, event.metadata):
            by = stored[0].payload.get("by", "unknown") if stored else "unknown"
            raise Rejected("already_acknowledged", f"alert {event.payload['alert_id']} was acknowledged by {by}")

    async def _append(self, event: NewEvent) -> JsonObject:
        (position,) = await self._store.append(event.stream_id, [event])
        return {"event_id": str(event.event_id), "position": position}

    async def _view_patient(self, patient_id: str, actor: Claims, request_id: str | int | None) -> JsonObject:
        audit = access_event(actor, "view_patient", patient_id, self._clock(), request_id,
                             events_requested=RECENT_EVENTS)
        result = await self._append(audit)  # first: no disclosure without its audit record
        start = max(1, self._view.patient_version(patient_id) - RECENT_EVENTS + 1)
        events = (await self._store.read_stream(f"patient-{patient_id}", start))[-RECENT_EVENTS:]
        return result | {"patient_id": patient_id, "ward": self._view.ward_of(patient_id),
                         "bed": self._view.bed_of(patient_id), "events": [e.to_json() for e in events]}
