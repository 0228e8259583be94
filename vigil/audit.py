"""``vigil audit verify`` and ``vigil audit replay``: the auditor's view of the log."""

from __future__ import annotations

import getpass
import uuid
from datetime import UTC, datetime

from event_store.events import NewEvent
from event_store.postgres import PostgresRecorder

__all__ = ["verify_command", "replay_command"]


async def verify_command(database_url: str) -> int:
    """Print a one-line verdict. 0 when intact, 1 when the chain is broken."""
    recorder = await PostgresRecorder.connect(database_url, attempts=3)  # a person is waiting
    try:
        report = await recorder.verify()
    finally:
        await recorder.close()
    print(report.summary())
    return 0 if report.ok else 1


async def replay_command(
    database_url: str, *, stream_id: str | None, patient_id: str | None,
    start: datetime | None, end: datetime | None, actor: str | None,
) -> int:
    """Print the timeline of one stream or patient, oldest first, and record that it
    was read (a RecordAccessed event: who, what, when)."""
    from event_store.replay import format_event, timeline

    recorder = await PostgresRecorder.connect(database_url, attempts=3)  # a person is waiting
    try:
        count = 0
        async for event in timeline(recorder, stream_id=stream_id, patient_id=patient_id, start=start, end=end):
            print(format_event(event))
            count += 1
        subject = stream_id or f"patient-{patient_id}"
        who = actor or getpass.getuser()
        await recorder.append(f"access-{who}", [NewEvent(
            uuid.uuid4(), f"access-{who}", "RecordAccessed", datetime.now(UTC),
            {"actor": who, "subject": subject, "action": "audit replay", "events": count,
             "from": start.isoformat() if start else None, "to": end.isoformat() if end else None},
            metadata={"actor": who},
        )])
    finally:
        await recorder.close()
    print(f"{count} events")
    return 0
