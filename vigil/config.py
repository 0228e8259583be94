"""Configuration, read once from environment variables and validated up front.

Every setting Vigil reads from the environment is declared here and nowhere else.
`Settings.from_env()` either returns a complete, checked `Settings` or raises
`ConfigError` with a one-line message naming the variable, so the CLI can print
it and exit instead of showing a traceback.

An unset `VIGIL_KAFKA_URL` / `VIGIL_DATABASE_URL` means "start embedded services
in the state folder" (the demo); set, they point at external services.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from pathlib import Path
from urllib.parse import urlsplit

from detectors.alarm_conditions import Priority
from detectors.alarm_limits import CARE_AREAS, AlarmLimits, starting_limits
from streams.states import CHECKPOINT_INTERVAL_S

__all__ = ["ConfigError", "Settings", "parse_kafka_url", "parse_database_url"]

_KAFKA_SCHEMES = ("kafka", "tcp", "plaintext")
_DB_SCHEMES = ("postgresql", "postgres")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _check_port(name: str, port: int | None, value: str) -> None:
    if port is None:
        raise ConfigError(f"{name}: {value!r} has no port")
    if not 0 < port < 65536:
        raise ConfigError(f"{name}: port {port} is outside 1-65535")


def parse_kafka_url(value: str, name: str = "VIGIL_KAFKA_URL") -> list[tuple[str, int]]:
    """Parse ``kafka://host:port[,host:port...]`` into (host, port) pairs."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "kafka", value
    if scheme not in _KAFKA_SCHEMES:
        raise ConfigError(f"{name}: scheme {scheme!r} is not one of {', '.join(_KAFKA_SCHEMES)}")
    hosts: list[tuple[str, int]] = []
    for part in rest.rstrip("/").split(","):
        try:
            parsed = urlsplit(f"//{part.strip()}")
            port = parsed.port
        except ValueError as e:
            raise ConfigError(f"{name}: {part!r} is not host:port ({e})") from e
        if not parsed.hostname:
            raise ConfigError(f"{name}: {part!r} has no host")
        _check_port(name, port, part)
        assert port is not None  # narrowed by _check_port
        hosts.append((parsed.hostname, port))
    return hosts


def parse_database_url(value: str, name: str = "VIGIL_DATABASE_URL") -> str:
    """Check a ``postgresql://user[:pw]@host:port/db`` URL and return it unchanged."""
    try:
        parsed = urlsplit(value)
        port = parsed.port
    except ValueError as e:
        raise ConfigError(f"{name}: {value!r} is not a URL ({e})") from e
    if parsed.scheme not in _DB_SCHEMES:
        raise ConfigError(f"{name}: scheme {parsed.scheme!r} is not postgresql://")
    if not parsed.hostname:
        raise ConfigError(f"{name}: {value!r} has no host")
    if port is not None:
        _check_port(name, port, value)
    if not parsed.path.strip("/"):
        raise ConfigError(f"{name}: {value!r} names no database")
    return value


def _escalation(raw: str | None) -> Mapping[Priority, float] | None:
    if not raw:
        return None
    parts = raw.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(10 <= v <= 3600 for v in values):
        raise ConfigError(f"VIGIL_ALARM_ESCALATE_S: {raw!r} is not three numbers of seconds, 10-3600, for high, "
                          f"medium and low priority alarms (e.g. 60,120,300)")
    return MappingProxyType(dict(zip((Priority.HIGH, Priority.MEDIUM, Priority.LOW), values, strict=True)))


def required(value: str | None, name: str) -> str:
    """``value`` of the setting ``name``, which this command needs; a `ConfigError` if unset."""
    if value is None:
        raise ConfigError(f"{name} is not set (this command needs an external service; `vigil demo` starts embedded ones)")
    return value


