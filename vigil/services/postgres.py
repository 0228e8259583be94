"""A private PostgreSQL cluster in a local folder, as a child process.

Binaries are looked up in this order: ``$VIGIL_PG_BIN``; the newest
``/usr/lib/postgresql/<major>/bin`` (Debian/Ubuntu server packages); ``initdb`` on
``PATH``; and last the binaries inside the ``pgserver`` wheel, so a machine with
no PostgreSQL installed still gets one from pip.

PostgreSQL refuses to run as root. When we are root, the cluster runs as a
dedicated system user (``vigil-pg``, created on first use) and the folders it
needs are made traversable for it.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vigil.services.process import ManagedProcess, ServiceError, ServiceSettingError, free_port, port_open, wait_until
import contextlib

__all__ = ["PostgresCluster", "find_pg_bin", "timescaledb_installed"]

_PG_USER = "vigil-pg"


def find_pg_bin() -> Path:
    """The folder holding ``initdb`` and ``postgres``."""
    explicit = os.environ.get("VIGIL_PG_BIN")
    if explicit:
        path = Path(explicit)
        if not (path / "postgres").exists():
            raise ServiceSettingError(f"VIGIL_PG_BIN={explicit} has no postgres binary")
        return path
    debian = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0),
    )
    if debian:
        return debian[-1]
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).resolve().parent / "postgres").exists():
        return Path(initdb).resolve().parent
    try:
        import pgserver
    except ImportError as e:
        raise ServiceError("no PostgreSQL binaries found and the pgserver wheel is not installed") from e
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin"
    if not (bundled / "postgres").exists():
        raise ServiceError(f"no PostgreSQL binaries found (looked in /usr/lib/postgresql, PATH and {bundled})")
    return bundled


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(_PG_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _PG_USER],
            capture_output=True, text=True, check=False,
        )
        if done.returncode not in (0, 9):  # 9: the user appeared meanwhile
            raise ServiceError(f"running as root and cannot create system user {_PG_USER}: {done.stderr.strip()}") from None
        entry = pwd.getpwnam(_PG_USER)
    return entry.pw_uid, entry.pw_gid


def _make_traversable(path: Path) -> None:
    """Give others search (x) permission on every parent of ``path`` so the
    unprivileged cluster user can reach it; read permission is not granted."""
    for parent in reversed(path.absolute().parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


def timescaledb_installed(bindir: Path | None = None) -> bool:
    """Whether the TimescaleDB extension is installed for these binaries (its control
    file in the share folder ``pg_config`` names)."""
    bindir = bindir or find_pg_bin()
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return False
    done = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, check=False)
    return done.returncode == 0 and (Path(done.stdout.strip()) / "extension" / "timescaledb.control").exists()


@dataclass
class PostgresCluster:
    port: int
    datadir: Path
    process: ManagedProcess
    database: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @classmethod
    def start(
        cls,
        datadir: Path,
        *,
        port: int = 0,
        database: str = "vigil",
        durable: bool = True,
        timescaledb: bool = False,
        timeout: float = 60.0,
    ) -> PostgresCluster:
        """Start (initialising on first use) a cluster in ``datadir``.

        ``durable=False`` turns off fsync for throwaway test clusters.
        ``timescaledb=True`` preloads TimescaleDB (which must be installed: see
        `timescaledb_installed`), so that the event store's migrations make hypertables;
        without it they make PostgreSQL's own partitions even where it is installed.
        """
        bindir = find_pg_bin()
        owner = _run_as()
        datadir = datadir.absolute()
        datadir.mkdir(parents=True, exist_ok=True)
        sockdir = datadir / "sock"
        if owner is not None:
            _make_traversable(datadir)
            _make_traversable(bindir)
            os.chown(datadir, *owner)
        uid, gid = owner if owner is not None else (None, None)
        pgdata = datadir / "data"
        if not (pgdata / "PG_VERSION").exists():
            done = subprocess.run(
                [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--locale=C", "--no-instructions"],
                capture_output=True, text=True, check=False, user=uid, group=gid,
                extra_groups=[] if uid is not None else None,
            )
            if done.returncode != 0:
                raise ServiceError(f"initdb failed in {pgdata}:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
        sockdir.mkdir(exist_ok=True)
        if owner is not None:
            os.chown(sockdir, *owner)
        port = port or free_port()
        argv = [
            str(bindir / "postgres"), "-D", str(pgdata), "-p", str(port), "-k", str(sockdir),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
        ]
        if timescaledb:
            if not timescaledb_installed(bindir):
                raise ServiceError(f"TimescaleDB is not installed for {bindir} (scripts/install-timescaledb.sh)")
            argv += ["-c", "shared_preload_libraries=timescaledb"]
        if not durable:
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = datadir / "postgres.log"
        if owner is not None and log.exists():
            os.chown(log, *owner)
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for clients.
        proc = ManagedProcess.start("postgres", argv, log, user=uid, group=gid, death_signal=signal.SIGINT)
        cluster = cls(port=port, datadir=datadir, process=proc, database=database)
        try:
            wait_until(f"PostgreSQL on port {port} (log {log})", lambda: cluster._accepts(), timeout, proc)
            cluster._create_database()
        except BaseException:
            proc.stop()
            raise
        return cluster

    def _accepts(self) -> bool:
        if not port_open("127.0.0.1", self.port):
            return False
        import psycopg

        try:
            with psycopg.connect(self._dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            time.sleep(0.1)
            return False

    def _dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if self.process.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGINT)
        self.process.stop()
