from __future__ import annotations

import subprocess
import sys

import pytest

from detectors.alarm_conditions import Priority
from detectors.alarm_limits import default_limits, starting_limits
from vigil.config import ConfigError, Settings, parse_database_url, parse_kafka_url


def test_defaults_mean_embedded_services() -> None:
    s = Settings.from_env({})
    assert s.kafka_url is None and s.database_url is None
    assert s.gateway_port == 8765
    assert s.state_dir.name == ".vigil"


def test_kafka_url_with_several_brokers() -> None:
    assert parse_kafka_url("kafka://a:9092,b:9093") == [("a", 9092), ("b", 9093)]
    assert parse_kafka_url("127.0.0.1:19092") == [("127.0.0.1", 19092)]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("kafka://host", "has no port"),
        ("kafka://host:99999", "port"),
        ("http://host:9092", "scheme"),
        ("kafka://:9092", "no host"),
        ("kafka://host:abc", "not host:port"),
    ],
)
def test_bad_kafka_urls_name_the_variable(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="VIGIL_KAFKA_URL") as err:
        Settings.from_env({"VIGIL_KAFKA_URL": value})
    assert fragment.lower() in str(err.value).lower()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("mysql://u@h:5432/db", "scheme"),
        ("postgresql://u@h:70000/db", "port"),
        ("postgresql://u@h:5432", "names no database"),
        ("postgresql:///db", "no host"),
    ],
)
def test_bad_database_urls(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="VIGIL_DATABASE_URL") as err:
        parse_database_url(value)
    assert fragment.lower() in str(err.value).lower()


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"VIGIL_GATEWAY_PORT": "eighty"}, "not an integer"),
        ({"VIGIL_GATEWAY_PORT": "70000"}, "outside"),
        ({"VIGIL_TOPIC_PREFIX": "bad prefix!"}, "VIGIL_TOPIC_PREFIX"),
        ({"VIGIL_HR_HIGH_LIMIT": "5"}, "outside 30-300"),
        ({"VIGIL_CARE_AREA": "theatre"}, "VIGIL_CARE_AREA: 'theatre' is not one of icu, step-down, ward"),
        ({"VIGIL_ALARM_ESCALATE_S": "60,120"}, "VIGIL_ALARM_ESCALATE_S: '60,120' is not three numbers"),
        ({"VIGIL_ALARM_ESCALATE_S": "5,120,300"}, "VIGIL_ALARM_ESCALATE_S"),
        ({"VIGIL_ALARM_ESCALATE_S": "a,b,c"}, "VIGIL_ALARM_ESCALATE_S"),
        ({"VIGIL_ALARM_ESCALATE_S": "60,nan,300"}, "VIGIL_ALARM_ESCALATE_S"),
    ],
)
def test_other_bad_values(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_env(env)


def test_escalation_times_are_the_engines_unless_the_site_sets_them() -> None:
    assert Settings.from_env({}).escalate_after_s is None
    assert Settings.from_env({"VIGIL_ALARM_ESCALATE_S": "30,90,600"}).escalate_after_s == {
        Priority.HIGH: 30.0, Priority.MEDIUM: 90.0, Priority.LOW: 600.0}


def test_patients_start_from_the_care_areas_limits_with_the_sites_heart_rate_limit() -> None:
    assert Settings.from_env({}).starting_limits() == default_limits("ward")
    icu = Settings.from_env({"VIGIL_CARE_AREA": "icu"}).starting_limits()
    assert icu == default_limits("icu") and icu.parameters["hr"].high == 120
    site = Settings.from_env({"VIGIL_CARE_AREA": "icu", "VIGIL_HR_HIGH_LIMIT": "110"}).starting_limits()
    assert site.care_area == "icu" and site.parameters["hr"].high == 110
    assert site.parameters["spo2"] == icu.parameters["spo2"] and site.parameters["hr"].low == icu.parameters["hr"].low


def test_the_worker_and_the_gateway_start_from_the_same_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both take them from Settings: a gateway resolving a limits command against other
    defaults than the worker's would store, with an SpO2 change, another heart-rate limit."""
    from dashboards.config import GatewayConfig
    from streams.app import WorkerConfig
    from streams.topics import TopicNames

    settings = Settings.from_env({"VIGIL_CARE_AREA": "step-down", "VIGIL_HR_HIGH_LIMIT": "125"})
    worker = WorkerConfig(["k:9092"], "postgresql://u@h/db", TopicNames("t"), starting_limits=settings.starting_limits())
    gateway = GatewayConfig("x" * 32, starting_limits=settings.starting_limits())
    assert worker.starting_limits == gateway.starting_limits == starting_limits("step-down", 125)
    assert gateway.starting_limits.parameters["hr"].high == 125
    assert gateway.starting_limits.parameters["sbp"] == default_limits("step-down").parameters["sbp"]


def test_cli_reports_bad_config_in_one_line_without_traceback() -> None:
    env = {"VIGIL_DATABASE_URL": "postgresql://u@h:99999/db", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "vigil", "db", "migrate"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("vigil: configuration error: VIGIL_DATABASE_URL")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VIGIL_STATE_DIR": "/dev/null/state"}, "VIGIL_STATE_DIR: cannot create /dev/null/state (Not a directory)"),
        # With a broker URL the demo starts PostgreSQL first, so the broker is never reached.
        ({"VIGIL_KAFKA_URL": "kafka://127.0.0.1:1", "VIGIL_PG_BIN": "/nonexistent"},
         "VIGIL_PG_BIN=/nonexistent has no postgres binary"),
    ],
)
def test_settings_naming_unusable_paths_are_configuration_errors(env: dict[str, str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "vigil", "demo", "--duration", "1"], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"vigil: configuration error: {message}"]


