"""One MangakAI service as a local process: start, wait until it serves, stop, kill, restart.

A service is `python -m <module>` with settings in its environment. Once it
serves it writes its bound ports as JSON to the path in READY_FILE (see
`mangakai_runtime.server.ServiceMain`), e.g. {"pid": 123, "grpc_port": 50051,
"metrics_port": 9100, "http_port": 8080}; `ServiceProcess` waits for that file
and then for a SERVING answer from the standard gRPC health service. With a
`ContainerLauncher` the service runs as a container of its image instead
(see containers.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mangakai_devstack.containers import ContainerLauncher
from mangakai_devstack.processes import POLL_SECONDS, kill_child, log_tail, stop_child

HOST = "127.0.0.1"
# Ready-file key -> environment variable that pins it on restart, so that
# other services' channels (and URLs already handed out) find it again.
DEFAULT_STICKY_PORTS: Mapping[str, str] = {"grpc_port": "GRPC_PORT"}


class ServiceStartError(RuntimeError):
    """A service exited or did not become healthy in time; the message ends with its log tail."""


def check_health(
    address: str, timeout: float = 1.0, service: str = "", credentials: grpc.ChannelCredentials | None = None
) -> bool:
    """Whether `grpc.health.v1.Health/Check` at `address` answers SERVING (over TLS with `credentials`)."""
    opened = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with opened as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def tls_credentials(settings: Mapping[str, str | None] | None) -> grpc.ChannelCredentials | None:
    """Channel credentials from TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE; None without them."""
    files = [(settings or {}).get(f"TLS_{part}_FILE") for part in ("CA", "KEY", "CERT")]
    if not all(files):
        return None
    ca, key, cert = (Path(str(f)).read_bytes() for f in files)
    credentials: grpc.ChannelCredentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    return credentials


class ServiceProcess:
    """A service process started from this Python process.

    `env` is added to the inherited environment (READY_FILE is set from
    `ready_file`). Output goes to `log_path`, appended across restarts.
    With a `launcher` the service is a container of its image instead, given
    `env` only (not this process's environment); `writable` names the host
    directories it writes besides its ready file's.
    """

    def __init__(
        self,
        name: str,
        module: str,
        env: Mapping[str, str],
        *,
        log_path: Path,
        ready_file: Path,
        detach: bool = False,
        sticky_ports: Mapping[str, str] = DEFAULT_STICKY_PORTS,
        host: str = HOST,
        launcher: ContainerLauncher | None = None,
        writable: Sequence[Path] = (),
    ) -> None:
        self.name = name
        self.host = host
        self.module = module
        self.env = dict(env)
        self.log_path = Path(log_path).absolute()
        self.ready_file = Path(ready_file).absolute()
        self.detach = detach
        self.sticky_ports = dict(sticky_ports)
        self.launcher = launcher
        self.writable = [Path(path).absolute() for path in writable]
        self._container: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] | None = None

    @property
    def ports(self) -> dict[str, int]:
        """The ports from the ready file (grpc_port, metrics_port and extras such as http_port)."""
        if self._ports is None:
            raise ServiceStartError(f"{self.name} is not started")
        return dict(self._ports)

    @property
    def port(self) -> int:
        return self.ports["grpc_port"]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def container(self) -> str | None:
        """The name of the service's container while one runs (with a launcher)."""
        return self._container

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def is_healthy(self, timeout: float = 1.0) -> bool:
        return (
            self.is_running()
            and self._ports is not None
            and check_health(self.address, timeout, credentials=self._tls_credentials())
        )

    def _tls_credentials(self) -> grpc.ChannelCredentials | None:
        """The service's own identity, when it has one: an internal service under mutual TLS
        answers only callers with a certificate of the mesh's CA."""
        # The gateway's port serves the public API in plaintext (its identity is for its own calls).
        return None if self.name == "gateway" else tls_credentials(self.env)

    def start(self, timeout: float = 30.0) -> dict[str, int]:
        """Starts the process and returns its ports once it is healthy.

        Raises ServiceStartError (and leaves no process behind) when it exits
        first or is not healthy within `timeout` seconds.
        """
        if self.is_running():
            raise ServiceStartError(f"{self.name} already running (pid {self.pid})")
        self.ready_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A ready file from an earlier run would be taken for this one's.
        self.ready_file.unlink(missing_ok=True)
        env = {**self.env, "READY_FILE": str(self.ready_file), "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", self.module]
        if self.launcher is not None:
            for path in self.writable:
                path.mkdir(parents=True, exist_ok=True)
            self._container = self.launcher.container_name(self.name)
            argv = self.launcher.command(
                self.name, self._container, env, [self.ready_file.parent, *self.writable]
            )
            env = {}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detach,
            )
        try:
            self._ports = self._wait_ready(self._proc, time.monotonic() + timeout)
        except BaseException:
            self.kill()
            self._ports = None
            raise
        return dict(self._ports)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout` for the graceful shutdown, then SIGKILL. Returns the exit code."""
        if self._proc is None:
            return None
        code = stop_child(self._proc, timeout)
        self._proc = None
        self._remove_container()  # left behind when `podman run` had to be killed
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would (the ports are remembered for `restart`)."""
        if self._proc is not None:
            kill_child(self._proc)
            self._proc = None
        self._remove_container()

    def _remove_container(self) -> None:
        if self.launcher is not None and self._container is not None:
            self.launcher.remove(self._container)
            self._container = None

    def restart(self, timeout: float = 30.0) -> dict[str, int]:
        """Stops the process if it runs and starts it again with the same environment and the same sticky ports."""
        previous = self._ports
        self.stop()
        if previous is not None:
            for key, variable in self.sticky_ports.items():
                if key in previous:
                    self.env[variable] = str(previous[key])
        return self.start(timeout)

    def _wait_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> dict[str, int]:
        ports = None
        while ports is None:
            self._fail_if_exited(proc)
            ports = self._read_ready_file(proc.pid)
            if ports is None:
                self._fail_if_late(deadline, "write its ready file")
                time.sleep(POLL_SECONDS)
        if "grpc_port" not in ports:
            raise ServiceStartError(f"{self.name}: ready file {self.ready_file} has no grpc_port: {ports}")
        address = f"{self.host}:{ports['grpc_port']}"
        credentials = self._tls_credentials()
        while not check_health(
            address, timeout=max(0.1, min(1.0, deadline - time.monotonic())), credentials=credentials
        ):
            self._fail_if_exited(proc)
            self._fail_if_late(deadline, f"answer SERVING on {address}")
            time.sleep(POLL_SECONDS)
        return ports

    def _read_ready_file(self, pid: int) -> dict[str, int] | None:
        try:
            data = json.loads(self.ready_file.read_text())
        except (OSError, ValueError):
            return None  # not written yet (it is replaced atomically, so never half-written)
        # A container's service has a pid of its own namespace (the stale file was removed at start).
        if not isinstance(data, dict) or (self.launcher is None and data.get("pid") != pid):
            return None
        return {key: value for key, value in data.items() if key != "pid" and isinstance(value, int)}

    def _fail_if_exited(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.poll()
        if code is not None:
            raise ServiceStartError(
                f"{self.name} (python -m {self.module}) exited with {code} before it was ready; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def _fail_if_late(self, deadline: float, what: str) -> None:
        if time.monotonic() >= deadline:
            raise ServiceStartError(
                f"{self.name} (python -m {self.module}) did not {what} in time; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
