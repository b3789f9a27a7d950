"""Where the dev PostgreSQL keeps its data, which OS user runs it, and who may log in as its superuser."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from mangakai_devstack.postgres import MAX_SOCKET_DIR_LENGTH, OS_USER, PostgresServer, find_bindir

DEVSTACK_PATH = Path(__file__).resolve().parents[3] / "tools" / "devstack"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A folder made by mkdtemp (mode 0700): when we are root, the `postgres` user cannot enter it."""
    folder = Path(tempfile.mkdtemp(prefix="mangakai-pg-private-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _runs_as(pid: int) -> int:
    """The real uid of process `pid`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _without_password(dsn: str) -> str:
    scheme, rest = dsn.split("://", 1)
    credentials, where = rest.split("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}@{where}"


async def test_the_superuser_needs_the_generated_password(postgres: PostgresServer) -> None:
    assert postgres.password_file.stat().st_mode & 0o777 == 0o600
    password = postgres.password_file.read_text().strip()
    assert len(password) >= 32
    assert f":{password}@" in postgres.dsn
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(_without_password(postgres.dsn))
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(postgres.dsn.replace(password, "not-the-password"))
    conn = await asyncpg.connect(postgres.dsn)
    try:
        assert await conn.fetchval("select current_user") == "postgres"
    finally:
        await conn.close()


@pytest.fixture
def trusting_cluster(private_dir: Path) -> Path:
    """`.run/pg` of a checkout from before passwords: `initdb -A trust` let every local user in."""
    private_dir.chmod(0o755)  # the data stays in place, as in such a checkout
    directory = private_dir / "pg"
    directory.mkdir()
    as_server_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam(OS_USER)
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        as_server_user = ["runuser", "-u", OS_USER, "--"]
    initdb = [str(find_bindir() / "initdb"), "-D", str(directory / "data"), "-A", "trust", "-U", "postgres"]
    made = subprocess.run(
        [*as_server_user, *initdb, "--no-sync"], cwd="/", capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, made.stdout + made.stderr
    return directory


def _hba_methods(data_dir: Path) -> set[str]:
    lines = (data_dir / "pg_hba.conf").read_text().splitlines()
    return {line.split()[-1] for line in lines if line.strip() and not line.lstrip().startswith("#")}


async def test_a_cluster_made_without_passwords_gets_one(trusting_cluster: Path) -> None:
    server = PostgresServer(trusting_cluster, durable=False)
    assert _hba_methods(server.data_dir) == {"trust"}
    try:
        server.start()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(_without_password(server.dsn))
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("select current_database()") == "mangakai"
        finally:
            await conn.close()
        assert _hba_methods(server.data_dir) == {"scram-sha-256", "peer"}
    finally:
        server.stop()


@as_root
async def test_data_moves_out_of_a_folder_postgres_cannot_enter_and_is_found_again(
    private_dir: Path,
) -> None:
    directory = private_dir / "pg"
    server = PostgresServer(directory, durable=False)
    try:
        server.start()
        assert server.relocated
        assert not server.data_dir.is_relative_to(private_dir)
        assert (directory / "data").resolve() == server.data_dir.resolve()
        assert (directory / "postgres.log").resolve() == server.log_path.resolve()
        owner = pwd.getpwnam(OS_USER)
        assert server.home.stat().st_uid == owner.pw_uid
        assert server.home.stat().st_mode & 0o777 == 0o700
        pid = server.pid
        assert pid is not None and _runs_as(pid) == owner.pw_uid
        # The unix socket fits in sockaddr_un and is where the data is.
        assert len(str(server.data_dir)) <= MAX_SOCKET_DIR_LENGTH
        assert (server.data_dir / f".s.PGSQL.{server.port}").is_socket()
        conn = await asyncpg.connect(server.dsn)
        try:
            await conn.execute("create table kept (v int); insert into kept values (7)")
        finally:
            await conn.close()

        # What `status` and a second `up` do: a new object for the same directory finds the server.
        adopted = PostgresServer(directory, durable=False)
        assert adopted.is_running()
        adopted.start()
        assert adopted.port == server.port
        assert adopted.pid == pid

        # What `down` then `up` do: the data is kept across a stop.
        PostgresServer(directory).stop()
        assert not server.is_running()
        restarted = PostgresServer(directory, durable=False)
        restarted.start()
        assert restarted.home == server.home
        conn = await asyncpg.connect(restarted.dsn)
        try:
            assert await conn.fetchval("select v from kept") == 7
        finally:
            await conn.close()
    finally:
        home = server.home
        server.remove()
    assert not home.exists()
    assert not directory.exists()


@as_root
def test_data_whose_folder_was_deleted_is_removed_by_the_next_start(private_dir: Path) -> None:
    cleaned = PostgresServer(private_dir / "cleaned" / "pg", durable=False)
    kept = PostgresServer(private_dir / "kept" / "pg", durable=False)
    fresh = PostgresServer(private_dir / "fresh" / "pg", durable=False)
    try:
        for server in (cleaned, kept):
            server.start()
            server.stop()
        abandoned = cleaned.home
        # `make clean`: `down`, then the stack folder with its links goes.
        shutil.rmtree(private_dir / "cleaned")
        assert abandoned.is_dir()

        fresh.start()
        assert not abandoned.exists()
        assert kept.home.is_dir() and kept.relocated, "a stopped server whose folder remains is kept"
        assert fresh.home.is_dir()
    finally:
        for server in (fresh, kept):
            server.remove()


@as_root
async def test_for_another_user_the_server_runs_as_that_user(private_dir: Path) -> None:
    """Not root: no `postgres` user is involved, the data stays in place, the invoker runs the server."""
    user = pwd.getpwnam("nobody")
    python = shutil.which("python3", path=os.defpath)
    if python is None:
        pytest.skip("no system python3 for another user to run")
    reachable = await asyncio.to_thread(
        subprocess.run,
        ["runuser", "-u", user.pw_name, "--", "test", "-r", str(DEVSTACK_PATH / "mangakai_devstack")],
        check=False,
    )
    if reachable.returncode != 0:
        pytest.skip(f"{user.pw_name} cannot read the devstack sources")
    os.chown(private_dir, user.pw_uid, user.pw_gid)
    directory = private_dir / "pg"
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from mangakai_devstack.postgres import PostgresServer
        server = PostgresServer(Path(sys.argv[2]), durable=False)
        if sys.argv[1] == "start":
            server.start()
            print(json.dumps({"pid": server.pid, "dsn": server.dsn}))
        else:
            server.stop()
        """
    )

    def as_user(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", user.pw_name, "--", python, "-c", script, command, str(directory)],
            capture_output=True,
            text=True,
            cwd="/",
            env={"PYTHONPATH": str(DEVSTACK_PATH), "PATH": os.environ.get("PATH", os.defpath)},
            timeout=60,
            check=False,
        )

    started = await asyncio.to_thread(as_user, "start")
    try:
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout)
        assert _runs_as(info["pid"]) == user.pw_uid
        server = PostgresServer(directory)
        assert not server.relocated
        assert server.data_dir.stat().st_uid == user.pw_uid
        conn = await asyncpg.connect(info["dsn"])
        try:
            assert await conn.fetchval("select 1") == 1
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(_without_password(info["dsn"]))
    finally:
        stopped = await asyncio.to_thread(as_user, "stop")
    assert stopped.returncode == 0, stopped.stderr
