"""Session-scoped real services for the integration tests.

- Apache Kafka (KRaft, from the Maven Central jars) unless ``VIGIL_KAFKA_URL`` names a broker.
- The embedded Tansu broker, for the tests that also run against it.
- A private PostgreSQL cluster unless ``VIGIL_DATABASE_URL`` names one; every test
  that asks for ``database_url`` gets a fresh database in it.
- A second one that preloads TimescaleDB (``scripts/install-timescaledb.sh``) unless
  ``VIGIL_TIMESCALEDB_URL`` names one, for the tests that ask for ``timescale_url``, or
  for ``store_url``, which runs them on both.

A service that cannot start fails the tests that need it, with the reason; nothing is
skipped. Without Java or Maven, outside CI, the Apache Kafka fixture falls back to
Tansu and says so loudly; in CI (``CI`` set) Apache Kafka is required.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from event_store.postgres import PostgresRecorder
from vigil.services.kafka import KafkaCluster, java_available
from vigil.services.postgres import PostgresCluster
from vigil.services.process import ServiceError
from vigil.services.tansu import TansuBroker

REPO = Path(__file__).resolve().parent.parent


def _loud(message: str) -> None:
    bar = "!" * 78
    sys.stderr.write(f"\n{bar}\n{message}\n{bar}\n")


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers (``host:port,...``) of a real Apache Kafka."""
    external = os.environ.get("VIGIL_KAFKA_URL")
    if external:
        yield external.split("://", 1)[-1]
        return
    if not java_available():
        if os.environ.get("CI"):
            pytest.fail("CI needs Apache Kafka, but Java 17 or Maven is missing (apt-get install openjdk-17-jre-headless maven)")
        _loud("Java or Maven is missing: running the Apache Kafka tests on the embedded Tansu broker instead.\n"
              "Its known gaps (transactions, end offsets) make these results weaker. Install Java 17 and Maven.")
        broker = TansuBroker.start(tmp_path_factory.mktemp("tansu-fallback"))
        yield broker.bootstrap
        broker.stop()
        return
    try:
        cluster = KafkaCluster.start(tmp_path_factory.mktemp("kafka"), brokers=1)
    except ServiceError as e:
        pytest.fail(f"Apache Kafka did not start: {e}")
    yield cluster.bootstrap
    cluster.stop()


@pytest.fixture(scope="session")
def tansu_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap server of the embedded Tansu broker (the demo's default)."""
    try:
        broker = TansuBroker.start(tmp_path_factory.mktemp("tansu"))
    except ServiceError as e:
        pytest.fail(f"embedded Tansu broker did not start: {e}")
    yield broker.bootstrap
    broker.stop()


@pytest.fixture(params=["apache", "tansu"])
def any_kafka(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, bootstrap) for each broker the suite runs against."""
    kind = str(request.param)
    return kind, str(request.getfixturevalue(f"{kind}_kafka"))


@contextlib.contextmanager
def cluster_home() -> Iterator[Path]:
    """A folder for a PostgreSQL cluster, outside pytest's temporary root, removed after.

    Run as root, the cluster runs as an unprivileged user that must be able to pass
    through every parent of its data folder; but each pytest session that starts on
    the machine (a developer's unit tests beside CI, say) takes the others' search
    permission off ``/tmp/pytest-of-<user>`` again, and a cluster in there then panics
    on its next file access ("could not open pg_control: Permission denied")."""
    path = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg_home() -> Iterator[Path]:
    """`cluster_home` for one test's private PostgreSQL."""
    with cluster_home() as path:
        yield path


def _server(external: str, *, timescaledb: bool) -> Iterator[str]:
    """Admin URL (database ``postgres``): the server the variable ``external`` names,
    else a private cluster for the session."""
    url = os.environ.get(external)
    if url:
        yield url
        return
    with cluster_home() as home:
        try:
            cluster = PostgresCluster.start(home / "pg", database="postgres", durable=False, timescaledb=timescaledb)
        except ServiceError as e:
            pytest.fail(f"PostgreSQL{' with TimescaleDB' if timescaledb else ''} did not start: {e}")
        yield cluster.url
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Admin URL (database ``postgres``) of a real PostgreSQL server."""
    yield from _server("VIGIL_DATABASE_URL", timescaledb=False)


@pytest.fixture(scope="session")
def timescale_server() -> Iterator[str]:
    """Admin URL of a real PostgreSQL server that preloads TimescaleDB."""
    yield from _server("VIGIL_TIMESCALEDB_URL", timescaledb=True)


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server of ``server_url`` (an admin URL), dropped after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    base, _, _ = server_url.rpartition("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    with scratch_database(postgres_server) as url:
        yield url


@pytest.fixture
def timescale_url(timescale_server: str) -> Iterator[str]:
    """A fresh, empty database on the TimescaleDB server, dropped afterwards."""
    with scratch_database(timescale_server) as url:
        yield url


@pytest.fixture(params=["native", "timescaledb"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database, once on each flavour of the event store's schema: PostgreSQL's
    own partitions, and TimescaleDB's hypertables. A module whose every test should
    run on both overrides ``database_url`` with it."""
    server = request.getfixturevalue("postgres_server" if request.param == "native" else "timescale_server")
    with scratch_database(str(server)) as url:
        yield url


@pytest_asyncio.fixture
async def pg_recorder(database_url: str) -> AsyncIterator[PostgresRecorder]:
    """A migrated `PostgresRecorder` on a fresh database."""
    recorder = await PostgresRecorder.connect(database_url, max_size=10)
    await recorder.migrate()
    yield recorder
    await recorder.close()


@pytest.fixture
def topic_prefix() -> str:
    """Unique topic/consumer-group prefix, so tests sharing a broker never meet."""
    return f"t{uuid.uuid4().hex[:10]}"
