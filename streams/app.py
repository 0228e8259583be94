"""The Faust worker: device topics off Kafka, through processors/ and detectors/,
into the event store.

Nothing here runs at import time: `build_app()` makes the app, its topics, tables
and agents from explicit arguments, and `run_worker()` runs it. Each agent is a
thin pump: decode (reject to the dead-letter topic with a reason), call a pure
pipeline function on the patient's state, hand the events to the batching sink.

Exactly-once effect, without Kafka transactions (the embedded broker has none):

1. The pipelines are deterministic and event ids derive from the source message's
   (topic, partition, offset, index), so processing a message twice from the same
   state yields the same events, and the store keeps each once.
2. Per-patient state lives in a changelog-backed Faust table (`streams.states`).
   It is checkpointed every few seconds (a share of the patients at each tick of
   the interval), only when the events of every message it
   covers are durable, and those messages are acknowledged only after that. The
   state records the offset of the last message applied to it.
3. With the checkpoints, the table records each input partition's *resume offset*:
   every message before it is covered by a checkpoint or finished (dead-lettered)
   for good. It follows the checkpoints in the same changelog partition (the
   producer sends one batch per partition at a time), so it never gets ahead of
   them, even after a crash.
4. When partitions are assigned (a start, a rebalance, a crash of another worker),
   the worker makes each input partition's resume offset (from the recovered table)
   the group's committed offset, and seeks there again after Faust's own seek
   (`streams.kafka_consumer`): Faust and aiokafka skip a committed offset of 0, and a
   restart that found checkpoints but no resume offset yet (a crash in the first
   round) was otherwise read from elsewhere. Faust's own
   commits are not trusted for this: with messages acknowledged out of offset
   order, as here, they can pass a message still in flight (faust-streaming #606),
   and Faust's pure-Python stream loop acknowledges the messages it skips during a
   rebalance, even on a `noack()` stream (#527). From the resume offset, messages a
   state already covers are skipped; the others are processed again from exactly
   the state that produced them the first time.

On a rebalance the sink is drained first, then every state is checkpointed and the
producer flushed, so the next owner of a partition recovers the newest state and a
resume offset past everything this worker did. The table changelogs exist before
the worker joins its group (`declare_topics`), or the group would get no changelog
partitions to recover from.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from detectors.alarm_conditions import Priority
from detectors.alarm_limits import AlarmLimits, starting_limits
from detectors.alarms import AlarmEngine, AlarmPolicy
from detectors.beat_classifier import BeatClassifier, Variant, shared_classifier
from event_store.events import NewEvent
from event_store.postgres import PostgresRecorder
from event_store.waveforms import WaveformStore
from streams.dead_letter import DeadLetterSource, dead_letter_headers, encode_dead_letter
from streams.ecg_codec import decode_ecg_chunk
from streams.command_follower import CommandFollower
from streams.raw_schema import RawSchema
from streams.ecg_pipeline import ENGINE
from streams.ecg_pipeline import EcgPatient, process_chunk, warm_up, waveform_of
from streams.fhir import decode_fhir
from streams.gc_pauses import GcPauses, freeze_startup_heap, report_line
from streams.kafka_consumer import consumer_class
from streams.loop_delay import CHUNK_S, LoopDelay
from streams.loop_delay import report_line as loop_report_line
from streams import recovery_watchdog
from streams.metrics import SERVING, Family, HistogramFamily, MetricsServer
from streams.sink import BatchingSink, SinkItem, SinkStats
from streams.worker_metrics import input_lag, not_ready, worker_families
from streams.states import CHECKPOINT_INTERVAL_S, PatientStates
from streams.topics import TopicNames
from streams.vitals_codec import Rejected, Vitals, decode_vitals
from streams.vitals_pipeline import SourceRef, VitalsPatient, vitals_to_events

__all__ = ["WorkerConfig", "build_app", "run_worker"]

log = logging.getLogger(__name__)

CHECKPOINT_SHARES = 10
"""Ticks per checkpoint interval; each writes the keys of one share."""

PRODUCER_BUFFER_MESSAGES = 25_000
"""Table writes waiting to be sent beyond which Faust holds back new messages."""

CHANGELOG_CONFIG = {"cleanup.policy": "compact", "segment.bytes": str(32 * 1024 * 1024)}
"""Topic configuration of the table changelogs. A restarted worker (memory store)
reads its changelog partitions whole, and Kafka compacts only closed segments: with
its default 1 GiB segments, at 1,000 beds (about 2 MB/s of snapshots per partition)
a partition would hold up to a few GB of superseded snapshots, which a restart reads
at about 130 MB/s here (225 MB in 1.7 s, bench/ward.py --crash-at). 32 MiB segments
close every 15 s or so at that rate, so the log cleaner keeps each partition near
one snapshot per patient plus the open segment. Measured on the test broker: 258 MB
of 43 KB snapshots of 250 keys in one partition were 34 MB on disk a minute and a
half later with these segments, and still 247 MB with the default ones."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    brokers: list[str]
    """``host:port`` of each bootstrap broker."""
    database_url: str
    topics: TopicNames
    starting_limits: AlarmLimits = field(default_factory=lambda: starting_limits("ward"))
    """Alarm limits of patients seen for the first time (`detectors.alarm_limits.starting_limits`;
    the gateway resolves limits commands against the same)."""
    escalate_after_s: Mapping[Priority, float] | None = None
    """Seconds an unacknowledged alarm of each priority waits before it escalates
    (`detectors.alarms.AlarmPolicy`); None: the policy's defaults."""
    embedded_broker: bool = False
    """True on the demo's Tansu broker, which needs gentler client settings."""
    app_id: str | None = None
    """Faust app id and consumer group; default ``topics.app_id``. A new id re-reads
    the topics from the start with fresh table state."""
    partitions: int = 4
    """Partitions of the input topics and table changelogs: at most this many workers
    of a group get a share. Must match the input topics if they exist already."""
    replication_factor: int = 1
    standby_replicas: int = 0
    """Standby copies of each table partition kept by other workers. Only useful with
    ``rocksdb://``: a ``memory://`` standby is read again from the changelog's start
    when it is promoted, like a partition the worker never had."""
    fetch_max_wait_ms: int = 100
    """Longest wait of a Kafka fetch for new data (Faust's own is 1.5 s; see
    `streams.kafka_consumer`): it bounds how long a message can sit on the broker."""
    store: str = "memory://"
    """Faust table store; ``rocksdb://`` keeps tables on local disk in production
    (``VIGIL_WORKER_STORE``; `streams.states.PatientStates` writes its checkpoints
    into either)."""
    checkpoint_interval: float = CHECKPOINT_INTERVAL_S
    """Seconds between state checkpoints (a crash replays at most about this much input)."""
    datadir: str | None = None
    """Faust's local data folder (default: ``<app id>-data`` in the current directory)."""
    beat_model: str | None = "fp32"
    """The packaged beat classifier every ECG beat goes through (``fp32`` or ``int8``,
    `detectors.beat_classifier`); None classifies no beats."""
    metrics_port: int | None = None
    """Serve /metrics, /healthz and /readyz on this port (`streams.metrics`; 0: any free
    port, logged); None: no server."""
    metrics_host: str = "127.0.0.1"
    instance_id: str | None = None
    """Kafka static group membership (KIP-345): a stable id per worker (a pod or host
    name), unique in the group. A worker restarted under the same id takes its place
    in the group at once, instead of after the session timeout of the one it replaces
    (6 s). The cost: a worker that stops for good keeps its partitions until that
    timeout, as static members do not leave the group."""


