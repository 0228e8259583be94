"""Apache Kafka in KRaft mode from the official jars, as local child processes.

The jars come from Maven Central: `ensure_kafka_jars()` runs Maven once on
``kafka-pom.xml`` into a cache folder outside the repo (``$VIGIL_CACHE_DIR`` or
``~/.cache/vigil``), so later starts need no network. ``KAFKA_HOME`` pointing at an
existing Kafka install is used instead when set.

`KafkaCluster.start(n)` runs ``n`` combined broker+controller nodes on loopback,
on free ports, in a work folder. With 3 nodes topics default to replication
factor 3 and ``min.insync.replicas=2``, so a test can kill one broker and keep
writing with ``acks=all``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from vigil.services.process import ManagedProcess, ServiceError, ServiceSettingError, free_port, port_open, wait_until

__all__ = ["KAFKA_VERSION", "KafkaCluster", "KafkaNode", "ensure_kafka_jars", "java_available", "cache_dir"]

KAFKA_VERSION = "4.1.1"
_POM = Path(__file__).with_name("kafka-pom.xml")
_STARTED = "Kafka Server started"

# Broker log goes to a file per node; the console stays quiet.
_LOG4J2 = """\
Configuration:
  name: vigil-kafka
  Appenders:
    File:
      name: file
      fileName: "{log}"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: file
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
"""


def cache_dir() -> Path:
    base = os.environ.get("VIGIL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vigil"
    )
    return Path(base)


def java_available() -> bool:
    """True when Java is present and either KAFKA_HOME is set or Maven can fetch the jars."""
    if shutil.which("java") is None:
        return False
    return bool(os.environ.get("KAFKA_HOME")) or shutil.which("mvn") is not None or _jar_dir().joinpath(".complete").exists()


def _jar_dir() -> Path:
    return cache_dir() / "kafka" / KAFKA_VERSION / "libs"


def ensure_kafka_jars() -> Path:
    """Return the folder of Kafka jars, resolving them with Maven on first use."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise ServiceSettingError(f"KAFKA_HOME={home} has no libs/kafka_2.13-*.jar; point it at an unpacked Kafka release")
        return libs
    libs = _jar_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("Maven (mvn) is not installed: it is needed once to fetch the Kafka jars (apt-get install maven)")
    libs.mkdir(parents=True, exist_ok=True)
    argv = [mvn, "-q", "-B", "-f", str(_POM), "dependency:copy-dependencies", f"-DoutputDirectory={libs}"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServiceError(f"Maven could not resolve Kafka {KAFKA_VERSION}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    if not any(libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        raise ServiceError(f"Maven finished but {libs} has no kafka_2.13-{KAFKA_VERSION}.jar")
    marker.touch()
    return libs


@dataclass
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    workdir: Path
    process: ManagedProcess | None = None
    starts_logged: int = 0
    """How many "Kafka Server started" lines the log held before the latest start."""

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"


class KafkaCluster:
    """``n`` KRaft nodes, each both broker and controller, on 127.0.0.1."""

    def __init__(self, nodes: list[KafkaNode], libs: Path, java: str) -> None:
        self.nodes = nodes
        self._libs = libs
        self._java = java

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @classmethod
    def start(cls, workdir: Path, brokers: int = 1, timeout: float = 90.0) -> KafkaCluster:
        if brokers not in (1, 3):
            raise ValueError(f"brokers must be 1 or 3, got {brokers}")
        java = shutil.which("java")
        if java is None:
            raise ServiceError("Java is not installed: Apache Kafka needs Java 17 (apt-get install openjdk-17-jre-headless)")
        libs = ensure_kafka_jars()
        nodes = [KafkaNode(i + 1, free_port(), free_port(), workdir / f"node{i + 1}") for i in range(brokers)]
        cluster = cls(nodes, libs, java)
        cluster_id = _cluster_id()
        for node in nodes:
            cluster._configure(node, cluster_id)
        try:
            for node in nodes:
                cluster.start_node(node.node_id, timeout=0)
            for node in nodes:
                cluster.wait_node(node.node_id, timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _configure(self, node: KafkaNode, cluster_id: str) -> None:
        n = len(self.nodes)
        voters = ",".join(f"{m.node_id}@127.0.0.1:{m.controller_port}" for m in self.nodes)
        node.workdir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(node.workdir / "data"),
            "num.partitions": "4",
            "default.replication.factor": str(n),
            "min.insync.replicas": "2" if n >= 3 else "1",
            "offsets.topic.replication.factor": str(n),
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": str(n),
            "transaction.state.log.min.isr": "2" if n >= 3 else "1",
            "share.coordinator.state.topic.replication.factor": str(n),
            "share.coordinator.state.topic.min.isr": "2" if n >= 3 else "1",
            # Tests create many short-lived consumer groups; don't make each wait 3 s.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
        }
        (node.workdir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (node.workdir / "log4j2.yaml").write_text(_LOG4J2.format(log=node.log_path))
        fmt = subprocess.run(
            [self._java, *self._jvm_flags(node), "kafka.tools.StorageTool", "format", "--ignore-formatted",
             f"--cluster-id={cluster_id}",  # "=" form: a base64url id may start with "-"
             "-c", str(node.workdir / "server.properties")],
            capture_output=True, text=True, check=False,
        )
        if fmt.returncode != 0:
            raise ServiceError(f"kafka storage format failed for node {node.node_id}:\n{fmt.stdout}{fmt.stderr}")

    def _jvm_flags(self, node: KafkaNode) -> list[str]:
        return [
            "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node.workdir / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={node.workdir}",
            "-cp", f"{self._libs}/*",
        ]

    def node(self, node_id: int) -> KafkaNode:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """(Re)start one node; its data folder is kept, as after a crash."""
        node = self.node(node_id)
        node.starts_logged = _count(node.log_path, _STARTED)
        argv = [self._java, *self._jvm_flags(node), "kafka.Kafka", str(node.workdir / "server.properties")]
        node.process = ManagedProcess.start(f"kafka-{node.node_id}", argv, node.workdir / "stdout.log")
        if timeout:
            self.wait_node(node_id, timeout)

    def wait_node(self, node_id: int, timeout: float) -> None:
        node = self.node(node_id)
        if node.process is None:
            raise ServiceError(f"Kafka node {node_id} was never started")

        def ready() -> bool:
            return _count(node.log_path, _STARTED) > node.starts_logged and port_open("127.0.0.1", node.port)

        wait_until(f"Kafka node {node_id} (log {node.log_path})", ready, timeout, node.process)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one broker, as a crash would."""
        proc = self.node(node_id).process
        if proc is not None:
            proc.kill()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.process is not None:
                node.process.stop()


def _count(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def _cluster_id() -> str:
    # KRaft wants a base64url-encoded 16-byte UUID without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
