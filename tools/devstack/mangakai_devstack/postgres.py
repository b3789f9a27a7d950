"""A local PostgreSQL server in a directory of its own, for `make run` and the integration tests.

`PostgresServer` owns `<directory>/data` (created by initdb on first use and
reused afterwards) and `<directory>/postgres.log`. It listens on 127.0.0.1 on a
free port and on a unix socket inside the data directory, creates databases on
request and stops with `pg_ctl stop -m fast`. PostgreSQL refuses to run as
root, so when we are root initdb and the server run as the `postgres` user.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from mangakai_devstack.processes import POLL_SECONDS, free_port, is_alive, log_tail, wait_for

DEFAULT_DATABASE = "mangakai"
SUPERUSER = "postgres"
OS_USER = "postgres"  # who runs the server when we are root
HOST = "127.0.0.1"
START_ATTEMPTS = 5
# sockaddr_un.sun_path is 108 bytes; the socket file is ".s.PGSQL.NNNNN" inside the directory.
MAX_SOCKET_DIR_LENGTH = 90
_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresError(RuntimeError):
    """PostgreSQL could not be set up, started or stopped."""


def find_bindir() -> Path:
    """The directory with initdb and pg_ctl: newest /usr/lib/postgresql/*/bin, else pg_config, else PATH."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").exists():
            return candidate
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(out.stdout.strip())
        if out.returncode == 0 and (bindir / "initdb").exists():
            return bindir
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresError("PostgreSQL server binaries not found; install Debian's 'postgresql' package")


def _clean_env() -> dict[str, str]:
    # PGDATA, PGPORT, PGHOST... from the caller's shell would redirect our commands.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


class PostgresServer:
    """One PostgreSQL cluster under `directory`.

    `durable=False` turns off fsync, synchronous commit and full-page writes:
    much faster, and fine for tests whose data may be lost in a crash.
    """

    def __init__(self, directory: Path, *, durable: bool = True, bindir: Path | None = None) -> None:
        self.directory = Path(directory).absolute()
        self.durable = durable
        self._bindir = bindir
        self._port: int | None = None

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise PostgresError("PostgreSQL is not started")
        return self._port

    @property
    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, when the server is running."""
        fields = self._pid_file_lines()
        return int(fields[0]) if fields and fields[0].isdigit() else None

    @property
    def dsn(self) -> str:
        """The DSN of the `mangakai` database (create it with `create_database` first; `start` does)."""
        return self.dsn_for(DEFAULT_DATABASE)

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    # Lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Initialises the data directory if needed, starts the server and creates the `mangakai` database.

        A server already running on this data directory (left by an earlier
        `up`) is adopted rather than started twice.
        """
        self._prepare_directory()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        running_port = self._running_port()
        if running_port is not None:
            self._port = running_port
            self._wait_ready(timeout)
        else:
            self._start_server(timeout)
        self.create_database(DEFAULT_DATABASE)

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the server on this data directory (fast mode: running transactions are rolled back)."""
        if not (self.data_dir / "postmaster.pid").exists():
            self._port = None
            return
        pid = self.pid
        result = self._run_as_owner(
            [
                str(self._bin("pg_ctl")),
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ]
        )
        if result.returncode != 0 and self.is_running():
            raise PostgresError(f"pg_ctl stop failed: {result.stdout.strip()}\n{log_tail(self.log_path)}")
        # pg_ctl returns once postmaster.pid is gone; the postmaster may still be exiting.
        if pid is not None:
            wait_for(lambda: not is_alive(pid), timeout)
        self._port = None

    def is_running(self) -> bool:
        """Whether a server is running on this data directory (`pg_ctl status`)."""
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        result = self._run_as_owner([str(self._bin("pg_ctl")), "-D", str(self.data_dir), "status"])
        return result.returncode == 0

    def is_ready(self, timeout: float = 1.0) -> bool:
        """Whether the server accepts TCP connections now."""
        if self._port is None:
            return False
        result = subprocess.run(
            [
                str(self._bin("pg_isready")),
                *("-h", HOST, "-p", str(self._port), "-U", SUPERUSER, "-d", "postgres"),
                *("-t", str(max(1, round(timeout)))),
            ],
            capture_output=True,
            env=_clean_env(),
            check=False,
        )
        return result.returncode == 0

    def create_database(self, name: str) -> str:
        """Creates database `name` unless it exists; returns its DSN."""
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        if not self._database_exists(name):
            result = self._psql(f'CREATE DATABASE "{name}"')
            # Another process may have created it between the check and here.
            if result.returncode != 0 and not self._database_exists(name):
                raise PostgresError(f"CREATE DATABASE {name} failed: {result.stderr.strip()}")
        return self.dsn_for(name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # Internals

    def _bin(self, name: str) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir / name

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run_as_owner(
        self, argv: list[str], timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        if self._as_root():
            argv = ["runuser", "-u", OS_USER, "--", *argv]
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_clean_env(),
            timeout=timeout,
            check=False,
        )

    def _prepare_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._as_root():
            return
        try:
            user = pwd.getpwnam(OS_USER)
        except KeyError:
            raise PostgresError(
                f"running as root but there is no '{OS_USER}' user to run PostgreSQL as"
            ) from None
        _check_traversable(self.directory, user)
        for path in (self.directory, self.data_dir, self.log_path):
            if path.exists() and path.stat().st_uid != user.pw_uid:
                os.chown(path, user.pw_uid, user.pw_gid)

    def _initdb(self) -> None:
        argv = [
            str(self._bin("initdb")),
            *("-D", str(self.data_dir), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-locale"),
        ]
        if not self.durable:
            argv.append("--no-sync")
        result = self._run_as_owner(argv)
        if result.returncode != 0:
            raise PostgresError(f"initdb failed in {self.data_dir}:\n{result.stdout.strip()}")

    def _server_options(self, port: int) -> list[str]:
        socket_dir = str(self.data_dir) if len(str(self.data_dir)) <= MAX_SOCKET_DIR_LENGTH else ""
        options = [
            *("-p", str(port)),
            *("-c", f"listen_addresses={HOST}"),
            *("-c", f"unix_socket_directories={socket_dir}"),
            # Several stacks' connection pools share one server in the tests.
            *("-c", "max_connections=300"),
        ]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return options

    def _start_server(self, timeout: float) -> None:
        failure = ""
        for _ in range(START_ATTEMPTS):
            port = free_port(HOST)
            start_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            result = self._run_as_owner(
                [
                    str(self._bin("pg_ctl")),
                    *("-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", str(int(timeout))),
                    *("-o", shlex.join(self._server_options(port))),
                    "start",
                ],
                timeout=timeout + 5,
            )
            if result.returncode == 0:
                self._port = port
                self._wait_ready(timeout)
                return
            failure = f"{result.stdout.strip()}\n{self._log_since(start_offset)}"
            # Someone took the port between free_port() and the bind: try another one.
            if "could not bind" not in failure and "already in use" not in failure:
                break
        raise PostgresError(f"PostgreSQL did not start in {self.data_dir}:\n{failure}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if time.monotonic() >= deadline:
                raise PostgresError(
                    f"PostgreSQL on port {self._port} not ready after {timeout}s:\n{log_tail(self.log_path)}"
                )
            time.sleep(POLL_SECONDS)

    def _pid_file_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _running_port(self) -> int | None:
        """The port of a server already running on this data directory (postmaster.pid line 4)."""
        if not self.is_running():
            return None
        lines = self._pid_file_lines()
        return int(lines[3]) if len(lines) > 3 and lines[3].isdigit() else None

    def _database_exists(self, name: str) -> bool:
        result = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if result.returncode != 0:
            raise PostgresError(f"cannot query PostgreSQL on port {self._port}: {result.stderr.strip()}")
        return result.stdout.strip() == "1"

    def _psql(self, sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self._bin("psql")),
                *("-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres"),
                *("-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql),
            ],
            capture_output=True,
            text=True,
            env=_clean_env(),
            check=False,
        )

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")[-8000:]
        except OSError:
            return ""


def _check_traversable(directory: Path, user: pwd.struct_passwd) -> None:
    """Fails early, with a useful message, when `user` cannot reach `directory`.

    Typical case: a root-only temporary directory (pytest's /tmp/pytest-of-root
    is mode 0700), where initdb would fail with a bare "Permission denied".
    """
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    for ancestor in directory.parents:
        st = ancestor.stat()
        if st.st_uid == user.pw_uid:
            allowed = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            allowed = bool(st.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(st.st_mode & stat.S_IXOTH)
        if not allowed:
            raise PostgresError(
                f"the '{user.pw_name}' user cannot enter {ancestor}, so PostgreSQL cannot use {directory}; "
                "make its parent directories enterable (o+x), or give the server a fresh directory directly under /tmp"
            )
