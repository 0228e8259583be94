from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from event_store.events import NewEvent
from event_store.memory import MemoryRecorder
from event_store.store import EventStore
from event_store.upcasting import Upcasters


def make_upcasters() -> Upcasters:
    up = Upcasters()

    @up.register("VitalsObserved", 1)
    def temp_f_to_c(p: dict[str, object]) -> dict[str, object]:
        # v1 carried Fahrenheit in "temp_f"; v2 has Celsius in "temp".
        p["temp"] = round((float(p.pop("temp_f")) - 32) * 5 / 9, 1)  # type: ignore[arg-type]
        return p

    @up.register("VitalsObserved", 2)
    def add_unit_field(p: dict[str, object]) -> dict[str, object]:
        return p | {"temp_unit": "Cel"}

    return up


@pytest.mark.asyncio
async def test_old_events_are_upcast_on_read_and_never_rewritten() -> None:
    recorder = MemoryRecorder()
    store = EventStore(recorder, make_upcasters())
    v1 = NewEvent(uuid.uuid4(), "patient-p1", "VitalsObserved", datetime.now(UTC), {"temp_f": 98.6}, schema_version=1)
    v3 = NewEvent(uuid.uuid4(), "patient-p1", "VitalsObserved", datetime.now(UTC),
                  {"temp": 37.5, "temp_unit": "Cel"}, schema_version=3)
    await store.append("patient-p1", [v1, v3])
    read = await store.read_stream("patient-p1")
    assert [(e.schema_version, e.payload) for e in read] == [
        (3, {"temp": 37.0, "temp_unit": "Cel"}), (3, {"temp": 37.5, "temp_unit": "Cel"})]
    raw = await recorder.read_all(0)
    assert (raw[0].schema_version, raw[0].payload) == (1, {"temp_f": 98.6})
    assert (await recorder.verify()).ok
    async for first in store.subscribe(0):
        assert first.schema_version == 3
        break


def test_an_upcaster_is_registered_once() -> None:
    up = Upcasters()
    up.register("X", 1)(lambda p: p)
    with pytest.raises(ValueError, match="already registered"):
        up.register("X", 1)(lambda p: p)
    with pytest.raises(ValueError):
        up.register("X", 0)
