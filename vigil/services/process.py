"""Child processes for local services: free ports, start, wait until ready, stop.

Services run as children of the Python process that started them, each in its own
session so a Ctrl-C in the terminal reaches only the parent, which then stops them
in order. `ManagedProcess.stop()` sends SIGTERM, waits, and SIGKILLs stragglers.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
import contextlib

__all__ = ["ServiceError", "ManagedProcess", "free_port", "wait_until", "port_open", "cpu_seconds",
           "tree_cpu_seconds", "parent_pid"]


class ServiceError(RuntimeError):
    """A local service could not be found, installed or started; the message says which and why."""


class ServiceSettingError(ServiceError):
    """A setting naming a service's files (``VIGIL_PG_BIN``, ``KAFKA_HOME``) points at
    nothing usable: a configuration error, which `vigil.cli` reports as one (exit status 2)."""


_PR_SET_PDEATHSIG = 1


def _death_signal_setter(sig: int) -> Callable[[], None] | None:
    """A pre-exec hook that makes the kernel send ``sig`` to the child when its
    parent dies, so services never outlive a launcher that was SIGKILLed (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def set_death_signal() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return set_death_signal


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a free TCP port on ``host``.

    There is a window between closing this socket and the child binding the port;
    on loopback of a test machine nothing else races for it in practice, and the
    child's start-up fails loudly if it does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(what: str, ready: Callable[[], bool], timeout: float, proc: ManagedProcess | None = None) -> None:
    """Poll ``ready`` until it returns True; raise ServiceError after ``timeout`` seconds
    or as soon as ``proc`` exits (with the tail of its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.popen.returncode} while starting:\n{proc.log_tail()}")
        if ready():
            return
        time.sleep(0.1)
    tail = f":\n{proc.log_tail()}" if proc is not None else ""
    raise ServiceError(f"{what} was not ready after {timeout:.0f} s{tail}")


@dataclass
class ManagedProcess:
    """One running child process whose output goes to ``log_path``."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log_file: BinaryIO | None = field(repr=False, default=None)

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: int | None = None,
        group: int | None = None,
        death_signal: int = signal.SIGTERM,
    ) -> ManagedProcess:
        """Start ``argv`` with output to ``log_path``. ``death_signal`` is what the
        child receives if this process dies without stopping it."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            popen = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                user=user,
                group=group,
                extra_groups=[] if user is not None else None,
                preexec_fn=_death_signal_setter(death_signal),
            )
        except OSError as e:
            log.close()
            raise ServiceError(f"cannot start {name} ({argv[0]}): {e}") from e
        return cls(name=name, popen=popen, log_path=log_path, _log_file=log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL, as a crash would (fault tests)."""
        if self.running():
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self._close_log()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL whatever is left after ``timeout`` seconds."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = None


def _stat_fields(pid: int, thread: int | None = None) -> list[str]:
    # /proc/<pid>/stat after the command name (which may hold spaces): state, ppid, ...
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    return Path(path).read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, *, thread: int | None = None) -> float:
    """User + system CPU time of a process so far, in seconds (Linux /proc); with
    ``thread``, of that one thread of it (the main thread's id is the pid). Raises
    `OSError` if the process or thread is gone."""
    fields = _stat_fields(pid, thread)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and all its descendants (PostgreSQL's
    server and its backends, say), with the children they have already reaped, in
    seconds (Linux /proc); 0 if there is no such process. A descendant that exited
    unreaped is not counted. (Not by session: PostgreSQL's children start their own.)"""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = _stat_fields(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)
    ticks, todo = 0, [pid] if pid in stats else []
    while todo:
        current = todo.pop()
        fields = stats[current]
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # + reaped children's
        todo += children.get(current, [])
    return ticks / os.sysconf("SC_CLK_TCK")


def parent_pid(pid: int) -> int:
    """The parent's pid (Linux /proc). Raises `OSError` if the process is gone."""
    return int(_stat_fields(pid)[1])
