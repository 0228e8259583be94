"""streams.command_follower: a state caught up on the commands it missed, on the
in-memory event store (a real backend) and `PatientStates` over a dict table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from detectors.alarm_limits import default_limits
from event_store.events import NewEvent
from event_store.exceptions import EventStoreError
from event_store.memory import MemoryRecorder
from streams import command_follower
from streams.command_follower import CommandFollower
from streams.ecg_pipeline import ENGINE
from streams.sink import SinkItem
from streams.states import PatientStates
from streams.vitals_pipeline import VitalsPatient
from tests.unit.test_states import Table

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Sink:
    recorder: Any
    items: list[SinkItem] = field(default_factory=list)

    async def put(self, item: SinkItem) -> None:
        self.items.append(item)


def vitals_states() -> PatientStates[VitalsPatient]:
    return PatientStates(Table(), VitalsPatient.encode, VitalsPatient.decode, ("t.vitals",),
                         lambda *_: None, lambda *_: False)


def new_patient() -> VitalsPatient:
    return VitalsPatient(ENGINE.new_state("p1", "ward", default_limits("ward")))


async def change_limits(store: MemoryRecorder, high: float, patient: str = "p1") -> int:
    """A limit change as the gateway appends it; its log position."""
    event = NewEvent(uuid.uuid4(), f"limits-{patient}", "AlarmLimitsChanged", T0,
                     {"patient_id": patient, "by": "nurse-1", "limits": {"hr": {"high": high}}})
    (position,) = await store.append(f"limits-{patient}", [event])
    return position


def follower(sink: Sink, states: PatientStates[Any]) -> CommandFollower:
    async def the_sink() -> Any:
        return sink

    return CommandFollower(ENGINE, the_sink, [(states, 1)])


async def test_a_state_is_given_the_commands_it_missed_once_and_held() -> None:
    store = MemoryRecorder()
    first = await change_limits(store, 120)
    await change_limits(store, 140, patient="p2")  # another patient's: not given
    last = await change_limits(store, 125)
    sink, states = Sink(store), vitals_states()
    state = new_patient()
    assert state.alarms.limits["hr"].high != 125

    await follower(sink, states).caught_up(states, "device/p1", 0, state, "p1")
    assert state.commands_through == last > first
    assert state.alarms.limits["hr"].high == 125  # both given, in log order
    assert states.holds("device/p1") and not sink.items  # no alarm to clear: nothing to store

    # Caught up again (say, after a rebalance back): nothing is given twice.
    before = state.alarms
    await follower(sink, states).caught_up(states, "device/p1", 0, state, "p1")
    assert state.alarms is before and state.commands_through == last


async def test_a_failing_store_is_retried_until_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryRecorder()
    position = await change_limits(store, 118)

    class Flaky:
        failures = 2

        async def read_stream(self, stream_id: str) -> Any:
            if self.failures:
                self.failures -= 1
                raise EventStoreError("the database is down")
            return await store.read_stream(stream_id)

    monkeypatch.setattr(command_follower, "RETRY_S", 0.0)
    flaky = Flaky()
    sink, states = Sink(flaky), vitals_states()
    state = new_patient()
    await follower(sink, states).caught_up(states, "device/p1", 0, state, "p1")
    assert flaky.failures == 0 and state.commands_through == position
    assert state.alarms.limits["hr"].high == 118 and states.holds("device/p1")