def beat_classifier(cfg: WorkerConfig) -> BeatClassifier | None:
    """The process's session for ``cfg.beat_model`` (one per process, shared)."""
    if cfg.beat_model is None:
        return None
    if cfg.beat_model not in ("fp32", "int8"):
        raise ValueError(f"beat_model must be fp32, int8 or None, got {cfg.beat_model!r}")
    return shared_classifier(cast(Variant, cfg.beat_model))


class _App(faust.App):
    """A Faust app without Faust's `Monitor` among its sensors: the monitor keeps
    statistics of every message and event for Faust's web views, which the worker does
    not serve (its figures are the counters of `report`). Its hooks were 2 % of the
    worker's core at 1,000 beds (py-spy). Faust's consumer still calls the monitor
    directly for its offset bookkeeping, which stays."""

    def on_init_dependencies(self) -> Any:
        dependencies = super().on_init_dependencies()
        self.sensors.remove(self.monitor)
        return dependencies


def build_app(cfg: WorkerConfig) -> faust.App:
    extra: dict[str, Any] = {}
    if cfg.embedded_broker:
        # Tansu reports a wrong end offset after multi-record batches; one record per
        # batch keeps table recovery exact (see README, "Embedded broker").
        extra["producer_max_batch_size"] = 64
    if cfg.datadir:
        extra["datadir"] = cfg.datadir
    app = _App(
        cfg.app_id or cfg.topics.app_id,
        broker=[f"kafka://{b}" for b in cfg.brokers],
        store=cfg.store,
        web_enabled=False,
        topic_partitions=cfg.partitions,
        topic_replication_factor=cfg.replication_factor,
        table_standby_replicas=cfg.standby_replicas,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=cfg.instance_id,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        producer_max_request_size=1_048_576,
        consumer_max_fetch_size=4_194_304,
        **extra,
    )

    async def make_durable() -> None:
        """Everything the agents have applied: events stored, dead letters on the broker."""
        if "main" in sink:
            await sink["main"].drain()
        await app.producer.flush()
        await asyncio.sleep(0)  # let the dead letters' done-callbacks run

    async def settle() -> None:
        # Faust is about to wait for every message in flight (a rebalance, shutdown):
        # make them durable and checkpoint them now rather than at the round's end.
        # (Defined before the sink and the states it uses, which exist by then: the
        # consumer class takes it, and must be in place before the app makes its consumer.)
        await make_durable()
        for states in (vitals_states, ecg_states):
            await states.checkpoint_idle()

    # This app's transport only (a class attribute set on the instance), before the app makes its consumer.
    app.transport.Consumer = consumer_class(cfg.fetch_max_wait_ms, settle)  # type: ignore[misc]
    # Table writes wait in the producer's buffer, and Faust stops handing messages to the
    # agents whenever it holds more than ``max_messages`` (100), until 100 are sent,
    # with a warning each time. One checkpoint tick of a 1,000-bed ward writes about 200
    # (a share of the ECG and vitals states): that stall and warning came every 0.5 s.
    # A bound stays, for when Kafka does not take the writes: about a minute of that
    # ward's ticks.
    app.producer.buffer.max_messages = PRODUCER_BUFFER_MESSAGES
    names = cfg.topics

    def raw_topic(name: str, partitions: int) -> Any:
        return app.topic(name, schema=RawSchema(), partitions=partitions)

    vitals_topic = raw_topic(names.vitals, cfg.partitions)
    fhir_topic = raw_topic(names.fhir, cfg.partitions)
    ecg_topic = raw_topic(names.ecg, cfg.partitions)
    dead_letters = raw_topic(names.dead_letter, 1)

    def table(name: str) -> Any:
        t = app.Table(name, key_type=bytes, value_type=bytes, partitions=cfg.partitions)
        # Keys and snapshots are bytes already; set before the changelog topic exists.
        t.key_serializer = t.value_serializer = "raw"  # type: ignore[attr-defined]
        return t

    vitals_table, ecg_table = table("vitals-state"), table("ecg-state")

    def rewind(topic: str, partition: int, offset: int) -> None:
        consumer: Any = app.consumer
        consumer.rewind(TP(topic, partition), offset)

    def absent(topic: str, partition: int, start: int, end: int) -> bool:
        consumer: Any = app.consumer
        return bool(consumer.absent(TP(topic, partition), start, end))

    vitals_states: PatientStates[VitalsPatient] = PatientStates(
        vitals_table, VitalsPatient.encode, VitalsPatient.decode, (names.vitals, names.fhir), rewind, absent)
    classifier = beat_classifier(cfg)
    ecg_states: PatientStates[EcgPatient] = PatientStates(ecg_table, EcgPatient.snapshot, EcgPatient.restore,
                                                          (names.ecg,), rewind, absent)
    states_of = {topic: states for states in (vitals_states, ecg_states) for topic in states.topics}
    # Stateless apart from its policy: one for every source.
    engine = ENGINE if cfg.escalate_after_s is None else AlarmEngine(AlarmPolicy(escalate_after_s=cfg.escalate_after_s))
    limits = cfg.starting_limits
    counters: Counter[str] = Counter()  # dead letters by reason
    taken_by_topic: Counter[str] = Counter()
    sink: dict[str, BatchingSink] = {}

    sink_lock = asyncio.Lock()

    async def the_sink() -> BatchingSink:
        async with sink_lock:  # the first agent to need it opens it
            if "main" not in sink:
                recorder = await PostgresRecorder.connect(cfg.database_url)
                waveforms = await WaveformStore.connect(cfg.database_url)
                sink["main"] = BatchingSink(recorder, waveforms)
                sink["main"].start()
        return sink["main"]

    # Vitals keys are "<source>/<patient>", ECG keys "<patient>" (all its leads).
    commands = CommandFollower(engine, the_sink, [(vitals_states, 1), (ecg_states, 0)])

    async def on_revoked(_: Any, revoked: set[Any], **__: Any) -> None:
        # The next owner must recover the newest state: make everything durable
        # (events, then dead letters), checkpoint it with the resume offsets, and
        # flush the changelog before letting the partitions go.
        gone = {tp.partition for tp in revoked}
        await make_durable()
        for states in (vitals_states, ecg_states):
            await states.checkpoint_idle(gone)
            states.forget(gone)
        await app.producer.flush()

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]  # mode's Signal typing is narrower

    def resume_from_table(states: PatientStates[Any]) -> Callable[[], Awaitable[None]]:
        async def recovered() -> None:
            # Faust calls this once the table is recovered, then seeks the input
            # partitions to the group's committed offsets and resumes them: moving the
            # committed offsets to the table's resume offsets makes that seek land there,
            # and the consumer seeks to them once more after it (`resume_at`).
            # Uses the consumer's raw commit: its public one only commits acknowledged offsets.
            consumer: Any = app.consumer
            offsets = states.resume_offsets({(tp.topic, tp.partition) for tp in consumer.assignment()})
            if not offsets:
                return
            log.info("resuming %s", sorted(offsets.items()))
            tps = {TP(t, p): offset for (t, p), offset in offsets.items()}
            try:
                # Seek as well: Faust's seek skips a committed offset of 0. (In the consumer's
                # thread, moving the read offsets too; see streams.kafka_consumer.)
                await consumer.seek_resume(tps)
                consumer.resume_at.update(tps)
                if not await consumer._commit(tps):
                    log.warning("could not move the committed offsets to the resume offsets %s "
                                "(rebalancing again?)", offsets)
            except Exception:  # Faust drops exceptions of recovery callbacks silently
                log.exception("moving the committed offsets to the resume offsets %s", offsets)

        return recovered

    vitals_table.on_recover(resume_from_table(vitals_states))
    ecg_table.on_recover(resume_from_table(ecg_states))

    async def last_checkpoint(_: Any, **__: Any) -> None:
        # Faust has waited for every message to be acknowledged (and flushes the
        # producer after this): write the final resume offsets.
        for states in (vitals_states, ecg_states):
            await states.checkpoint_idle()

    app.on_before_shutdown.connect(last_checkpoint)  # type: ignore[arg-type]

    async def dead_letter(stream: Any, event: Any, reason: str, detail: str, *, applied: bool = False) -> None:
        """Refuse ``event``. If it was ``applied`` to a state (the store refused its
        events), its checkpoint acknowledges it, as for any applied message."""
        msg = event.message
        counters[reason] += 1
        source = DeadLetterSource(msg.topic, msg.partition, msg.offset,
                                  None if msg.timestamp is None else round(msg.timestamp * 1000), msg.key)
        log.warning("dead-lettered %s/%s/%s: %s (%s)", msg.topic, msg.partition, msg.offset, reason, detail[:200])
        headers = dead_letter_headers(reason, detail, source)
        sent = [await dead_letters.send(key=msg.key, value=part, headers=headers)
                for part in encode_dead_letter(reason, detail, source, msg.value, worker=app.conf.id)]
        states_of[msg.topic].dead_lettered(stream, event, asyncio.gather(*sent), applied=applied)
        if not applied:
            await stream.ack(event)

    def rejected_by_store(stream: Any, event: Any) -> Callable[[str], Awaitable[None]]:
        async def rejected(reason: str) -> None:
            await dead_letter(stream, event, "store_rejected", reason, applied=True)

        return rejected

    async def handle_vitals(stream: Any, event: Any, readings: list[Vitals], kind: str) -> None:
        """``readings`` are one patient's (a device message, or a FHIR Bundle)."""
        msg = event.message
        source = SourceRef(msg.topic, msg.partition, msg.offset)
        key = f"{kind}/{readings[0].patient_id}"
        state = vitals_states.get(key) or VitalsPatient(engine.new_state(readings[0].patient_id, limits.care_area, limits))
        if msg.offset <= state.offset:
            vitals_states.covered(key, stream, event)  # already applied before a restart
            return
        if not vitals_states.holds(key):
            await commands.caught_up(vitals_states, key, msg.partition, state, readings[0].patient_id)
        new_events: list[NewEvent] = []
        for vitals in readings:
            ts_ms = round(vitals.occurred_at.timestamp() * 1000)
            if ts_ms <= state.last_ts_ms:
                await dead_letter(stream, event, "stale_timestamp", f"{vitals.patient_id}: device time {ts_ms} ms "
                                                                    f"is not after {state.last_ts_ms} ms")
                return
            alarms, produced = vitals_to_events(vitals, source, state.alarms, engine, first_index=len(new_events))
            state = VitalsPatient(alarms, msg.offset, ts_ms, state.commands_through)
            new_events += produced
        vitals_states.applied(key, msg.partition, state)
        await (await the_sink()).put(SinkItem(
            new_events, on_durable=vitals_states.durable(key, stream, event),
            on_rejected=rejected_by_store(stream, event)))

    async def keyed_by(stream: Any, event: Any, patient_id: str) -> bool:
        """Whether the record's key is the patient id inside it, as the contracts require;
        else it is dead-lettered (``key_mismatch``). A record keyed otherwise may sit on
        another partition than the patient's other messages, where another worker may
        hold a second state of the patient: out of order, with alarms of its own."""
        if event.message.key == patient_id.encode():
            return True
        key = event.message.key
        await dead_letter(stream, event, "key_mismatch", f"key {key[:80]!r} is not the patient id {patient_id!r}"
                          if key is not None else f"no key; the patient id is {patient_id!r}")
        return False

    async def taken(states: PatientStates[Any], stream: Any, event: Any) -> bool:
        """`PatientStates.consumed`, acknowledging a message it leaves (after a gap:
        read again, streams.states); whether the agent goes on with it."""
        if states.consumed(event):
            taken_by_topic[event.message.topic] += 1
            return True
        await stream.ack(event)
        return False

    @app.agent(vitals_topic)
    async def vitals_agent(stream: Any) -> None:
        async for event in stream.noack().events():
            if not await taken(vitals_states, stream, event):
                continue
            try:
                readings = [decode_vitals(event.value)]
            except Rejected as r:
                await dead_letter(stream, event, r.reason, r.detail)
                continue
            if await keyed_by(stream, event, readings[0].patient_id):
                await handle_vitals(stream, event, readings, "device")

    @app.agent(fhir_topic)
    async def fhir_agent(stream: Any) -> None:
        async for event in stream.noack().events():
            if not await taken(vitals_states, stream, event):
                continue
            try:
                readings = decode_fhir(event.value)
            except Rejected as r:
                await dead_letter(stream, event, r.reason, r.detail)
                continue
            if len({v.patient_id for v in readings}) > 1:
                await dead_letter(stream, event, "fhir_mixed_patients", "a Bundle must hold one patient's readings")
                continue
            if await keyed_by(stream, event, readings[0].patient_id):
                await handle_vitals(stream, event, readings, "fhir")

    @app.agent(ecg_topic)
    async def ecg_agent(stream: Any) -> None:
        async for event in stream.noack().events():
            if not await taken(ecg_states, stream, event):
                continue
            msg = event.message
            try:
                chunk = decode_ecg_chunk(event.value)
            except Rejected as r:
                await dead_letter(stream, event, r.reason, r.detail)
                continue
            if not await keyed_by(stream, event, chunk.patient_id):
                continue
            key = chunk.patient_id  # all of a patient's leads: one state, one set of ECG alarms
            state = ecg_states.get(key)
            if state is None:  # kept per patient and lead before 2026-11-28: carry that state on
                state = ecg_states.get(f"{key}/{chunk.lead.name}")
            if state is not None and msg.offset <= state.offset:
                ecg_states.covered(key, stream, event)  # already applied before a restart
                continue
            if state is not None and not ecg_states.holds(key):  # (a new state has no alarms to catch up on)
                await commands.caught_up(ecg_states, key, msg.partition, state, chunk.patient_id)
            source = SourceRef(msg.topic, msg.partition, msg.offset)
            try:
                state, new_events = process_chunk(state, chunk, source, classifier, engine)
            except Rejected as r:
                await dead_letter(stream, event, r.reason, r.detail)
                continue
            ecg_states.applied(key, msg.partition, state)
            await (await the_sink()).put(SinkItem(
                new_events, [waveform_of(chunk, source)],
                on_durable=ecg_states.durable(key, stream, event),
                on_rejected=rejected_by_store(stream, event)))

    @app.task  # type: ignore[untyped-decorator]
    async def follow_commands() -> None:
        """Give the care team's commands (appended by the gateway) to the engines of the
        patients this worker holds; see `streams.commands`."""
        recorder = await PostgresRecorder.connect(cfg.database_url)
        try:
            await commands.follow(recorder)
        finally:
            await recorder.close()

    @app.task  # type: ignore[untyped-decorator]
    async def checkpoint() -> None:
        # A task, not an @app.timer: Faust ends timers as soon as shutdown starts, but
        # shutdown then waits for every unacknowledged message, and only this loop
        # acknowledges them (after checkpointing). As a timer, SIGTERM never finished.
        # One share of the keys per tick (see `streams.states`): a ward's snapshots do
        # not all come in one burst every interval.
        tick = 0
        while True:
            await asyncio.sleep(cfg.checkpoint_interval / CHECKPOINT_SHARES)
            share = (tick % CHECKPOINT_SHARES, CHECKPOINT_SHARES)
            tick += 1
            for states in (vitals_states, ecg_states):
                await states.checkpoint_idle(share=share)

    @app.task  # type: ignore[untyped-decorator]
    async def watch_recovery() -> None:
        await recovery_watchdog.watch(app)  # a changelog that never arrives means a rejoin

    loop_delay = LoopDelay()

    @app.task  # type: ignore[untyped-decorator]
    async def probe_loop() -> None:
        await loop_delay.run()

    def sink_stats() -> SinkStats | None:
        return sink["main"].stats if "main" in sink else None  # (opened by the first message)

    def collect() -> list[Family | HistogramFamily]:
        return worker_families(taken_by_topic, counters, sink_stats() or SinkStats(),
                               {"vitals": vitals_states, "ecg": ecg_states}, GC_PAUSES, loop_delay.histogram,
                               input_lag(app.consumer, states_of), not_ready(app, sink_stats()) is None)

    @app.task  # type: ignore[untyped-decorator]
    async def serve_metrics() -> None:
        if cfg.metrics_port is None:
            return
        server = MetricsServer(collect, lambda: not_ready(app, sink_stats()))
        try:
            port = await server.start(cfg.metrics_host, cfg.metrics_port)
        except OSError as e:  # (a port taken, say) the patients come first: go on without metrics
            log.error("cannot serve metrics on %s:%d: %s; the worker runs on without them", cfg.metrics_host,
                      cfg.metrics_port, e)
            return
        log.warning(SERVING, cfg.metrics_host, port)
        try:
            await asyncio.Event().wait()  # until the worker stops (its tasks are cancelled)
        finally:
            await server.close()

    reported: Counter[str] = Counter()

    @app.timer(30.0)  # type: ignore[untyped-decorator]
    async def report() -> None:
        # At WARNING when messages were dead-lettered since the last report, so that the
        # counters per reason show at the worker's default log level (warn); else INFO.
        level = logging.INFO if counters == reported else logging.WARNING
        reported.clear()
        reported.update(counters)
        st = sink["main"].stats if "main" in sink else None
        log.log(level, "sink: %d batches, %d events, %d waveforms, %d retries; checkpoints %d; "
                "gaps read again %d, not in the log %d; dead letters by reason %s", st.batches if st else 0,
                st.events if st else 0, st.waveforms if st else 0, st.retries if st else 0,
                vitals_states.checkpoints + ecg_states.checkpoints, vitals_states.rewinds + ecg_states.rewinds,
                vitals_states.holes + ecg_states.holes, dict(sorted(counters.items())))
        counts, longest = GC_PAUSES.take()
        # A pause holds every message being processed: at WARNING from 100 ms.
        log.log(logging.WARNING if max(longest) >= 0.1 else logging.INFO, "%s", report_line(counts, longest))
        # A loop held for longer than a chunk held every patient that long: at WARNING.
        delay = loop_delay.take()
        log.log(logging.WARNING if delay > CHUNK_S else logging.INFO, "%s",
                loop_report_line(delay, loop_delay.over(CHUNK_S)))

    return app


