"""Signals, liveness checks and log tails for the local processes the devstack starts.

Two kinds of process are handled: children this Python process started (a
`subprocess.Popen`, stopped and reaped through it so no zombie is left) and
processes known only by pid (what `python -m mangakai_devstack down` finds in
stack.json after the process that started them has exited).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

POLL_SECONDS = 0.02


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for programs that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def is_alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie waiting to be reaped counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The command name in parentheses may itself contain spaces or parentheses.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def command_line(pid: int) -> list[str]:
    """The argv of a running process, or [] when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_child(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, wait up to `timeout`, then SIGKILL; always reaps. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return kill_child(proc)
    return proc.returncode


def kill_child(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL and reap."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    return proc.wait()


def stop_pid(pid: int, timeout: float) -> bool:
    """SIGTERM a process that is not our child, SIGKILL it after `timeout`.

    Returns True once it is gone. Its parent (init, usually) reaps it.
    """
    if not is_alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_for(lambda: not is_alive(pid), timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return wait_for(lambda: not is_alive(pid), 5.0)


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Polls `condition` until it holds or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
