from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from event_store.events import NewEvent
from event_store.exceptions import InvalidEvent


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [("stream_id", {"stream_id": "nope"}), ("event_type", {"event_type": "vitals_observed"}),
     ("occurred_at", {"occurred_at": datetime(2026, 1, 1)}), ("schema_version", {"schema_version": 0})],
)
def test_invalid_events_name_the_field(field: str, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"event_id": uuid.uuid4(), "stream_id": "patient-p1", "event_type": "VitalsObserved",
                               "occurred_at": datetime.now(UTC), "payload": {}} | kwargs
    with pytest.raises(InvalidEvent, match=field):
        NewEvent(**args)  # type: ignore[arg-type]
