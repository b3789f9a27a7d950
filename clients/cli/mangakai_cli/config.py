"""Where the CLI connects and which session token it uses there.

The gateway address comes from the command line, the environment, the local
dev stack's `.run/stack.json` (its "gateway_address"), or a default, in that order. Session tokens are
kept per gateway address in a JSON file readable only by its owner.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

DEFAULT_GATEWAY = "127.0.0.1:50051"
GATEWAY_ENV = "MANGAKAI_GATEWAY"
STACK_FILE = Path(".run") / "stack.json"


class ConfigError(Exception):
    """The configuration on disk cannot be used; the message says which file and why."""


def resolve_gateway(explicit: str | None, env: Mapping[str, str], cwd: Path) -> str:
    """The gateway address to use: flag, then $MANGAKAI_GATEWAY, then `.run/stack.json` (its "gateway_address"), then the default."""
    if explicit:
        return explicit
    from_env = env.get(GATEWAY_ENV, "").strip()
    if from_env:
        return from_env
    stack_file = cwd / STACK_FILE
    if stack_file.is_file():
        try:
            stack = json.loads(stack_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{stack_file}: cannot read the dev stack description: {exc}") from exc
        gateway = stack.get("gateway_address") if isinstance(stack, dict) else None
        if isinstance(gateway, str) and gateway:
            return gateway
    return DEFAULT_GATEWAY


def default_session_file(env: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME/mangakai/sessions.json`, or `~/.config/mangakai/sessions.json`."""
    config_home = env.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config_home) if config_home else Path.home() / ".config"
    return base / "mangakai" / "sessions.json"


class SessionStore:
    """Session tokens by gateway address, in a JSON file of mode 0600.

    The file looks like `{"gateways": {"127.0.0.1:50051": {"token": "...", "session": "sessions/..."}}}`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def token(self, gateway: str) -> str | None:
        entry = self._read().get(gateway)
        if isinstance(entry, dict):
            token = entry.get("token")
            if isinstance(token, str) and token:
                return token
        return None

    def save(self, gateway: str, token: str, session: str) -> None:
        gateways = self._read()
        gateways[gateway] = {"token": token, "session": session}
        self._write(gateways)

    def forget(self, gateway: str) -> None:
        gateways = self._read()
        if gateways.pop(gateway, None) is not None:
            self._write(gateways)

    def _read(self) -> dict[str, object]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read the session file: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(
                f"{self.path}: not valid JSON ({exc}); delete it to start a new session"
            ) from exc
        gateways = data.get("gateways") if isinstance(data, dict) else None
        return dict(gateways) if isinstance(gateways, dict) else {}

    def _write(self, gateways: dict[str, object]) -> None:
        # The token is a credential: the directory is private and the file is
        # created 0600 before any byte is written, then renamed into place so a
        # crash never leaves half a file.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".sessions-", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as tmp:
                json.dump({"gateways": gateways}, tmp, indent=2, sort_keys=True)
                tmp.write("\n")
            os.replace(tmp_name, self.path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