async def declare_topics(cfg: WorkerConfig, app: faust.App, timeout: float = 60.0) -> None:
    """Create the topics the worker reads and writes, as Faust would, and wait until the
    broker's metadata lists them with leaders.

    Faust declares its table changelogs as the worker starts, but the consumer's first
    metadata request can come before the broker's metadata shows a topic just created;
    aiokafka then refreshes it only every ``metadata.max.age.ms`` (5 minutes). Meanwhile
    the group leader assigns no changelog partitions, so a partition that moves to
    another worker arrives there without its table: every patient's state restarts."""
    names = cfg.topics
    wanted: dict[str, tuple[int, dict[str, str]]] = {
        name: (cfg.partitions, {}) for name in (names.vitals, names.fhir, names.ecg)}
    wanted[names.dead_letter] = (1, {})
    for table in app.tables.values():
        wanted[table.changelog_topic.get_topic_name()] = (cfg.partitions, dict(CHANGELOG_CONFIG))
    admin = AIOKafkaAdminClient(bootstrap_servers=",".join(cfg.brokers))
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, n, cfg.replication_factor, topic_configs=conf)
                                              for name, (n, conf) in wanted.items()])
        for topic, code, message in response.topic_errors:
            if code not in (0, 36):  # 36: it exists already
                log.warning("creating topic %s: error %s (%s); Faust will try again", topic, code, message)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            described = await admin.describe_topics(list(wanted))
            missing = sorted(t["topic"] for t in described
                             if t["error_code"] or not t["partitions"]
                             or any(p["leader"] < 0 for p in t["partitions"]))
            if not missing:
                for t in described:
                    if len(t["partitions"]) != wanted[t["topic"]][0]:
                        log.warning("topic %s has %d partitions, not %d: check --partitions", t["topic"],
                                    len(t["partitions"]), wanted[t["topic"]][0])
                return
            if asyncio.get_running_loop().time() > deadline:
                log.warning("topics %s still have no leader after %.0f s; starting anyway", missing, timeout)
                return
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


