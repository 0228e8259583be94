"""Static checks of the container files: docker-compose.yml and Dockerfile.

The compose file is checked as Docker Compose itself resolves it
(``docker compose config --format json``), which needs the docker CLI and its
compose plugin but no running engine. A missing CLI or plugin is a failure,
never a skip.
"""

from __future__ import annotations

import functools
import os
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

INFRA_SERVICES = ("kafka", "timescaledb", "prometheus")
APP_SERVICES = ("migrate", "worker", "gateway", "simulator")
ALL_SERVICES = INFRA_SERVICES + APP_SERVICES

# Which Vigil settings each app service needs.
REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "migrate": ("VIGIL_DATABASE_URL",),
    "worker": ("VIGIL_KAFKA_URL", "VIGIL_DATABASE_URL"),
    "gateway": ("VIGIL_DATABASE_URL", "VIGIL_GATEWAY_HOST", "VIGIL_GATEWAY_PORT"),
    "simulator": ("VIGIL_KAFKA_URL",),
}

Service = dict[str, Any]


# --------------------------------------------------------------------------
# docker compose config
# --------------------------------------------------------------------------


@functools.cache
def _compose_config() -> tuple[dict[str, Any] | None, str | None]:
    """Run `docker compose config` once; return (model, None) or (None, error)."""
    docker = shutil.which("docker")
    if docker is None:
        return None, (
            "the `docker` CLI is not on PATH; it is required to validate "
            "docker-compose.yml with `docker compose config` (no engine needed)"
        )
    cmd = [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--format", "json"]
    shown = " ".join(cmd)
    try:
        # The gateway's signing key is required (compose refuses without it): give a test one.
        env = dict(os.environ, VIGIL_JWT_SECRET="compose-validation-" + "k" * 32)
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return None, f"`{shown}` timed out"
    if proc.returncode != 0:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False
        )
        if probe.returncode != 0:
            return None, (
                f"`{docker}` has no working `compose` plugin (`docker compose version` "
                f"exited {probe.returncode}); install Docker Compose v2 as "
                "~/.docker/cli-plugins/docker-compose or "
                "/usr/local/lib/docker/cli-plugins/docker-compose"
            )
        return None, f"`{shown}` exited {proc.returncode}:\n{proc.stderr.strip()}"
    try:
        parsed = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        return None, f"`{shown}` printed invalid JSON: {exc}"
    if not isinstance(parsed, dict):
        return None, f"`{shown}` printed JSON that is not an object"
    return cast(dict[str, Any], parsed), None


def _services() -> dict[str, Service]:
    """The resolved services; fails (never skips) the calling test if unavailable."""
    config, error = _compose_config()
    if config is None:
        pytest.fail(error or "docker compose config failed", pytrace=False)
    svcs = config.get("services")
    assert isinstance(svcs, dict), "compose config has no services mapping"
    return cast(dict[str, Service], svcs)


def test_compose_file_has_no_obsolete_version_key() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert re.search(r"^version\s*:", text, re.MULTILINE) is None


def test_all_services_present() -> None:
    services = _services()
    missing = sorted(set(ALL_SERVICES) - set(services))
    assert not missing, f"services missing from docker-compose.yml: {missing}"


def test_worker_is_scalable() -> None:
    services = _services()
    worker = services["worker"]
    assert "container_name" not in worker, "worker must not set container_name"
    assert not worker.get("ports"), "worker must not publish host ports"


