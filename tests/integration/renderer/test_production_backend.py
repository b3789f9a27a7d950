"""In production the renderer never falls back to local drawing because a Gemini key went missing.

The renderer runs as a real process (`python -m mangakai_renderer`); a
refused configuration must stop it at start-up with a message naming the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mangakai_devstack.services import ServiceProcess

REFUSAL = "GEMINI_API_KEY is empty: refusing to fall back to the local backend"


def renderer_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "RENDERER_BACKEND")}
    return env | {
        "GRPC_PORT": "0",
        "METRICS_PORT": "-1",
        "LOG_FORMAT": "text",
        "READY_FILE": str(tmp_path / "ready.json"),
        **settings,
    }


@pytest.mark.parametrize("backend", ["auto", "gemini"])
def test_production_without_a_key_exits_at_start_up(tmp_path: Path, backend: str) -> None:
    env = renderer_env(
        tmp_path, MANGAKAI_ENVIRONMENT="production", RENDERER_BACKEND=backend, GEMINI_API_KEY=""
    )

    result = subprocess.run(
        [sys.executable, "-m", "mangakai_renderer"], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1, result.stderr
    assert "GEMINI_API_KEY" in result.stderr
    if backend == "auto":
        assert REFUSAL in result.stderr
        assert "RENDERER_BACKEND=local" in result.stderr, "the message says how to draw locally on purpose"
    assert not (tmp_path / "ready.json").exists(), "it never served"


def test_production_draws_locally_only_when_asked_explicitly(tmp_path: Path) -> None:
    env = renderer_env(tmp_path, MANGAKAI_ENVIRONMENT="production", RENDERER_BACKEND="local")
    service = ServiceProcess(
        "renderer",
        "mangakai_renderer",
        env,
        log_path=tmp_path / "renderer.log",
        ready_file=tmp_path / "ready.json",
    )
    service.start(60)
    try:
        assert json.loads((tmp_path / "ready.json").read_text())["grpc_port"] > 0
        assert "renderer backend: local" in (tmp_path / "renderer.log").read_text()
    finally:
        service.stop()


def test_development_still_falls_back_to_the_local_backend(tmp_path: Path) -> None:
    env = renderer_env(tmp_path, MANGAKAI_ENVIRONMENT="development", RENDERER_BACKEND="auto")
    service = ServiceProcess(
        "renderer",
        "mangakai_renderer",
        env,
        log_path=tmp_path / "renderer.log",
        ready_file=tmp_path / "ready.json",
    )
    service.start(60)
    try:
        assert "renderer backend: local" in (tmp_path / "renderer.log").read_text()
    finally:
        service.stop()