GC_PAUSES = GcPauses()
"""The worker's collector pauses (installed by `run_worker`), in its periodic report."""


def run_worker(cfg: WorkerConfig, loglevel: str = "warn") -> None:
    """Run the worker until SIGTERM/SIGINT. Blocks; owns the event loop."""
    import mode.loop
    from faust.worker import Worker

    # uvloop runs the event loop's own work (callbacks, tasks, sockets) in C: at 500
    # beds the worker spent 1.32-1.41 ms of CPU per patient-second with it against
    # 1.44-1.51 with asyncio's loop (bench/ward.py, runs alternated). Before anything
    # makes a loop: declare_topics's asyncio.run and the Worker both take it.
    mode.loop.use("uvloop")
    # numba kernels compiled (or loaded from its cache) and the classifier run once
    # before the first chunk, not during it
    warm_up(classifier=beat_classifier(cfg))
    app = build_app(cfg)
    if not cfg.embedded_broker:  # the demo's Tansu broker runs one worker; Faust declares its topics
        asyncio.run(declare_topics(cfg, app))
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # Faust's start-up spinner puts the root logger at DEBUG (a handler that turns the
    # spinner on every record), and it stays there: every library's debug call then
    # builds a log record (hundreds a second from aiokafka). No spinner, no DEBUG.
    worker.spinner = None
    GC_PAUSES.install()
    frozen = freeze_startup_heap()
    log.info("%d objects of the start-up heap moved out of the collector's way", frozen)
    worker.execute_from_commandline()
