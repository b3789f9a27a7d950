"""A local PostgreSQL server in a directory of its own, for `make run` and the integration tests.

`PostgresServer` owns `<directory>`: the data folder `data/` (created by initdb
on first use and reused afterwards), the server's log `postgres.log` and the
superuser's password `password`. The server listens on 127.0.0.1 on a free
port and on a unix socket inside the data folder, creates databases on request
and stops with `pg_ctl stop -m fast`.

PostgreSQL refuses to run as root, so when we are root initdb and the server
run as the `postgres` user, who must be able to reach the data folder. When it
cannot enter `<directory>` (a checkout under /root, a `mktemp -d` folder), the
data and the log move to a folder of their own in that user's home
(`~postgres/mangakai-devstack/pg-*`), and `<directory>/data` and
`<directory>/postgres.log` become symbolic links to them: the links are the
record by which a later `down`, `status` or `up` finds the server again. Each
such folder names the directory it serves; once that directory is gone (`make
clean`, a deleted checkout) and its server is stopped, the next start of any
server as root removes it. When we are not root the server runs as ourselves.

The superuser `postgres` has a random password (scram-sha-256 over TCP, kept
in `<directory>/password` and carried in the DSN), so other local users
cannot log in as the superuser over loopback.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
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
# In OS_USER's home: the data of servers whose own directory OS_USER cannot enter.
RELOCATED_HOMES = "mangakai-devstack"
# In a relocated home: the directory it serves, to tell when it is abandoned.
OWNER_FILE = "owner"
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
    """One PostgreSQL cluster for `directory` (its data may live elsewhere: see the module docstring).

    `durable=False` turns off fsync, synchronous commit and full-page writes:
    much faster, and fine for tests whose data may be lost in a crash.
    """

    def __init__(self, directory: Path, *, durable: bool = True, bindir: Path | None = None) -> None:
        self.directory = Path(directory).absolute()
        self.durable = durable
        self._bindir = bindir
        self._port: int | None = None

    @property
    def home(self) -> Path:
        """The folder holding the data folder and the log: `directory` itself unless relocated."""
        link = self.directory / "data"
        if link.is_symlink():
            return Path(os.readlink(link)).parent
        return self.directory

    @property
    def relocated(self) -> bool:
        """Whether the data lives outside `directory` (`directory/data` is a link to it)."""
        return (self.directory / "data").is_symlink()

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_path(self) -> Path:
        return self.home / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.directory / "password"

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
        return f"postgresql://{SUPERUSER}:{self._password()}@{HOST}:{self.port}/{database}"

    # Lifecycle

    def start(self, timeout: float = 30.0, *, port: int | None = None) -> None:
        """Initialises the data directory if needed, starts the server and creates the `mangakai` database.

        A server already running on this data directory (left by an earlier
        `up`) is adopted rather than started twice. `port` (a free one when None)
        lets a test bring a stopped server back where its clients expect it.
        """
        self._prepare_directory()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        running_port = self._running_port()
        if running_port is not None:
            self._port = running_port
            self._wait_ready(timeout)
        else:
            self._start_server(timeout, port)
        self._require_password(timeout)
        self.create_database(DEFAULT_DATABASE)
        if self._as_root():
            _remove_abandoned_homes(self._os_user())

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

    def remove(self, timeout: float = 30.0) -> None:
        """Stops the server and deletes its data and log, wherever they live, and `directory`."""
        self.stop(timeout)
        if self.relocated:
            shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.directory, ignore_errors=True)

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

    def _os_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(OS_USER)
        except KeyError:
            raise PostgresError(
                f"running as root but there is no '{OS_USER}' user to run PostgreSQL as"
            ) from None

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
            # Our working directory may be one the server's user cannot enter (a checkout under /root).
            cwd="/",
            timeout=timeout,
            check=False,
        )

    def _password(self) -> str:
        """The superuser's password, generated on first use and kept readable by us alone."""
        path = self.password_file
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            # Created 0600 from the start: the password is never readable by others, not even briefly.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(24) + "\n")
            tmp.replace(path)
        return path.read_text().strip()

    def _prepare_directory(self) -> None:
        """Creates `directory` and, when we are root, makes sure the server's user can reach the data."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._as_root():
            return
        user = self._os_user()
        if self.relocated:
            if self.home.is_dir():
                return  # set up by an earlier start
            # Its folder was removed (by hand): start afresh.
            for name in ("data", "postgres.log"):
                (self.directory / name).unlink(missing_ok=True)
        if not self._can_enter(self.directory.parent):
            if not (self.directory / "data").exists():
                self._relocate(user)
                return
            raise PostgresError(
                f"the '{OS_USER}' user cannot enter {self.directory.parent}, so PostgreSQL cannot use its "
                f"data in {self.data_dir}; make that folder enterable again, or remove {self.directory} "
                "to start with a fresh database kept where that user can reach it"
            )
        for path in (self.directory, self.data_dir, self.log_path):
            if path.exists() and path.stat().st_uid != user.pw_uid:
                os.chown(path, user.pw_uid, user.pw_gid)

    def _can_enter(self, folder: Path) -> bool:
        """Whether the server's user can enter `folder` (every ancestor included, ACLs too)."""
        return self._run_as_owner(["test", "-x", str(folder)]).returncode == 0

    def _relocate(self, user: pwd.struct_passwd) -> None:
        """Gives the server a fresh folder in its user's home, linked from `directory`."""
        home = _relocated_homes(user)
        if home is None:
            raise PostgresError(
                f"the '{user.pw_name}' user cannot enter {self.directory.parent}, so PostgreSQL cannot "
                f"keep its data in {self.directory}, and that user's home {user.pw_dir} is not a folder "
                "it owns to keep it in instead; make the parent folders enterable (o+x) or choose "
                "another --dir"
            )
        folder = Path(tempfile.mkdtemp(prefix="pg-", dir=home))
        (folder / OWNER_FILE).write_text(f"{self.directory}\n")
        for path in (folder, folder / OWNER_FILE):
            os.chown(path, user.pw_uid, user.pw_gid)
        os.symlink(folder / "data", self.directory / "data")
        os.symlink(folder / "postgres.log", self.directory / "postgres.log")

    def _initdb(self) -> None:
        # initdb reads the password from a file: one the server's user can read, there only for this call.
        password_file = self.home / "initdb.password"
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self._password() + "\n")
        if self._as_root():
            user = self._os_user()
            os.chown(password_file, user.pw_uid, user.pw_gid)
        argv = [
            str(self._bin("initdb")),
            *("-D", str(self.data_dir), "-U", SUPERUSER, "-E", "UTF8", "--no-locale"),
            # A password over TCP; on the unix socket (in the data folder) only the server's own OS user.
            *("--auth-host=scram-sha-256", "--auth-local=peer", f"--pwfile={password_file}"),
        ]
        if not self.durable:
            argv.append("--no-sync")
        try:
            result = self._run_as_owner(argv)
        finally:
            password_file.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresError(f"initdb failed in {self.data_dir}:\n{result.stdout.strip()}")

    def _require_password(self, timeout: float) -> None:
        """Gives a cluster made before passwords (`initdb -A trust`) the password, then stops trusting.

        Such a cluster let any local user in as the superuser; it keeps its data.
        """
        hba = self.data_dir / "pg_hba.conf"
        lines = hba.read_text().splitlines(keepends=True)
        fixed = [_without_trust(line) for line in lines]
        if fixed == lines:
            return
        # Still trusted here, so no password is needed to set one; hex digits need no quoting.
        result = self._psql(f"ALTER ROLE {SUPERUSER} PASSWORD '{self._password()}'")
        if result.returncode != 0:
            raise PostgresError(f"cannot set the superuser's password: {result.stderr.strip()}")
        loaded = self._psql("SELECT pg_conf_load_time()").stdout
        hba.write_text("".join(fixed))  # in place: the file keeps its owner, the server's user
        reload = self._run_as_owner([str(self._bin("pg_ctl")), "-D", str(self.data_dir), "reload"])
        if reload.returncode != 0:
            raise PostgresError(f"pg_ctl reload failed: {reload.stdout.strip()}")
        # pg_ctl reload only signals the server. A new connection sees a newer load time once the
        # postmaster has re-read its files, pg_hba.conf included, so from then on trust is gone.
        if not wait_for(lambda: self._psql("SELECT pg_conf_load_time()").stdout != loaded, timeout):
            raise PostgresError(f"PostgreSQL did not reload pg_hba.conf:\n{log_tail(self.log_path)}")

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

    def _start_server(self, timeout: float, fixed_port: int | None = None) -> None:
        failure = ""
        for _ in range(START_ATTEMPTS):
            port = fixed_port if fixed_port is not None else free_port(HOST)
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
            env=_clean_env() | {"PGPASSWORD": self._password()},
            check=False,
        )

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")[-8000:]
        except OSError:
            return ""


