"""The whole stack for the browser tests, started once per module.

Real services only: Apache Kafka and PostgreSQL from the session fixtures in
``tests/conftest.py``, and three child processes started as an operator would
(``python -m vigil worker``, ``gateway``, ``simulate``). The browser is Debian's
Chromium (``scripts/install-browser.sh``), driven by Playwright through
``executable_path``; Playwright's own browser downloads are never used.

A missing Chromium or Playwright fails the tests in CI (``CI`` set) and skips them
elsewhere, with the command that fixes it. Screenshots go to
``test-artifacts/e2e/`` (or ``$VIGIL_E2E_ARTIFACTS``); when a test fails, every page
it opened is captured there too, with the tail of each service's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dashboards.tokens import issue_token
from dashboards.wards import admit_patient
from event_store.postgres import PostgresRecorder
from streams.topics import TopicNames
from tests.conftest import REPO
from tests.integration.pipeline_helpers import create_topics
from vigil.services.process import ManagedProcess, free_port, wait_until

# Without Playwright the test module skips (outside CI) or fails (in CI) with the reason.
with contextlib.suppress(ImportError):
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

SECRET = "e2e-" + "k" * 40
ARTIFACTS = Path(os.environ.get("VIGIL_E2E_ARTIFACTS") or REPO / "test-artifacts" / "e2e")
PATIENTS = 4
PARTITIONS = 4  # the worker's default (`streams.app.WorkerConfig.partitions`)
WARDS = {"p0001": ("ward-1", "1"), "p0002": ("ward-1", "2"), "p0003": ("ward-2", "3"), "p0004": ("ward-2", "4")}
"""Admissions made before the simulator starts: p0001 (the sepsis script) is in ward 1."""


def find_chromium() -> str | None:
    for candidate in (os.environ.get("VIGIL_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        message = "Chromium is not installed: run scripts/install-browser.sh (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the browser tests: {message}")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium_path: str) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=chromium_path, headless=True,
                                   args=["--autoplay-policy=no-user-gesture-required"])
    yield b
    b.close()


@dataclass
class Stack:
    url: str
    database_url: str
    logs: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def token(self, user: str, role: str, wards: list[str], ttl_s: float = 3600) -> str:
        return issue_token(SECRET, user, role, wards, ttl_s)

    def page_url(self, token: str) -> str:
        return f"{self.url}/#token={token}"

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, args).fetchall()

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name} ({'running' if p.running() else 'exited'}):\n{p.log_tail(40)}"
                         for p in self.processes)


async def _prepare(database_url: str) -> None:
    store = await PostgresRecorder.connect(database_url)
    try:
        await store.migrate()
        for pid, (ward, bed) in WARDS.items():
            await admit_patient(store, pid, ward, bed, by="e2e-admissions")
    finally:
        await store.close()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(apache_kafka: str, postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Kafka + PostgreSQL + worker + gateway + simulator (4 patients, p0001 deteriorating)."""
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    base, _, _ = postgres_server.rpartition("/")
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = f"{base}/{name}"
    logs = tmp_path_factory.mktemp("e2e-logs")
    prefix = f"e2e{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = dict(os.environ) | {
        "VIGIL_KAFKA_URL": f"kafka://{apache_kafka}", "VIGIL_DATABASE_URL": database_url,
        "VIGIL_TOPIC_PREFIX": prefix, "VIGIL_WORKER_GROUP": f"{prefix}-worker", "VIGIL_KAFKA_EMBEDDED": "0",
        "VIGIL_GATEWAY_HOST": "127.0.0.1", "VIGIL_GATEWAY_PORT": str(port), "VIGIL_JWT_SECRET": SECRET,
        "VIGIL_GATEWAY_DEMO": "0", "VIGIL_STATE_DIR": str(logs / "state"),
    }
    s = Stack(f"http://127.0.0.1:{port}", database_url, logs)
    try:
        asyncio.run(_prepare(database_url))
        # The input topics must exist before the worker subscribes: a consumer that finds
        # them missing ignores them until its next metadata refresh (minutes).
        topics = TopicNames(prefix)
        asyncio.run(create_topics(apache_kafka, {t: PARTITIONS for t in (topics.vitals, topics.ecg, topics.fhir,
                                                                          topics.dead_letter)}))

        def start(proc_name: str, *args: str) -> ManagedProcess:
            proc = ManagedProcess.start(proc_name, [sys.executable, "-m", "vigil", *args], logs / f"{proc_name}.log",
                                        env=env, cwd=REPO)
            s.processes.append(proc)
            return proc

        start("worker", "worker")
        gateway = start("gateway", "gateway")
        wait_until("gateway", lambda: _healthy(f"{s.url}/healthz"), 60, gateway)
        # Deterioration compressed as in the demo: p0001 (sepsis) raises NEWS2 alarms within a minute.
        start("simulator", "simulate", "--patients", str(PATIENTS), "--onset", "5", "--ramp", "30")
        yield s
    finally:
        for proc in reversed(s.processes):
            proc.stop()
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def screens(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Screens]:
    """Opens dashboards in fresh browser contexts and saves screenshots under ARTIFACTS;
    when the test fails, captures every page it opened (and the services' logs) before
    closing them."""
    s = Screens(browser, re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name))
    try:
        yield s
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for i, page in enumerate(s.pages):
                if not page.is_closed():
                    s.take(page, f"failure-{i}")
            stack_fixture = request.node.funcargs.get("stack")
            if isinstance(stack_fixture, Stack):
                (ARTIFACTS / f"{s.prefix}-logs.txt").write_text(stack_fixture.log_tails())
    finally:
        for context in s.contexts:
            context.close()


class Screens:
    def __init__(self, browser: Browser, prefix: str) -> None:
        self.browser, self.prefix = browser, prefix
        self.contexts: list[BrowserContext] = []
        self.pages: list[Page] = []
        self.taken: list[Path] = []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def open(self, url: str) -> Page:
        """The dashboard at ``url`` in a fresh context: its own storage, as another
        person at another screen."""
        context = self.browser.new_context(viewport={"width": 1400, "height": 900})
        self.contexts.append(context)
        page = context.new_page()
        self.pages.append(page)
        page.goto(url)
        return page

    def take(self, page: Page, label: str) -> Path:
        path = ARTIFACTS / f"{self.prefix}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

