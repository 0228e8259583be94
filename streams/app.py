"""The Faust worker: vitals off Kafka, through the detector rule, into the event store.

Nothing here runs at import time: `build_app()` makes the app, its topics, table
and agent from explicit arguments, and `run_worker()` runs it. The agent is a thin
pump: decode (reject to the dead-letter topic with a reason), call the pure
`vitals_to_events`, append to the store, keep the per-patient rule state in a
changelog-backed Faust table.

Delivery is at-least-once: Faust commits a message's offset only after the agent
has handled it, and the sink is idempotent by event id, so a crash between the
append and the commit re-processes the message without duplicating events.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust

from detectors.threshold import ThresholdRule, ThresholdState
from event_store.events import NewEvent
from event_store.exceptions import EventStoreError, StoreUnavailable
from event_store.postgres import PostgresRecorder
from streams.topics import TopicNames
from streams.vitals_codec import Rejected, decode_vitals
from streams.vitals_pipeline import SourceRef, vitals_to_events

__all__ = ["WorkerConfig", "build_app", "run_worker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    brokers: list[str]
    """``host:port`` of each bootstrap broker."""
    database_url: str
    topics: TopicNames
    hr_high_limit: float
    embedded_broker: bool = False
    """True on the demo's Tansu broker, which needs gentler client settings."""
    app_id: str | None = None
    """Faust app id and consumer group; default ``topics.app_id``. A new id re-reads
    the topics from the start with fresh table state."""
    partitions: int = 4
    replication_factor: int = 1


def build_app(cfg: WorkerConfig) -> faust.App:
    extra: dict[str, Any] = {}
    if cfg.embedded_broker:
        # Tansu reports a wrong end offset after multi-record batches; one record per
        # batch keeps table recovery exact (see README, "Embedded broker").
        extra["producer_max_batch_size"] = 64
    app = faust.App(
        cfg.app_id or cfg.topics.app_id,
        broker=[f"kafka://{b}" for b in cfg.brokers],
        store="memory://",
        web_enabled=False,
        topic_partitions=cfg.partitions,
        topic_replication_factor=cfg.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        **extra,
    )
    vitals_topic = app.topic(cfg.topics.vitals, key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw", partitions=cfg.partitions)
    dead_letters = app.topic(cfg.topics.dead_letter, key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw", partitions=1)
    alarm_state = app.Table("hr-alarm-state", default=dict, partitions=cfg.partitions)
    rule = ThresholdRule("hr_high", "Heart rate", "bpm", limit=cfg.hr_high_limit, hysteresis=5.0)

    async def dead_letter(event: Any, source: SourceRef, reason: str, detail: str) -> None:
        log.warning("dead-lettered %s/%s/%s: %s (%s)", source.topic, source.partition, source.offset, reason, detail)
        await dead_letters.send(key=event.key, value=event.value or b"", headers=[
            ("reason", reason.encode()), ("detail", detail.encode()),
            ("source", f"{source.topic}/{source.partition}/{source.offset}".encode()),
        ])

    @app.agent(vitals_topic)
    async def vitals_agent(stream: Any) -> None:
        store = await PostgresRecorder.connect(cfg.database_url)
        try:
            async for event in stream.events():
                msg = event.message
                source = SourceRef(msg.topic, msg.partition, msg.offset)
                try:
                    vitals = decode_vitals(event.value)
                except Rejected as r:
                    await dead_letter(event, source, r.reason, r.detail)
                    continue
                state = ThresholdState(alarm_state[vitals.patient_id].get("active_alert_id"))
                new_state, new_events = vitals_to_events(vitals, source, state, rule)
                try:
                    await _append_with_retry(store, new_events)
                except EventStoreError as e:
                    # Not transient (those are retried inside): Faust would restart the
                    # actor onto the same message forever, so park it with its reason.
                    await dead_letter(event, source, "store_rejected", str(e)[:500])
                    continue
                if new_state != state:
                    alarm_state[vitals.patient_id] = {"active_alert_id": new_state.active_alert_id}
        finally:
            await store.close()

    return app


async def _append_with_retry(store: PostgresRecorder, events: list[NewEvent]) -> None:
    """Back-pressure: while the database is down, hold this partition's stream
    (nothing is acknowledged, so nothing is lost) and retry with back-off."""
    delay = 0.2
    while True:
        try:
            await store.append(events[0].stream_id, events)
            return
        except StoreUnavailable as e:
            log.warning("event store unavailable, retrying in %.1f s: %s", delay, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def run_worker(cfg: WorkerConfig, loglevel: str = "warn") -> None:
    """Run the worker until SIGTERM/SIGINT. Blocks; owns the event loop."""
    from faust.worker import Worker

    app = build_app(cfg)
    Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()
