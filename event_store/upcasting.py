"""Schema evolution: old events are upgraded when read, never rewritten.

An upcaster turns the payload of ``(event_type, version)`` into the payload of
``version + 1``. `Upcasters.upcast` applies the chain until no upcaster is left,
so a v1 event read by v3 code passes through v1->v2 and v2->v3. The stored row,
its chain hash and ``audit verify`` are untouched: they always see what was written.
"""

from __future__ import annotations

from collections.abc import Callable

from event_store.events import JsonObject, RecordedEvent

__all__ = ["Upcaster", "Upcasters"]

Upcaster = Callable[[JsonObject], JsonObject]


class Upcasters:
    """A registry keyed by ``(event_type, from_version)``."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: ``@upcasters.register("VitalsObserved", 1)`` on a v1 -> v2 function."""
        if from_version < 1:
            raise ValueError(f"from_version must be >= 1, got {from_version}")

        def add(step: Upcaster) -> Upcaster:
            key = (event_type, from_version)
            if key in self._steps:
                raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
            self._steps[key] = step
            return step

        return add

    def upcast(self, event: RecordedEvent) -> RecordedEvent:
        version = event.schema_version
        step = self._steps.get((event.event_type, version))
        if step is None:
            return event  # the common case; the payload stays undecoded until someone reads it
        payload = event.payload
        while step is not None:
            payload = step(dict(payload))  # a copy: an upcaster must never alter the original
            version += 1
            step = self._steps.get((event.event_type, version))
        return event.with_payload(payload, version)
