"""``vigil simulate``: publish a simulated ward, or replay a WFDB record's ECG, to Kafka.

The ward (`streams.ward.SimulatedWard`): scripted vitals scenarios and McSharry-model
ECG whose rate follows each bed's scenario; the ECG options shape every bed's
rhythm and noise (`streams.ecg_synth`). The replay (`streams.replay`): one channel
of a record as 1-s chunks on the record's own time base, sent at real time or
``--speed`` times faster. Both are deterministic for a seed.

Options of the other mode are refused, not ignored (each defaults to None for
that), and every bad value is a `ConfigError` (one line, exit status 2) raised
before Kafka is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time

from streams.ecg_synth import EcgConfig, Episode, Noise, Rhythm, VtRun
from streams.scenarios import SCRIPTS, ScenarioName
from streams.topics import TopicNames
from streams.ward import DEFAULT_SCENARIOS, SimulatedWard, publish_ward
from vigil.config import ConfigError, Settings, required

__all__ = ["run", "WARD_OPTIONS", "REPLAY_OPTIONS"]

_ECG_OPTIONS = ("hr_variability", "ectopics", "vt_at", "vt_rate", "af_at", "asystole_at", "noise", "motion",
                "leads_off_at", "leads")
WARD_OPTIONS = ("patients", "scenario", "onset", "ramp", *_ECG_OPTIONS)
"""Ward options, as argparse names them; `_ECG_OPTIONS` shape the ECG."""
REPLAY_OPTIONS = ("channel", "speed", "patient")


def run(args: argparse.Namespace, settings: Settings) -> int:
    topics = TopicNames(settings.topic_prefix)
    if args.duration is not None and args.duration < 1:
        raise ConfigError("--duration must be >= 1")
    given = [name for name in WARD_OPTIONS + REPLAY_OPTIONS if getattr(args, name) is not None]
    if args.replay is not None:
        stray = [name for name in given if name in WARD_OPTIONS] + ([] if args.ecg else ["no_ecg"])
        if stray:
            raise ConfigError(f"--replay sends a record's ECG only; drop {_flag(stray[0])}")
        return _replay(args, settings, topics)
    if stray := [name for name in given if name not in WARD_OPTIONS]:
        raise ConfigError(f"{_flag(stray[0])} needs --replay")
    if not args.ecg and (stray := [name for name in given if name in _ECG_OPTIONS]):
        raise ConfigError(f"{_flag(stray[0])} shapes the ECG; drop --no-ecg")
    ward = _ward(args, topics)
    required(settings.kafka_url, "VIGIL_KAFKA_URL")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(publish_ward(settings.kafka_bootstrap(), ward, seconds=args.duration, realtime=not args.fast))
    return 0


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _replay(args: argparse.Namespace, settings: Settings, topics: TopicNames) -> int:
    from streams.replay import load_record, publish_replay, replay_messages  # wfdb: only when replaying

    speed = 1.0 if args.speed is None else args.speed
    if not 0 < speed <= 1000:
        raise ConfigError(f"--speed must be above 0 and at most 1000, got {args.speed}")
    channel = args.channel or "0"
    start_us = time.time_ns() // 1000
    try:
        record = load_record(args.replay, channel=int(channel) if channel.isdigit() else channel)
        messages = replay_messages(record, patient_id=args.patient or f"replay-{record.name}", topic=topics.ecg,
                                   speed=speed, start_us=start_us, duration_s=args.duration)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--replay: {e}") from e
    required(settings.kafka_url, "VIGIL_KAFKA_URL")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(publish_replay(settings.kafka_bootstrap(), messages, start_us=start_us, realtime=not args.fast))
    return 0


def _ward(args: argparse.Namespace, topics: TopicNames) -> SimulatedWard:
    patients = 8 if args.patients is None else args.patients
    if patients < 1:
        raise ConfigError("--patients must be >= 1")
    known: dict[str, ScenarioName] = {script.name: script.name for script in SCRIPTS.values()}
    asked = [name.strip() for text in args.scenario or () for name in text.split(",")]
    if unknown := [name for name in asked if name not in known]:
        raise ConfigError(f"--scenario: unknown {unknown[0]!r}; choose from {', '.join(known)}")
    spans: dict[str, list[Episode]] = {}
    for option, texts in (("--vt-at", args.vt_at), ("--af-at", args.af_at), ("--leads-off-at", args.leads_off_at),
                          ("--asystole-at", None if args.asystole_at is None else [args.asystole_at])):
        try:
            spans[option] = [Episode.parse(text) for text in texts or ()]
        except ValueError as e:
            raise ConfigError(f"{option}: {e}") from e
    vt_rate = 180.0 if args.vt_rate is None else args.vt_rate
    asystole = spans["--asystole-at"][0] if spans["--asystole-at"] else None
    try:
        # A VT run is so many beats: DURATION at the run's rate, 10 when not given.
        vt_runs = tuple(VtRun(e.start_s, max(round(e.duration_s * vt_rate / 60), 1) if math.isfinite(e.duration_s)
                              else 10, vt_rate) for e in spans["--vt-at"])
        rhythm = Rhythm(pvc_per_min=args.ectopics or 0.0, vt_runs=vt_runs, af=tuple(spans["--af-at"]),
                        asystole_at_s=None if asystole is None else asystole.start_s,
                        asystole_s=math.inf if asystole is None else asystole.duration_s)
        noise = Noise(gaussian_mv=args.noise or 0.0, motion_per_min=args.motion or 0.0,
                      leads_off=tuple(spans["--leads-off-at"]))
        config = EcgConfig(hr_std_bpm=1.0 if args.hr_variability is None else args.hr_variability, rhythm=rhythm,
                           noise=noise)
        return SimulatedWard(patients, seed=args.seed, topics=topics, ecg=args.ecg,
                             scenarios=[known[name] for name in asked] or DEFAULT_SCENARIOS, onset_s=args.onset,
                             ramp_s=args.ramp, ecg_config=config, leads=1 if args.leads is None else args.leads)
    except ValueError as e:
        raise ConfigError(str(e)) from e
