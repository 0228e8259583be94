"""Dashboard commands and the policy around them: parsing, the roles matrix, ward
scoping (`dashboards.wards`), rate limiting, the pure decisions, and `CommandHandler`
on the in-memory recorder (a real backend, not a mock)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dashboards.auth import ACTIONS, Action, may, may_see
from dashboards.commands import (
    Acknowledge, AddNote, CommandHandler, Escalate, Rejected, SetLimits, Silence, ViewPatient, access_event,
    acknowledgement_id, decide_alert, decide_limits, parse_command, request_id_of,
)
from dashboards.ratelimit import TokenBucket
from dashboards.tokens import Claims, Role
from dashboards.wards import AlertInfo, WardView, admission_event
from detectors.alarm_inputs import ChangeLimits
from detectors.alarm_limits import AlarmLimits, default_limits
from event_store.events import NewEvent, RecordedEvent
from event_store.memory import MemoryRecorder
from streams.commands import command_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def who(role: Role = "nurse", wards: tuple[str, ...] = ("ward-1",), user: str = "n1") -> Claims:
    return Claims(user, role, wards, 0, 2**31)


def recorded(position: int, stream_id: str, event_type: str, payload: dict[str, Any], version: int = 1) -> RecordedEvent:
    return RecordedEvent(position, uuid.uuid4(), stream_id, version, event_type, 1, T0, T0, payload, {})


def raised(position: int, alert_id: str = "a1", patient_id: str = "p1") -> RecordedEvent:
    return recorded(position, f"patient-{patient_id}", "AlertRaised",
                    {"alert_id": alert_id, "patient_id": patient_id, "condition": "hr_high", "priority": "medium"})


OPEN = AlertInfo("a1", "p1", "hr_high", "medium", open=True, acknowledged_by=None, raised_position=1)


# Parsing


@pytest.mark.parametrize(("message", "expected"), [
    ({"command": "acknowledge", "alert_id": "a-1"}, Acknowledge("a-1")),
    ({"command": "silence", "alert_id": "a1", "duration_s": 120}, Silence("a1", 120.0)),
    ({"command": "escalate", "alert_id": "a1", "reason": "  patient grey  "}, Escalate("a1", "patient grey")),
    ({"command": "set_limits", "patient_id": "p1", "limits": {"hr": {"high": 120}}}, SetLimits("p1", {"hr": {"high": 120}})),
    ({"command": "note", "patient_id": "p1", "text": "turned"}, AddNote("p1", "turned")),
    ({"command": "view_patient", "patient_id": "p0001"}, ViewPatient("p0001")),
])
def test_valid_commands_parse(message: dict[str, Any], expected: object) -> None:
    assert parse_command({"type": "command"} | message) == expected


@pytest.mark.parametrize(("message", "field"), [
    ({"command": "acknowledge"}, "alert_id"),
    ({"command": "acknowledge", "alert_id": "a/../b"}, "alert_id"),
    ({"command": "acknowledge", "alert_id": 7}, "alert_id"),
    ({"command": "silence", "alert_id": "a1", "duration_s": 0.5}, "duration_s"),
    ({"command": "silence", "alert_id": "a1", "duration_s": 601}, "duration_s"),
    ({"command": "silence", "alert_id": "a1", "duration_s": True}, "duration_s"),
    ({"command": "silence", "alert_id": "a1", "duration_s": float("nan")}, "duration_s"),
    ({"command": "silence", "alert_id": "a1"}, "duration_s"),
    ({"command": "escalate", "alert_id": "a1", "reason": "   "}, "reason"),
    ({"command": "set_limits", "patient_id": "p1", "limits": [1]}, "limits"),
    ({"command": "set_limits", "patient_id": "p1", "limits": {}}, "limits"),
    ({"command": "note", "patient_id": "p1", "text": "x" * 2001}, "2001"),
    ({"command": "note", "text": "hello"}, "patient_id"),
    ({"command": "discharge", "patient_id": "p1"}, "one of"),
    ({}, "one of"),
])
def test_invalid_commands_name_the_problem(message: dict[str, Any], field: str) -> None:
    with pytest.raises(Rejected) as e:
        parse_command(message)
    assert e.value.code == "invalid" and field in e.value.detail


def test_a_note_of_exactly_the_limit_is_accepted() -> None:
    assert parse_command({"command": "note", "patient_id": "p1", "text": "x" * 2000}) == AddNote("p1", "x" * 2000)


@pytest.mark.parametrize(("message", "rid"), [
    ({"request_id": "r-1"}, "r-1"), ({"request_id": 42}, 42), ({"request_id": True}, None),
    ({"request_id": "x" * 129}, None), ({"request_id": {"a": 1}}, None), ([], None), ({}, None),
])
def test_request_ids_are_echoed_only_when_plain(message: object, rid: object) -> None:
    assert request_id_of(message) == rid


# The roles matrix


ALLOWED: dict[Role, set[Action]] = {
    "nurse": {"feed", "view_patient", "acknowledge", "silence", "escalate", "note"},
    "physician": {"feed", "view_patient", "acknowledge", "silence", "escalate", "note", "set_limits"},
    "auditor": {"feed", "view_patient"},
    "admin": set(ACTIONS),
}


@pytest.mark.parametrize("role", list(ALLOWED))
@pytest.mark.parametrize("action", ACTIONS)
def test_roles_matrix(role: Role, action: Action) -> None:
    assert may(role, action) == (action in ALLOWED[role])


def test_ward_scoping() -> None:
    nurse = who("nurse", ("ward-1", "ward-3"))
    assert may_see(nurse, "ward-1") and may_see(nurse, "ward-3")
    assert not may_see(nurse, "ward-2") and not may_see(nurse, None)
    all_wards: tuple[Role, ...] = ("auditor", "admin")
    for role in all_wards:
        assert may_see(who(role, ()), "ward-2") and may_see(who(role, ()), None)


# WardView


def test_patients_belong_to_the_default_ward_until_admitted_and_move_when_transferred() -> None:
    view = WardView("ward-1")
    admit = admission_event("p2", "ward-2", "B4", by="adm", now=T0)
    view.apply(recorded(1, "patient-p1", "VitalsObserved", {"patient_id": "p1", "hr": 80}))
    view.apply(recorded(2, admit.stream_id, admit.event_type, admit.payload))
    assert (view.ward_of("p1"), view.ward_of("p2"), view.bed_of("p2")) == ("ward-1", "ward-2", "B4")
    view.apply(recorded(3, "patient-p2", "PatientAdmitted", {"patient_id": "p2", "ward": "icu", "bed": None}, 2))
    assert view.ward_of("p2") == "icu" and view.bed_of("p2") is None
    assert WardView(None).ward_of("p1") is None


def test_scope_of_events() -> None:
    view = WardView("ward-1")
    view.apply(recorded(1, "patient-p2", "PatientAdmitted", {"patient_id": "p2", "ward": "ward-2"}))
    assert view.scope_of(recorded(2, "patient-p1", "VitalsObserved", {})) == "ward-1"
    assert view.scope_of(recorded(3, "alert-a9", "AlertAcknowledged", {"patient_id": "p2"})) == "ward-2"
    assert view.scope_of(recorded(4, "limits-p2", "AlarmLimitsChanged", {"patient_id": "p2"})) == "ward-2"
    # The audit trail names patients but belongs to no ward; events about no patient neither.
    assert view.scope_of(recorded(5, "access-n1", "RecordAccessed", {"patient_id": "p1"})) is None
    assert view.scope_of(recorded(6, "device-d1", "DeviceAssigned", {})) is None


def test_alerts_and_versions_follow_the_log_in_order() -> None:
    view = WardView("ward-1")
    view.apply(raised(1))
    view.apply(recorded(2, "patient-p1", "AlertEscalated", {"alert_id": "a1", "priority": "high"}, 2))
    view.apply(recorded(3, "alert-a1", "AlertAcknowledged", {"alert_id": "a1", "by": "n2"}))
    view.apply(recorded(2, "patient-p1", "AlertResolved", {"alert_id": "a1"}, 9))  # at or below position: ignored
    alert = view.alert("a1")
    assert alert is not None and (alert.priority, alert.open, alert.acknowledged_by) == ("high", True, "n2")
    view.apply(recorded(4, "patient-p1", "AlertResolved", {"alert_id": "a1"}, 3))
    assert view.alert("a1") == AlertInfo("a1", "p1", "hr_high", "high", open=False, acknowledged_by="n2",
                                         raised_position=1)
    assert (view.position, view.patient_version("p1"), view.knows_patient("p1"), view.knows_patient("p9")) == \
        (4, 3, True, False)
    assert view.alert("a2") is None


# Rate limiting


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert [bucket.take(0.0) for _ in range(21)] == [True] * 20 + [False]
    assert bucket.take(0.05) is False  # half a token
    assert bucket.take(0.1) is True
    assert [bucket.take(100.0) for _ in range(21)].count(True) == 20  # refills to the burst, no further
    assert bucket.take(50.0) is False  # a clock going backwards refills nothing


def test_token_bucket_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1, 0.0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, 0, 0.0)


# Pure decisions


def test_acknowledge_appends_to_the_alert_stream_with_the_actor() -> None:
    e = decide_alert(Acknowledge("a1"), OPEN, [], who(user="n7"), T0, "r1")
    assert (e.stream_id, e.event_type, e.event_id) == ("alert-a1", "AlertAcknowledged", acknowledgement_id("a1"))
    assert acknowledgement_id("a2") != e.event_id
    assert e.payload == {"alert_id": "a1", "patient_id": "p1", "by": "n7", "role": "nurse"}
    assert e.metadata == {"actor": "n7", "role": "nurse", "request_id": "r1"}


def test_a_second_acknowledgement_is_refused_and_names_the_first() -> None:
    history = [recorded(5, "alert-a1", "AlertAcknowledged", {"alert_id": "a1", "by": "n2"})]
    with pytest.raises(Rejected) as e:
        decide_alert(Acknowledge("a1"), OPEN, history, who(), T0)
    assert e.value.code == "already_acknowledged" and "n2" in e.value.detail


def test_commands_on_a_resolved_alarm_are_refused() -> None:
    resolved = AlertInfo("a1", "p1", "hr_high", "medium", open=False, acknowledged_by=None, raised_position=1)
    for command in (Acknowledge("a1"), Silence("a1", 60), Escalate("a1", "why")):
        with pytest.raises(Rejected) as e:
            decide_alert(command, resolved, [], who(), T0)
        assert e.value.code == "not_open"


def test_silence_and_escalate_payloads() -> None:
    s = decide_alert(Silence("a1", 90), OPEN, [], who(), T0)
    assert s.event_type == "AlertSilenced" and s.payload["until"] == (T0 + timedelta(seconds=90)).isoformat()
    e = decide_alert(Escalate("a1", "looks unwell"), OPEN, [], who("physician", user="d1"), T0)
    assert (e.event_type, e.payload["reason"], e.payload["by"]) == ("AlertEscalated", "looks unwell", "d1")


def test_limits_apply_on_top_of_the_last_change() -> None:
    base = default_limits("ward")
    first = decide_limits(SetLimits("p1", {"hr": {"high": 120}}), [], base, who("physician"), T0)
    assert first.stream_id == "limits-p1" and AlarmLimits.from_dict(first.payload["limits"])["hr"].high == 120
    history = [recorded(3, "limits-p1", "AlarmLimitsChanged", first.payload)]
    second = decide_limits(SetLimits("p1", {"spo2": {"low": 85}}), history, base, who("physician"), T0)
    limits = AlarmLimits.from_dict(second.payload["limits"])
    assert (limits["hr"].high, limits["spo2"].low, limits["hr"].low) == (120, 85, base["hr"].low)
    assert second.payload["changes"] == {"spo2": {"low": 85}}


def test_a_clinician_sets_the_news2_spo2_scale_through_the_limits() -> None:
    changed = decide_limits(SetLimits("p1", {"spo2_scale": 2}), [], default_limits("ward"), who("physician"), T0)
    assert changed.payload["limits"]["spo2_scale"] == 2
    event = recorded(4, "limits-p1", "AlarmLimitsChanged", changed.payload)
    found = command_of(event)
    assert found is not None and found[1] == ChangeLimits({k: v for k, v in changed.payload["limits"].items()
                                                           if k != "care_area"}, by=changed.payload["by"])
    assert default_limits("ward").changed(found[1].changes).spo2_scale == 2  # what the worker's engine applies


@pytest.mark.parametrize(("changes", "field"), [
    ({"hr": {"low": 140, "high": 130}}, "hr.high"), ({"pulse": {"high": 1}}, "pulse"), ({"spo2": {"low": 101}}, "spo2.low"),
])
def test_invalid_limits_are_refused_by_the_limits_model(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(Rejected) as e:
        decide_limits(SetLimits("p1", changes), [], default_limits("ward"), who("physician"), T0)
    assert e.value.code == "invalid" and field in e.value.detail


def test_access_events_go_to_the_users_audit_stream() -> None:
    e = access_event(who("auditor", (), "aud1"), "view_patient", "p1", T0, "r9", events_requested=200)
    assert (e.stream_id, e.event_type) == ("access-aud1", "RecordAccessed")
    assert e.payload == {"patient_id": "p1", "by": "aud1", "role": "auditor", "what": "view_patient",
                         "events_requested": 200}


# CommandHandler on the in-memory backend


class RacingRecorder(MemoryRecorder):
    """After each read of ``alert-a1``, another gateway appends ``rival`` events there
    first, as a second nurse clicking at the same moment would."""

    def __init__(self, rivals: int, rival_type: str = "AlertAcknowledged", derived_id: bool = False) -> None:
        super().__init__()
        self.rivals, self.rival_type, self.derived_id = rivals, rival_type, derived_id

    async def read_stream(self, stream_id: str, from_version: int = 1, limit: int | None = None) -> list[RecordedEvent]:
        events = await super().read_stream(stream_id, from_version, limit)
        if stream_id == "alert-a1" and self.rivals > 0:
            self.rivals -= 1
            event_id = acknowledgement_id("a1") if self.derived_id else uuid.uuid4()
            await self.append(stream_id, [NewEvent(event_id, stream_id, self.rival_type, T0,
                                                   {"alert_id": "a1", "patient_id": "p1", "by": "n2"})])
        return events


async def handler_on(store: MemoryRecorder, events: Sequence[NewEvent] = ()) -> tuple[CommandHandler, WardView]:
    for e in [NewEvent(uuid.uuid4(), "patient-p1", "AlertRaised", T0,
                       {"alert_id": "a1", "patient_id": "p1", "condition": "hr_high", "priority": "medium"}),
              admission_event("p2", "ward-2", None, by="adm", now=T0), *events]:
        await store.append(e.stream_id, [e])
    view = WardView("ward-1")
    for stored in await store.read_all():
        view.apply(stored)

    async def caught_up(position: int) -> bool:
        return view.position >= position

    return CommandHandler(store, view, default_limits("ward"), caught_up, lambda: T0), view


async def types_in(store: MemoryRecorder, stream_id: str) -> list[str]:
    return [e.event_type for e in await store.read_stream(stream_id)]


@pytest.mark.asyncio
@pytest.mark.parametrize("derived_id", [False, True])
async def test_losing_the_race_to_acknowledge_reports_the_winner(derived_id: bool) -> None:
    # derived_id: the rival is another gateway, whose acknowledgement has the same event id.
    store = RacingRecorder(rivals=1, derived_id=derived_id)
    handler, _ = await handler_on(store)
    result = await handler.handle(Acknowledge("a1"), who(), "r1")
    assert result == {"type": "command_result", "request_id": "r1", "ok": False, "error": "already_acknowledged",
                      "detail": "alert a1 was acknowledged by n2"}
    assert await types_in(store, "alert-a1") == ["AlertAcknowledged"]  # the rival's only


@pytest.mark.asyncio
async def test_a_silence_that_loses_a_race_is_decided_again_and_then_gives_up() -> None:
    store = RacingRecorder(rivals=2, rival_type="AlertSilenced")
    handler, _ = await handler_on(store)
    ok = await handler.handle(Silence("a1", 60), who(), "r1")
    assert ok["ok"] is True and ok["position"] == 5
    assert await types_in(store, "alert-a1") == ["AlertSilenced"] * 3
    store.rivals = CommandHandler.attempts
    gave_up = await handler.handle(Silence("a1", 60), who(), "r2")
    assert (gave_up["ok"], gave_up["error"]) == (False, "conflict_resolved")


@pytest.mark.asyncio
async def test_two_acknowledgements_at_once_give_one_event() -> None:
    store = MemoryRecorder()
    handler, _ = await handler_on(store)
    results = await asyncio.gather(handler.handle(Acknowledge("a1"), who(user="n1"), 1),
                                   handler.handle(Acknowledge("a1"), who(user="n2"), 2))
    assert sorted(r["ok"] for r in results) == [False, True]
    assert await types_in(store, "alert-a1") == ["AlertAcknowledged"]


@pytest.mark.asyncio
async def test_handler_refusals() -> None:
    store = MemoryRecorder()
    p2_alert = NewEvent(uuid.uuid4(), "patient-p2", "AlertRaised", T0,
                        {"alert_id": "b1", "patient_id": "p2", "condition": "spo2_low", "priority": "high"})
    handler, _ = await handler_on(store, [p2_alert])

    async def error(command: Any, claims: Claims) -> str:
        result = await handler.handle(command, claims, None)
        assert result["ok"] is False
        return str(result["error"])

    assert await error(Acknowledge("zz"), who()) == "unknown_alert"
    assert await error(Acknowledge("b1"), who()) == "forbidden"  # p2 is in ward-2
    assert await error(Acknowledge("a1"), who("auditor", ())) == "forbidden"  # read-only
    assert await error(SetLimits("p1", {"hr": {"high": 120}}), who("nurse")) == "forbidden"
    assert await error(SetLimits("p2", {"hr": {"high": 120}}), who("physician")) == "forbidden"
    assert await error(AddNote("p9", "who?"), who()) == "invalid"  # unknown patient
    before = await store.last_position()
    assert (await store.read_all(before)) == []  # nothing refused was appended


@pytest.mark.asyncio
async def test_view_patient_is_audited_before_the_data_is_returned() -> None:
    store = MemoryRecorder()
    vitals = [NewEvent(uuid.uuid4(), "patient-p1", "VitalsObserved", T0, {"patient_id": "p1", "hr": i})
              for i in range(250)]
    handler, _ = await handler_on(store, vitals)
    result = await handler.handle(ViewPatient("p1"), who("auditor", (), "aud1"), "v1")
    assert result["ok"] is True and result["ward"] == "ward-1"
    assert len(result["events"]) == 200 and result["events"][-1]["payload"]["hr"] == 249
    (audit,) = await store.read_stream("access-aud1")
    assert audit.position == result["position"]
    assert audit.payload == {"patient_id": "p1", "by": "aud1", "role": "auditor", "what": "view_patient",
                             "events_requested": 200}
    assert audit.metadata == {"actor": "aud1", "role": "auditor", "request_id": "v1"}


@pytest.mark.asyncio
async def test_limits_changes_accumulate_through_the_handler() -> None:
    store = MemoryRecorder()
    handler, _ = await handler_on(store)
    doctor = who("physician", user="d1")
    assert (await handler.handle(SetLimits("p1", {"hr": {"high": 120}}), doctor, 1))["ok"] is True
    assert (await handler.handle(SetLimits("p1", {"hr": {"low": 40}}), doctor, 2))["ok"] is True
    bad = await handler.handle(SetLimits("p1", {"hr": {"low": 119}}), doctor, 3)
    assert (bad["ok"], bad["error"]) == (False, "invalid") and "hr.high" in bad["detail"]
    last = (await store.read_stream("limits-p1"))[-1]
    assert (last.payload["limits"]["hr"]["low"], last.payload["limits"]["hr"]["high"]) == (40, 120)
