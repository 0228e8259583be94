"""The worker's side of the care team's commands: it follows the log and gives each
command to the states of the patient it holds, and catches up a state that comes
into its memory on the commands it missed (`streams.commands` says what a command
does to an engine, and why both paths are needed).

Both paths run under one lock, so a command reaches a state either from the
follower or from the catch-up, never from both: a caught-up state is held
(`PatientStates.hold`) before the lock is released, and from then on the follower
sees it. Events a command causes (a latched alarm cleared) go to the batching sink
like any other, and the state is checkpointed once they are durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from detectors.alarms import AlarmEngine
from event_store.events import NewEvent, RecordedEvent
from event_store.exceptions import EventStoreError
from event_store.postgres import PostgresRecorder
from streams.commands import apply_command, command_of
from streams.sink import BatchingSink, SinkItem
from streams.states import PatientStates

__all__ = ["CommandFollower", "RETRY_S"]

log = logging.getLogger(__name__)

RETRY_S = 2.0
"""Wait before reading the log again after the event store failed (the database is down)."""


class CommandFollower:
    """Gives commands to the states of ``tables``: each a `PatientStates` and the
    place of the patient id in its keys split at "/" (vitals ``<source>/<patient>``:
    1; ECG ``<patient>``: 0). ``sink`` opens or returns the worker's sink."""

    def __init__(self, engine: AlarmEngine, sink: Callable[[], Awaitable[BatchingSink]],
                 tables: Sequence[tuple[PatientStates[Any], int]]) -> None:
        self._engine = engine
        self._sink = sink
        self._tables = tuple(tables)
        self._lock = asyncio.Lock()  # the follower's hand-over and a state's catch-up, one at a time

    async def follow(self, recorder: PostgresRecorder) -> None:
        """From the log's head on, until cancelled: each command to the patient's
        states held here. A failing store is retried from the last position read."""
        position = (await recorder.head()).position
        while True:
            try:
                async for event in recorder.subscribe(position):
                    position = event.position
                    found = command_of(event)
                    if found is None:
                        continue
                    patient, command = found
                    async with self._lock:  # not while a state is being caught up
                        for states, part in self._tables:
                            await self._give(states, part, patient, command, event)
            except EventStoreError as e:
                log.warning("following care-team commands: %s; retrying in %.0f s", e, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def caught_up(self, states: PatientStates[Any], key: str, partition: int, state: Any,
                        patient: str) -> None:
        """Before ``key``'s state (restored from a checkpoint, or new) takes its first
        message on this worker: give it the commands it has not had, those the care
        team gave while no worker held it in memory (after its checkpoint, while a
        worker was down or the partition moved). Commands sit in the
        ``limits-<patient>`` stream and the ``alert-<id>`` stream of each alarm. While
        the store is down, this patient waits, as the sink would."""
        while True:
            try:
                async with self._lock:
                    await self._give_missed(states, key, partition, state, patient)
                return
            except EventStoreError as e:
                log.warning("catching up %s on care-team commands: %s; retrying in %.0f s", key, e, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def _give(self, states: PatientStates[Any], part: int, patient: str, command: Any,
                    event: RecordedEvent) -> None:
        for key, partition, state in states.keys_of(lambda k: k.split("/", 1)[part] == patient):
            if event.position <= state.commands_through:
                continue  # given already, when the state was caught up
            new_events = self._given(state, command, event, key)
            await (await self._sink()).put(SinkItem(new_events, on_durable=states.changed(key, partition, state)))

    async def _give_missed(self, states: PatientStates[Any], key: str, partition: int, state: Any,
                           patient: str) -> None:
        """`caught_up`'s work, under the lock: read, give in log order, hold the state."""
        store = (await self._sink()).recorder
        streams = [f"limits-{patient}", *(f"alert-{a.alert_id}" for a in state.alarms.alarms.values())]
        missed: list[RecordedEvent] = []
        for name in streams:
            missed += [e for e in await store.read_stream(name) if e.position > state.commands_through]
        missed.sort(key=lambda e: e.position)
        new_events: list[NewEvent] = []
        for event in missed:
            found = command_of(event)
            if found is not None:
                new_events += self._given(state, found[1], event, key)
            state.commands_through = event.position
        if new_events:
            await (await self._sink()).put(SinkItem(new_events, on_durable=states.changed(key, partition, state)))
        else:
            states.hold(key, partition, state)

    def _given(self, state: Any, command: Any, event: RecordedEvent, key: str) -> list[NewEvent]:
        """Give ``state`` (vitals or ECG) the command of log ``event``; the events it causes."""
        state.alarms, new_events = apply_command(self._engine, state.alarms, command, event, key)
        state.commands_through = event.position
        return new_events