def test_worker_serves_metrics_inside_the_network_and_is_health_checked() -> None:
    worker = _services()["worker"]
    env = worker["environment"]
    assert env["VIGIL_WORKER_METRICS_HOST"] == "0.0.0.0"
    port = env["VIGIL_WORKER_METRICS_PORT"]
    assert 0 < int(port) < 65536 and port in [str(p) for p in worker.get("expose", [])]
    probe = " ".join(worker["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in probe


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_build_from_repo_dockerfile(name: str) -> None:
    services = _services()
    build = services[name].get("build")
    assert isinstance(build, dict), f"{name} has no build section"
    context = Path(str(build.get("context", "")))
    assert context.resolve() == REPO_ROOT, f"{name} builds from {context}, not the repo root"
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"


@pytest.mark.parametrize(
    ("name", "image_prefix"),
    [("kafka", "apache/kafka:"), ("timescaledb", "timescale/timescaledb:"), ("prometheus", "prom/prometheus:")],
)
def test_infra_images(name: str, image_prefix: str) -> None:
    services = _services()
    image = str(services[name].get("image", ""))
    assert image.startswith(image_prefix), f"{name} image is {image!r}"


@pytest.mark.parametrize("name", INFRA_SERVICES)
def test_infra_services_have_healthcheck_and_volume(name: str) -> None:
    services = _services()
    svc = services[name]
    healthcheck = svc.get("healthcheck")
    assert isinstance(healthcheck, dict) and healthcheck.get("test"), f"{name} lacks a healthcheck"
    volumes = svc.get("volumes") or []
    assert any(v.get("type") == "volume" for v in volumes), f"{name} has no named volume"


def test_kafka_is_single_node_kraft() -> None:
    services = _services()
    env = services["kafka"].get("environment") or {}
    assert env.get("KAFKA_PROCESS_ROLES") == "broker,controller"
    assert "PLAINTEXT://kafka:9092" in str(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    test = " ".join(services["kafka"]["healthcheck"]["test"])
    assert "kafka-broker-api-versions.sh" in test or "kafka-topics.sh" in test


def test_timescaledb_credentials_and_pg_isready() -> None:
    services = _services()
    svc = services["timescaledb"]
    env = svc.get("environment") or {}
    assert env.get("POSTGRES_USER") == "vigil"
    assert env.get("POSTGRES_DB") == "vigil"
    assert env.get("POSTGRES_PASSWORD"), "POSTGRES_PASSWORD must be set"
    assert "pg_isready" in " ".join(svc["healthcheck"]["test"])


def _depends_condition(service: Service, dependency: str) -> str | None:
    depends_on = service.get("depends_on") or {}
    entry = depends_on.get(dependency)
    if not isinstance(entry, dict):
        return None
    return cast("str | None", entry.get("condition"))


def test_worker_dependencies() -> None:
    services = _services()
    worker = services["worker"]
    assert _depends_condition(worker, "migrate") == "service_completed_successfully"
    assert _depends_condition(worker, "kafka") == "service_healthy"


def test_migrate_is_one_shot_after_database() -> None:
    services = _services()
    migrate = services["migrate"]
    assert migrate.get("command") == ["db", "migrate"]
    assert migrate.get("restart", "no") == "no"
    assert _depends_condition(migrate, "timescaledb") == "service_healthy"


def test_gateway_publishes_8765_after_migrate() -> None:
    services = _services()
    gateway = services["gateway"]
    assert gateway.get("command") == ["gateway"]
    targets = {int(p["target"]) for p in gateway.get("ports") or []}
    assert 8765 in targets, f"gateway does not publish 8765: {gateway.get('ports')}"
    assert _depends_condition(gateway, "migrate") == "service_completed_successfully"


def test_simulator_command_and_dependency() -> None:
    services = _services()
    simulator = services["simulator"]
    assert simulator.get("command") == ["simulate", "--patients", "16"]
    assert _depends_condition(simulator, "kafka") == "service_healthy"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_have_required_env(name: str) -> None:
    services = _services()
    env = services[name].get("environment") or {}
    missing = [key for key in REQUIRED_ENV[name] if not env.get(key)]
    assert not missing, f"{name} lacks environment {missing}"
    if "VIGIL_KAFKA_URL" in env:
        assert str(env["VIGIL_KAFKA_URL"]).startswith("kafka://kafka:")
    if "VIGIL_DATABASE_URL" in env:
        assert str(env["VIGIL_DATABASE_URL"]).startswith("postgresql://")
        assert "@timescaledb:5432/" in str(env["VIGIL_DATABASE_URL"])


# --------------------------------------------------------------------------
# Dockerfile (parsed as text)
# --------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    alias: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    """Join backslash continuations; drop comments and blank lines."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continuation are ignored by Docker
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def _parse_stages(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], alias=alias))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def _final_stage_setting(stages: list[Stage], keyword: str) -> str | None:
    """Last value of `keyword` effective in the final stage (following stage-alias bases)."""
    by_alias = {s.alias.lower(): s for s in stages if s.alias}
    stage: Stage | None = stages[-1]
    seen: set[int] = set()
    while stage is not None and id(stage) not in seen:
        seen.add(id(stage))
        values = [args for kw, args in stage.instructions if kw == keyword]
        if values:
            return values[-1]
        stage = by_alias.get(stage.base.lower())
    return None


@pytest.fixture(scope="module")
def dockerfile_stages() -> list[Stage]:
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    stages = _parse_stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert stages, "Dockerfile has no FROM"
    return stages


def test_dockerfile_is_multistage_on_slim_bookworm(dockerfile_stages: list[Stage]) -> None:
    assert len(dockerfile_stages) >= 2, "Dockerfile should be multi-stage"
    external = [s.base for s in dockerfile_stages if s.base.lower() not in {
        st.alias.lower() for st in dockerfile_stages if st.alias
    }]
    assert external and all(b == "python:3.11-slim-bookworm" for b in external), external


def test_dockerfile_final_stage_runs_as_non_root(dockerfile_stages: list[Stage]) -> None:
    user = _final_stage_setting(dockerfile_stages, "USER")
    assert user is not None, "final stage sets no USER (would run as root)"
    name = user.split(":", 1)[0].strip()
    assert name and name not in {"root", "0"}, f"final stage USER is {user!r}"


def test_dockerfile_entrypoint_is_vigil(dockerfile_stages: list[Stage]) -> None:
    entrypoint = _final_stage_setting(dockerfile_stages, "ENTRYPOINT")
    assert entrypoint is not None, "final stage has no ENTRYPOINT"
    assert json.loads(entrypoint) == ["vigil"], f"ENTRYPOINT is {entrypoint!r}"
    cmd = _final_stage_setting(dockerfile_stages, "CMD")
    assert cmd is not None and json.loads(cmd), "final stage should set a default CMD"


def test_dockerfile_installs_from_constraints_without_extras() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"pip install[^\n]*-c constraints\.txt", text)
    assert not re.search(r"\.\[[^\]]*\]", text), "image must not install extras (e.g. .[test])"


def test_dockerfile_final_stage_has_no_compiler(dockerfile_stages: list[Stage]) -> None:
    final_runs = " ".join(a for kw, a in dockerfile_stages[-1].instructions if kw == "RUN")
    for tool in ("build-essential", "gcc", "g++", "clang"):
        assert tool not in final_runs, f"final stage installs {tool}"


def test_dockerignore_keeps_context_clean() -> None:
    entries = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    for required in (".git", ".venv", ".env", "tests"):
        assert required in entries, f".dockerignore does not exclude {required}"