def test_commands_needing_external_services_say_so() -> None:
    done = subprocess.run([sys.executable, "-m", "vigil", "worker"], env={"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "VIGIL_DATABASE_URL is not set" in done.stderr


def test_an_unreachable_database_is_one_line_not_a_traceback() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    env = {"VIGIL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/vigil", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "vigil", "audit", "verify"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("vigil: connect: database unreachable"), done.stderr
    assert "Traceback" not in done.stderr


def test_worker_instance_id_for_static_membership() -> None:
    assert Settings.from_env({}).worker_instance is None
    assert Settings.from_env({"VIGIL_WORKER_INSTANCE": "worker-a"}).worker_instance == "worker-a"


def test_worker_log_level_is_checked() -> None:
    assert Settings.from_env({}).worker_loglevel == "warn"
    assert Settings.from_env({"VIGIL_WORKER_LOGLEVEL": "info"}).worker_loglevel == "info"
    with pytest.raises(ConfigError, match="VIGIL_WORKER_LOGLEVEL"):
        Settings.from_env({"VIGIL_WORKER_LOGLEVEL": "loud"})


def test_the_worker_checkpoint_interval_defaults_to_the_workers_own() -> None:
    from streams.states import CHECKPOINT_INTERVAL_S

    assert Settings.from_env({}).worker_checkpoint_s == CHECKPOINT_INTERVAL_S
    assert Settings.from_env({"VIGIL_WORKER_CHECKPOINT_S": "5"}).worker_checkpoint_s == 5
    for bad in ("0", "301", "ten"):
        with pytest.raises(ConfigError, match="VIGIL_WORKER_CHECKPOINT_S"):
            Settings.from_env({"VIGIL_WORKER_CHECKPOINT_S": bad})


def test_the_worker_table_store_is_memory_or_rocksdb() -> None:
    assert Settings.from_env({}).worker_store == "memory"
    assert Settings.from_env({"VIGIL_WORKER_STORE": "rocksdb"}).worker_store == "rocksdb"
    with pytest.raises(ConfigError, match="VIGIL_WORKER_STORE"):
        Settings.from_env({"VIGIL_WORKER_STORE": "redis"})


def test_the_worker_metrics_server_is_off_unless_a_port_is_given() -> None:
    assert Settings.from_env({}).worker_metrics_port is None
    assert Settings.from_env({"VIGIL_WORKER_METRICS_PORT": ""}).worker_metrics_port is None
    on = Settings.from_env({"VIGIL_WORKER_METRICS_PORT": "9464", "VIGIL_WORKER_METRICS_HOST": "0.0.0.0"})
    assert (on.worker_metrics_port, on.worker_metrics_host) == (9464, "0.0.0.0")
    assert Settings.from_env({"VIGIL_WORKER_METRICS_PORT": "0"}).worker_metrics_port == 0  # any free port
    assert Settings.from_env({}).worker_metrics_host == "127.0.0.1"
    for bad in ("-1", "65536", "http"):
        with pytest.raises(ConfigError, match="VIGIL_WORKER_METRICS_PORT"):
            Settings.from_env({"VIGIL_WORKER_METRICS_PORT": bad})


def test_dead_letters_needs_a_broker_and_says_when_it_cannot_reach_it() -> None:
    done = subprocess.run([sys.executable, "-m", "vigil", "dead-letters"], env={"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "VIGIL_KAFKA_URL" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "vigil", "dead-letters"], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "VIGIL_KAFKA_URL": "kafka://127.0.0.1:1"}, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("vigil: cannot read vigil.deadletter from 127.0.0.1:1: "), (
        done.stderr)
    assert "Traceback" not in done.stderr