def make_state_dir(path: Path) -> Path:
    """Create a folder under ``VIGIL_STATE_DIR`` (and it) if missing; a path that cannot be
    one (a file in the way, no permission) is a configuration error naming the variable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"VIGIL_STATE_DIR: cannot create {path} ({e.strerror or e})") from e
    return path


LOG_LEVELS = ("debug", "info", "warn", "error")
WORKER_STORES = ("memory", "rocksdb")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name) or default
    if raw not in choices:
        raise ConfigError(f"{name}: {raw!r} is not one of {', '.join(choices)}")
    return raw


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ConfigError(f"{name}: {raw!r} is not an integer") from e
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: {value} is outside {lo}-{hi}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the processes need, already validated."""

    kafka_url: str | None
    """``kafka://host:port,...`` of an external broker, or None for the embedded one."""
    database_url: str | None
    """``postgresql://...`` of an external database, or None for the embedded cluster."""
    state_dir: Path
    """Where embedded services keep their data (``VIGIL_STATE_DIR``, default ``.vigil``)."""
    gateway_host: str
    gateway_port: int
    """0 picks a free port (tests)."""
    topic_prefix: str
    """Prefix for every Kafka topic and the consumer group, so runs can share a broker."""
    hr_high_limit: int | None
    """The site's high heart-rate alarm limit, bpm, in place of the care area's
    (``VIGIL_HR_HIGH_LIMIT``, 30-300); None: the care area's own."""
    worker_group: str | None
    """Consumer group (Faust app id) of the worker; default ``<prefix>-worker``."""
    worker_instance: str | None
    """Static group membership id of the worker (``VIGIL_WORKER_INSTANCE``; see
    `streams.app.WorkerConfig.instance_id`); default none (dynamic membership)."""
    worker_loglevel: str
    """The worker's log level (``VIGIL_WORKER_LOGLEVEL``: debug, info, warn or error;
    default warn); ``vigil worker --loglevel`` overrides it."""
    kafka_embedded: bool
    """The broker is the demo's embedded Tansu (``VIGIL_KAFKA_EMBEDDED=1``), which needs gentler client settings."""
    worker_store: str = "memory"
    """Where the worker keeps its Faust tables (``VIGIL_WORKER_STORE``): ``memory``, read
    again from the changelog topics at every start, or ``rocksdb``, on local disk in
    the worker's state folder, so that a restarted worker reads only what changed since."""
    worker_checkpoint_s: int = round(CHECKPOINT_INTERVAL_S)
    """Seconds between the worker's state checkpoints (``VIGIL_WORKER_CHECKPOINT_S``,
    1-300; default `streams.states.CHECKPOINT_INTERVAL_S`): longer costs less CPU, and a
    restart after a crash replays up to that much input."""
    worker_metrics_port: int | None = None
    """Port of the worker's /metrics, /healthz and /readyz (``VIGIL_WORKER_METRICS_PORT``,
    0-65535, 0 for any free one; unset: no server; `streams.metrics`)."""
    worker_metrics_host: str = "127.0.0.1"
    """Address that server listens on (``VIGIL_WORKER_METRICS_HOST``; 0.0.0.0 in a container)."""
    escalate_after_s: Mapping[Priority, float] | None = None
    """Seconds an unacknowledged alarm of each priority waits before it
    escalates (``VIGIL_ALARM_ESCALATE_S``, ``high,medium,low``, each 10-3600); None:
    the alarm engine's defaults (`detectors.alarms.AlarmPolicy`)."""
    care_area: str = "ward"
    """Care area whose default alarm limits a patient starts from (``VIGIL_CARE_AREA``:
    icu, step-down or ward; `detectors.alarm_limits.CARE_AREAS`). The worker raises
    alarms against them and the gateway resolves limits commands against them."""

    def starting_limits(self) -> AlarmLimits:
        """The limits a patient starts from (`detectors.alarm_limits.starting_limits`)."""
        return starting_limits(self.care_area, self.hr_high_limit)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        kafka_url = env.get("VIGIL_KAFKA_URL") or None
        if kafka_url is not None:
            parse_kafka_url(kafka_url)
        database_url = env.get("VIGIL_DATABASE_URL") or None
        if database_url is not None:
            parse_database_url(database_url)
        prefix = env.get("VIGIL_TOPIC_PREFIX", "vigil")
        if not prefix or not all(c.isalnum() or c in "-_." for c in prefix):
            raise ConfigError(f"VIGIL_TOPIC_PREFIX: {prefix!r} must be letters, digits, '-', '_' or '.'")
        return cls(
            kafka_url=kafka_url,
            database_url=database_url,
            state_dir=Path(env.get("VIGIL_STATE_DIR") or ".vigil").absolute(),
            gateway_host=env.get("VIGIL_GATEWAY_HOST") or "127.0.0.1",
            gateway_port=_int(env, "VIGIL_GATEWAY_PORT", 8765, 0, 65535),
            topic_prefix=prefix,
            hr_high_limit=(_int(env, "VIGIL_HR_HIGH_LIMIT", 0, 30, 300) if env.get("VIGIL_HR_HIGH_LIMIT") else None),
            worker_group=env.get("VIGIL_WORKER_GROUP") or None,
            worker_instance=env.get("VIGIL_WORKER_INSTANCE") or None,
            worker_loglevel=_choice(env, "VIGIL_WORKER_LOGLEVEL", LOG_LEVELS, "warn"),
            kafka_embedded=_int(env, "VIGIL_KAFKA_EMBEDDED", 0, 0, 1) == 1,
            worker_store=_choice(env, "VIGIL_WORKER_STORE", WORKER_STORES, "memory"),
            worker_checkpoint_s=_int(env, "VIGIL_WORKER_CHECKPOINT_S", round(CHECKPOINT_INTERVAL_S), 1, 300),
            worker_metrics_port=(_int(env, "VIGIL_WORKER_METRICS_PORT", 0, 0, 65535)
                                 if env.get("VIGIL_WORKER_METRICS_PORT") else None),
            worker_metrics_host=env.get("VIGIL_WORKER_METRICS_HOST") or "127.0.0.1",
            care_area=_choice(env, "VIGIL_CARE_AREA", tuple(CARE_AREAS), "ward"),
            escalate_after_s=_escalation(env.get("VIGIL_ALARM_ESCALATE_S")),
        )

    def kafka_bootstrap(self) -> str:
        """``host:port,host:port`` for aiokafka; only valid when ``kafka_url`` is set."""
        if self.kafka_url is None:
            raise ConfigError("VIGIL_KAFKA_URL is not set")
        return ",".join(f"{h}:{p}" for h, p in parse_kafka_url(self.kafka_url))
