"""Where the CLI connects, and how it keeps session tokens."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from mangakai_cli.config import (
    DEFAULT_GATEWAY,
    ConfigError,
    SessionStore,
    default_session_file,
    resolve_gateway,
)


def _stack(tmp_path: Path, gateway: str) -> None:
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "stack.json").write_text(
        json.dumps({"gateway_address": gateway, "storage_http_url": "http://127.0.0.1:1"})
    )


def test_the_flag_wins_over_everything(tmp_path: Path) -> None:
    _stack(tmp_path, "127.0.0.1:7000")
    env = {"MANGAKAI_GATEWAY": "gw.example:443"}
    assert resolve_gateway("127.0.0.1:9", env, tmp_path) == "127.0.0.1:9"


def test_the_environment_wins_over_the_stack_file(tmp_path: Path) -> None:
    _stack(tmp_path, "127.0.0.1:7000")
    assert resolve_gateway(None, {"MANGAKAI_GATEWAY": "gw.example:443"}, tmp_path) == "gw.example:443"


def test_the_stack_file_of_the_current_directory_is_used(tmp_path: Path) -> None:
    _stack(tmp_path, "127.0.0.1:7000")
    assert resolve_gateway(None, {}, tmp_path) == "127.0.0.1:7000"


def test_the_default_without_flag_environment_or_stack(tmp_path: Path) -> None:
    assert resolve_gateway(None, {}, tmp_path) == DEFAULT_GATEWAY == "127.0.0.1:50051"


def test_a_broken_stack_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "stack.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"stack\.json"):
        resolve_gateway(None, {}, tmp_path)


def test_session_file_location_follows_xdg(tmp_path: Path) -> None:
    assert default_session_file({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "mangakai" / "sessions.json"
    assert default_session_file({}) == Path.home() / ".config" / "mangakai" / "sessions.json"


def test_tokens_are_kept_per_gateway_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "mangakai" / "sessions.json"
    store = SessionStore(path)
    assert store.token("a:1") is None

    store.save("a:1", "token-a", "sessions/a")
    store.save("b:2", "token-b", "sessions/b")

    assert SessionStore(path).token("a:1") == "token-a"
    assert SessionStore(path).token("b:2") == "token-b"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.forget("a:1")
    assert SessionStore(path).token("a:1") is None
    assert SessionStore(path).token("b:2") == "token-b"
    assert [p.name for p in path.parent.iterdir()] == ["sessions.json"]
