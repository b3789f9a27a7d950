"""`python -m mangakai_devstack up` from a fresh clone in a private folder, as `make up` runs it.

The clone lives in a `tempfile.mkdtemp()` folder (mode 0700): when the tests
run as root, the `postgres` user PostgreSQL runs as cannot enter it, which is
what a checkout under /root looks like. The stack must start there anyway,
run a job end to end through the gateway, and stop on `down`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mangakai.v1 import common_pb2
from mangakai_devstack.postgres import PostgresServer
from mangakai_devstack.processes import is_alive
from mangakai_devstack.services import check_health
from tests.integration.mesh_client import new_session

REPO_ROOT = Path(__file__).resolve().parents[3]
JobState = common_pb2.Job.State


def _devstack(clone: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`python -m mangakai_devstack ...` run from the clone, as the Makefile runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mangakai_devstack", *args],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def clone() -> Iterator[Path]:
    """The repository's current commit, cloned into a folder only its owner can enter."""
    private = Path(tempfile.mkdtemp(prefix="mangakai-clone-"))
    assert private.stat().st_mode & 0o777 == 0o700
    checkout = private / "mangakai"
    try:
        subprocess.run(
            ["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(checkout)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield checkout
    finally:
        if checkout.exists():
            _devstack(checkout, "down", "--dir", ".run", timeout=60)
        # PostgreSQL's data may live outside the clone (when root); remove it with the clone.
        PostgresServer(checkout / ".run" / "pg").remove()
        shutil.rmtree(private, ignore_errors=True)


async def test_up_in_a_private_clone_runs_a_job_and_down_stops_everything(clone: Path) -> None:
    up = _devstack(clone, "up", "--dir", ".run")
    assert up.returncode == 0, up.stderr
    state = json.loads((clone / ".run" / "stack.json").read_text())
    gateway = up.stdout.strip()
    assert gateway == state["gateway_address"]
    postgres_pid = state["postgres"]["pid"]
    pids = [postgres_pid, state["nats"]["pid"], *(s["pid"] for s in state["services"].values())]
    assert all(isinstance(pid, int) and is_alive(pid) for pid in pids)
    # Only the owner of the folder may reach the stack's files.
    assert os.stat(clone.parent).st_mode & 0o777 == 0o700

    async with grpc.aio.insecure_channel(gateway) as channel:
        session = await new_session(channel)
        job = await session.create_job(panels=1)
        events = await session.events(job.name)
        assert events[-1].terminal
        assert events[-1].state_changed.state == JobState.STATE_COMPLETED, events[-1]
        done = await session.get(job.name)
        assert done.state == JobState.STATE_COMPLETED
        assert len(done.panels) == 1

    # A second `up` finds the running stack, PostgreSQL included, and keeps it.
    again = _devstack(clone, "up", "--dir", ".run")
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stderr
    assert again.stdout.strip() == gateway
    status = _devstack(clone, "status", "--dir", ".run")
    assert status.returncode == 0, status.stdout + status.stderr

    down = _devstack(clone, "down", "--dir", ".run")
    assert down.returncode == 0, down.stderr
    assert "postgres" in down.stderr
    assert not any(is_alive(pid) for pid in pids)
    assert not check_health(gateway, timeout=0.5)
    assert not PostgresServer(clone / ".run" / "pg").is_running()

    # `make clean` deletes PostgreSQL's data wherever it lives (as root: in the postgres user's home).
    home = PostgresServer(clone / ".run" / "pg").home
    assert (home / "data").is_dir()
    purge = _devstack(clone, "down", "--purge", "--dir", ".run")
    assert purge.returncode == 0, purge.stderr
    assert not home.exists()
    assert not (clone / ".run" / "pg").exists()
