"""Calls to the gateway's web listener with the Connect protocol (JSON), as a browser's client would."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from google.rpc import error_details_pb2


@dataclass
class ConnectResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str:
        """The Connect error code ("resource_exhausted"...), or "ok"."""
        return str(self.body.get("code", "ok")) if self.status != 200 else "ok"

    def retry_delay(self) -> float | None:
        """The google.rpc.RetryInfo delay of an error, in seconds."""
        for detail in self.body.get("details", []):
            if detail.get("type") == "google.rpc.RetryInfo":
                raw = detail["value"]
                info = error_details_pb2.RetryInfo.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
        return None


def call(
    base_url: str,
    method: str,
    message: dict[str, Any],
    *,
    token: str = "",
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> ConnectResponse:
    """A unary Connect call, e.g. call(url, "mangakai.v1.JobService/CreateJob", {...}, token=...)."""
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/{method}",
        data=json.dumps(message).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Connect-Protocol-Version": "1",
            **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return ConnectResponse(
                response.status, json.loads(response.read() or b"{}"), dict(response.headers.items())
            )
    except urllib.error.HTTPError as error:
        return ConnectResponse(error.code, json.loads(error.read() or b"{}"), dict(error.headers.items()))
