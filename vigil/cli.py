"""The ``vigil`` command.

    vigil demo [--patients N] [--duration S]    the live demo on embedded services
    vigil services [--kafka apache|tansu] [--brokers 1|3]
    vigil worker [--partitions N] [--beat-model fp32|int8|off] [--loglevel L]   the Faust stream worker
    vigil gateway                                WebSocket gateway + dashboard
    vigil simulate [--patients N] [--duration S] [--seed N] [--no-ecg] [--onset S] [--ramp S] [--fast]
                   [--scenario NAME[,NAME]] [ECG options: --ectopics, --vt-at, --af-at, --leads, ...; see --help]
    vigil simulate --replay RECORD [--channel NAME|INDEX] [--speed X] [--patient ID] [--duration S] [--fast]
    vigil db migrate
    vigil audit verify
    vigil news2 --input FILE.jsonl               NEWS2 score per observation ('-' = stdin)
    vigil dead-letters [--reason R] [--source-topic T] [--json] [--save DIR] [--follow]   what the workers refused
    vigil rpeaks RECORD [--channel 0] [--chunk-seconds 1] [--json]
    vigil beats RECORD [--channel 0] [--model fp32|int8] [--json]   beats and their AAMI classes (ONNX model)
    vigil token --user NAME --role ROLE --ward W [--ward W2] [--ttl S]   a dashboard token (needs VIGIL_JWT_SECRET)
    vigil triage RECORD [--json]                 confirm or reject a monitor's VT alarm (2015 challenge record)
    vigil audit replay (--stream ID | --patient ID) [--from TIME] [--to TIME] [--actor NAME]

Configuration comes from environment variables (`vigil.config`); a bad value is
reported in one line and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from event_store.exceptions import EventStoreError
from vigil.config import LOG_LEVELS, ConfigError, Settings, make_state_dir, required
from vigil.runtime import GC_GEN0_THRESHOLD, WORKER_GC_GEN0_THRESHOLD, tune_gc
from vigil.services.process import ServiceError, ServiceSettingError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vigil", description="Real-time patient-monitoring stream processor")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the live demo (embedded services unless VIGIL_*_URL are set)")
    demo.add_argument("--patients", type=int, default=8)
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    svc = sub.add_parser("services", help="start Kafka and PostgreSQL locally and print their URLs")
    svc.add_argument("--kafka", choices=("apache", "tansu"), default="apache")
    svc.add_argument("--brokers", type=int, choices=(1, 3), default=1)
    worker = sub.add_parser("worker", help="run the Faust stream worker")
    worker.add_argument("--partitions", type=int, default=4,
                        help="partitions of the input topics and table changelogs (default 4); every worker of "
                             "a group must agree, and it bounds how many workers get a share")
    worker.add_argument("--beat-model", choices=("fp32", "int8", "off"), default="fp32",
                        help="the ONNX beat classifier every ECG beat goes through (default fp32; off: none)")
    worker.add_argument("--loglevel", choices=LOG_LEVELS,
                        help="the worker's log level (default $VIGIL_WORKER_LOGLEVEL, else warn)")
    sub.add_parser("gateway", help="run the WebSocket gateway and dashboard")
    sim = sub.add_parser("simulate", help="publish a simulated ward (250 Hz ECG chunks and 1 Hz vitals), or replay a "
                                          "WFDB record's ECG, to Kafka; deterministic for a seed")
    sim.add_argument("--patients", type=int, default=None, help="beds (default 8)")
    sim.add_argument("--duration", type=int, default=None,
                     help="seconds to publish (default: forever; with --replay, the whole record)")
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--no-ecg", dest="ecg", action="store_false", help="vitals only")
    sim.add_argument("--onset", type=float, default=None,
                     help="seconds before scripted deterioration starts (default: each scenario's own)")
    sim.add_argument("--ramp", type=float, default=None, help="seconds the deterioration takes")
    sim.add_argument("--fast", action="store_true", help="publish as fast as the broker takes it, not in real time")
    sim.add_argument("--scenario", action="append", metavar="NAME[,NAME]",
                     help="stable, sepsis, hypoxia or bradycardia, dealt to the beds round-robin in the order given "
                          "(repeatable; default: sepsis, stable, stable, hypoxia, stable, bradycardia, stable, stable)")
    sim_ecg = sim.add_argument_group(
        "synthetic ECG", "Applied to every bed's ECG (McSharry model), whose rate follows its scenario's heart rate. "
        "Times are seconds from the start of the run; an episode without :DURATION lasts to the end.")
    sim_ecg.add_argument("--hr-variability", type=float, metavar="BPM",
                         help="standard deviation of the sinus rate (default 1, at most 20%% of a bed's rate)")
    sim_ecg.add_argument("--ectopics", type=float, metavar="PER_MIN",
                         help="premature ventricular contractions a minute during sinus rhythm, 0-30 (default 0)")
    sim_ecg.add_argument("--vt-at", action="append", metavar="S[:DURATION]",
                         help="a run of ventricular tachycardia (default 10 beats; repeatable)")
    sim_ecg.add_argument("--vt-rate", type=float, metavar="BPM", help="rate of the VT runs, 100-300 (default 180)")
    sim_ecg.add_argument("--af-at", action="append", metavar="S[:DURATION]",
                         help="atrial fibrillation, irregular at about 110 bpm (repeatable; 0: throughout)")
    sim_ecg.add_argument("--asystole-at", metavar="S[:DURATION]", help="no electrical activity; then sinus resumes")
    sim_ecg.add_argument("--noise", type=float, metavar="MV", help="standard deviation of white measurement noise")
    sim_ecg.add_argument("--motion", type=float, metavar="PER_MIN",
                         help="electrode-motion artefact bursts a minute (about 0.5 mV, 1 s each)")
    sim_ecg.add_argument("--leads-off-at", action="append", metavar="S[:DURATION]",
                         help="leads off: the samples go out at the negative rail, which the worker flags as leads "
                              "off (repeatable)")
    sim_ecg.add_argument("--leads", type=int, choices=(1, 2),
                         help="ECG leads each monitor sends: II, or II and V1 (the worker alarms once for both)")
    sim_replay = sim.add_argument_group(
        "record replay", "Publish one ECG channel of a WFDB record (MIT-BIH, the 2015 challenge) instead of the ward: "
        "1-s int16 chunks stamped with the record's own time base from now; --speed compresses only when they are "
        "sent. Missing samples go out at the negative rail (leads off).")
    sim_replay.add_argument("--replay", metavar="RECORD",
                            help="record path without extension, e.g. ../shared/data/mitdb/100")
    sim_replay.add_argument("--channel", metavar="NAME|INDEX", help="signal to send (default 0), e.g. MLII or II")
    sim_replay.add_argument("--speed", type=float, metavar="X", help="times real time (default 1)")
    sim_replay.add_argument("--patient", metavar="ID",
                            help="pseudonymous patient id to key the chunks by (default replay-<record name>)")
    db = sub.add_parser("db", help="database administration")
    db.add_argument("action", choices=("migrate", "rebuild-projections"))
    rpeaks = sub.add_parser("rpeaks", help="R peaks of a WFDB record through the streaming detector")
    rpeaks.add_argument("record", help="WFDB record path without extension, e.g. ../shared/data/mitdb/100")
    rpeaks.add_argument("--channel", type=int, default=0)
    rpeaks.add_argument("--chunk-seconds", type=float, default=1.0)
    rpeaks.add_argument("--json", action="store_true", help='print {"fs": Hz, "peaks": [...]}')
    beats = sub.add_parser("beats", help="beats of a WFDB record and their AAMI classes (N, S, V, F, Q)")
    beats.add_argument("record", help="WFDB record path without extension, e.g. ../shared/data/mitdb/100")
    beats.add_argument("--channel", type=int, default=0)
    beats.add_argument("--model", choices=("fp32", "int8"), default="fp32")
    beats.add_argument("--json", action="store_true", help='print {"fs": Hz, "beats": [[sample, class], ...]}')
    token = sub.add_parser("token", help="issue a signed dashboard token (HS256, key from VIGIL_JWT_SECRET)")
    token.add_argument("--user", required=True)
    token.add_argument("--role", required=True, choices=("nurse", "physician", "auditor", "admin"))
    token.add_argument("--ward", action="append", default=[], help="ward the user may see (repeatable)")
    token.add_argument("--ttl", type=float, default=12 * 3600, help="seconds the token is valid (default 12 h)")
    triage = sub.add_parser("triage", help="confirm or reject a bedside monitor's alarm from its record")
    triage.add_argument("record", help="WFDB record path without extension, e.g. ../shared/data/challenge2015/v100s")
    triage.add_argument("--json", action="store_true", help='print {"alarm": type, "true_alarm": bool}')
    news2 = sub.add_parser("news2", help="score NEWS2 for one JSON observation per line")
    news2.add_argument("--input", required=True, help="JSON Lines file, or - for standard input")
    dead = sub.add_parser("dead-letters", help="list what the workers refused, by reason, with the original bytes")
    dead.add_argument("--reason", action="append", help="only this reason code (repeatable), e.g. crc_mismatch")
    dead.add_argument("--source-topic", help="only messages refused on this topic, e.g. vigil.ecg")
    dead.add_argument("--json", action="store_true", help="one JSON object per message (payload whole, base64)")
    dead.add_argument("--save", metavar="DIR", help="write each original payload to DIR/<topic>-<partition>-<offset>.bin")
    dead.add_argument("--follow", action="store_true", help="keep reading new dead letters until interrupted")
    audit = sub.add_parser("audit", help="verify the log's integrity or replay a timeline")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("verify", help="recompute the hash chain; exit 1 and name the first bad position")
    replay = audit_sub.add_parser("replay", help="print a stream's or a patient's timeline")
    who = replay.add_mutually_exclusive_group(required=True)
    who.add_argument("--stream", help="stream id, e.g. patient-p0001")
    who.add_argument("--patient", help="pseudonymous patient id, e.g. p0001")
    replay.add_argument("--from", dest="start", type=_timestamp, help="ISO 8601 start (inclusive)")
    replay.add_argument("--to", dest="end", type=_timestamp, help="ISO 8601 end (exclusive)")
    replay.add_argument("--actor", help="who is reading (recorded); default: the OS user")
    return p


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time") from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        tune_gc(default=WORKER_GC_GEN0_THRESHOLD if args.command == "worker" else GC_GEN0_THRESHOLD)
        settings = Settings.from_env()
        return _dispatch(args, settings)
    except (ConfigError, ServiceSettingError) as e:
        print(f"vigil: configuration error: {e}", file=sys.stderr)
        return 2
    except (ServiceError, EventStoreError) as e:
        print(f"vigil: {e}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from vigil import launcher

    if args.command == "demo":
        if args.patients < 1:
            raise ConfigError("--patients must be at least 1")
        return launcher.run_demo(settings, args.patients, args.duration)
    if args.command == "services":
        return launcher.run_services(settings.state_dir / "services", args.kafka, args.brokers)
    if args.command == "db" and args.action == "rebuild-projections":
        position = asyncio.run(launcher.rebuild_projections(required(settings.database_url, "VIGIL_DATABASE_URL")))
        print(f"projections rebuilt up to position {position}")
        return 0
    if args.command == "db":
        applied = asyncio.run(launcher.migrate(required(settings.database_url, "VIGIL_DATABASE_URL")))
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
        return 0
    if args.command == "rpeaks":
        from vigil.rpeaks_cli import run as rpeaks_run

        if args.chunk_seconds <= 0:
            raise ConfigError("--chunk-seconds must be > 0")
        return rpeaks_run(args.record, args.channel, args.chunk_seconds, args.json)
    if args.command == "beats":
        from vigil.beats_cli import run as beats_run

        return beats_run(args.record, args.channel, args.json, args.model)
    if args.command == "token":
        import os

        from dashboards.tokens import issue_token

        secret = os.environ.get("VIGIL_JWT_SECRET")
        if not secret:
            raise ConfigError("VIGIL_JWT_SECRET is not set (the key the gateway verifies tokens with)")
        if args.role in ("nurse", "physician") and not args.ward:
            raise ConfigError(f"a {args.role} needs at least one --ward")
        try:
            print(issue_token(secret, args.user, args.role, args.ward, args.ttl))
        except ValueError as e:
            raise ConfigError(str(e)) from e
        return 0
    if args.command == "triage":
        from vigil.triage_cli import run as triage_run

        return triage_run(args.record, args.json)
    if args.command == "news2":
        from vigil.news2_batch import run

        return run(args.input)
    if args.command == "dead-letters":
        from pathlib import Path

        from streams.topics import TopicNames
        from vigil.dead_letters_cli import run as dead_letters_run

        required(settings.kafka_url, "VIGIL_KAFKA_URL")
        return dead_letters_run(settings.kafka_bootstrap(), TopicNames(settings.topic_prefix).dead_letter,
                                reasons=tuple(args.reason or ()), source_topic=args.source_topic, as_json=args.json,
                                save=None if args.save is None else Path(args.save), follow=args.follow)
    if args.command == "audit":
        from vigil import audit

        url = required(settings.database_url, "VIGIL_DATABASE_URL")
        if args.audit_command == "verify":
            return asyncio.run(audit.verify_command(url))
        return asyncio.run(audit.replay_command(
            url, stream_id=args.stream, patient_id=args.patient, start=args.start, end=args.end, actor=args.actor))
    if args.command == "worker":
        from streams.app import WorkerConfig, run_worker
        from streams.topics import TopicNames

        if args.partitions < 1:
            raise ConfigError("--partitions must be >= 1")

        url = required(settings.database_url, "VIGIL_DATABASE_URL")
        required(settings.kafka_url, "VIGIL_KAFKA_URL")
        asyncio.run(launcher.migrate(url))
        datadir = settings.state_dir / "worker" / (settings.worker_group or settings.topic_prefix)
        make_state_dir(datadir.parent)
        run_worker(WorkerConfig(
            brokers=settings.kafka_bootstrap().split(","),
            database_url=url,
            topics=TopicNames(settings.topic_prefix),
            starting_limits=settings.starting_limits(),
            escalate_after_s=settings.escalate_after_s,
            embedded_broker=settings.kafka_embedded,
            app_id=settings.worker_group,
            instance_id=settings.worker_instance,
            metrics_port=settings.worker_metrics_port,
            metrics_host=settings.worker_metrics_host,
            partitions=args.partitions,
            datadir=str(datadir),
            beat_model=None if args.beat_model == "off" else args.beat_model,
            checkpoint_interval=float(settings.worker_checkpoint_s),
            store=f"{settings.worker_store}://",
        ), loglevel=args.loglevel or settings.worker_loglevel)
        return 0
    if args.command == "gateway":
        return asyncio.run(_gateway(settings))
    if args.command == "simulate":
        from vigil.simulate_cli import run as simulate_run

        return simulate_run(args, settings)
    raise AssertionError(args.command)


async def _gateway(settings: Settings) -> int:
    from dashboards.config import GatewayConfig, GatewayConfigError
    from dashboards.gateway import Gateway
    from event_store.postgres import PostgresRecorder
    from event_store.projections import PostgresProjector
    from event_store.store import EventStore

    try:
        gateway_config = dataclasses.replace(GatewayConfig.from_env(), starting_limits=settings.starting_limits())
        gateway_config.check_bind(settings.gateway_host)
    except GatewayConfigError as e:
        raise ConfigError(str(e)) from e
    url = required(settings.database_url, "VIGIL_DATABASE_URL")
    store = await PostgresRecorder.connect(url)
    await store.migrate()
    # The gateway process also keeps the ward-status projections current; several
    # gateways may run it at once, the projector's checkpoint lock serialises them.
    projector = await PostgresProjector.connect(url, store)
    projecting = asyncio.create_task(projector.run(), name="projector")
    from event_store.waveforms import WaveformStore

    waveforms = await WaveformStore.connect(url)
    gateway = Gateway(EventStore(store), gateway_config, waveforms)
    server = await gateway.start(settings.gateway_host, settings.gateway_port)
    port = server.sockets[0].getsockname()[1] if server.sockets else settings.gateway_port
    print(f"gateway listening on http://{settings.gateway_host}:{port}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    await gateway.stop()
    projecting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await projecting
    await projector.close()
    await waveforms.close()
    await store.close()
    return 0