def _without_trust(line: str) -> str:
    """A pg_hba.conf line with `trust` replaced: a password over TCP, the OS user on the socket."""
    fields = line.split()
    if len(fields) < 4 or fields[-1] != "trust":
        return line
    method = "peer" if fields[0] == "local" else "scram-sha-256"
    return line[: line.rindex("trust")] + method + line[line.rindex("trust") + len("trust") :]


def _relocated_homes(user: pwd.struct_passwd) -> Path | None:
    """`~user/mangakai-devstack`, created for `user` alone, or None when `user` has no home of its own."""
    home = Path(user.pw_dir)
    try:
        if not home.is_dir() or home.stat().st_uid != user.pw_uid:
            return None
        homes = home / RELOCATED_HOMES
        homes.mkdir(mode=0o700, exist_ok=True)
        if homes.is_symlink() or homes.stat().st_uid not in (0, user.pw_uid):
            return None
        os.chown(homes, user.pw_uid, user.pw_gid)
    except OSError:
        return None
    return homes


def _remove_abandoned_homes(user: pwd.struct_passwd) -> None:
    """Deletes relocated folders whose directory no longer links to them and whose server is stopped.

    That is what `make clean` (or deleting a checkout) leaves behind: the
    links went with the directory, the data stayed in the server user's home.
    """
    homes = Path(user.pw_dir) / RELOCATED_HOMES
    if not homes.is_dir():
        return
    for folder in homes.iterdir():
        try:
            owner = Path((folder / OWNER_FILE).read_text().strip())
        except OSError:
            continue  # being set up right now, or not ours
        link = owner / "data"
        if link.is_symlink():
            if Path(os.readlink(link)) == folder / "data":
                continue
        elif owner.is_dir() and not link.exists():
            continue  # the link is being made right now
        try:
            pid_line = (folder / "data" / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            pid_line = ""
        if pid_line.isdigit() and is_alive(int(pid_line)):
            continue  # still running: its directory was removed under it; `remove` or a reboot ends it
        shutil.rmtree(folder, ignore_errors=True)
