"""The gateway's web listener pieces: static assets, CORS and the mapping of errors to Connect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from connectrpc.code import Code
from google.rpc import error_details_pb2

from mangakai_gateway.asgi import App, Message
from mangakai_gateway.assets import StaticAssets
from mangakai_gateway.connect_errors import connect_error
from mangakai_gateway.cors import CorsMiddleware
from mangakai_runtime.errors import FieldViolation, InvalidArgument, ResourceExhausted


async def get(
    app: App, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return {"status": start["status"], "headers": dict(start["headers"]), "body": body}


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>app</title>")
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("do not serve")
    return tmp_path


async def test_hashed_assets_are_cached_for_a_year_and_the_page_is_revalidated(dist: Path) -> None:
    assets = StaticAssets(dist)
    script = await get(assets, "/assets/index-abc123.js")
    assert script["status"] == 200
    assert script["headers"][b"cache-control"] == b"public, max-age=31536000, immutable"
    assert script["headers"][b"content-type"].startswith(b"text/javascript")
    page = await get(assets, "/")
    assert page["headers"][b"cache-control"] == b"no-cache"
    again = await get(assets, "/", headers={"If-None-Match": page["headers"][b"etag"].decode()})
    assert again["status"] == 304


async def test_client_routes_get_the_app_and_nothing_outside_the_directory_is_served(dist: Path) -> None:
    assets = StaticAssets(dist)
    route = await get(assets, "/jobs/0b7e6c9e-8a38-4ad4-9a53-43b1f3a0d5a2")
    assert route["status"] == 200 and b"<title>app</title>" in route["body"]
    assert (await get(assets, "/assets/missing-123.js"))["status"] == 404
    assert (await get(assets, "/../secret.txt"))["status"] == 404
    assert (await get(assets, "/", method="POST"))["status"] == 405


async def test_missing_build_says_how_to_make_it(tmp_path: Path) -> None:
    response = await get(StaticAssets(tmp_path / "nothing"), "/")
    assert response["status"] == 503 and b"make web" in response["body"]


async def test_cors_answers_preflights_of_configured_origins_only(dist: Path) -> None:
    app = CorsMiddleware(StaticAssets(dist), ["https://app.example", ""])
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    allowed = await get(app, "/mangakai.v1.JobService/GetJob", "OPTIONS", preflight)
    assert allowed["status"] == 204
    assert allowed["headers"][b"access-control-allow-origin"] == b"https://app.example"
    assert b"x-grpc-web" in allowed["headers"][b"access-control-allow-headers"]
    simple = await get(app, "/", headers={"Origin": "https://app.example"})
    assert b"grpc-status-details-bin" in simple["headers"][b"access-control-expose-headers"]
    other = await get(app, "/", headers={"Origin": "https://evil.example"})
    assert b"access-control-allow-origin" not in other["headers"]


def test_field_violations_and_retry_info_reach_connect_clients() -> None:
    error = connect_error(InvalidArgument([FieldViolation("story", "is required")]), "CreateJob")
    assert error.code == Code.INVALID_ARGUMENT
    (detail,) = error.details
    assert detail.type_name == "google.rpc.BadRequest"
    bad = error_details_pb2.BadRequest.FromString(detail.message_bytes)
    assert [(v.field, v.description) for v in bad.field_violations] == [("story", "is required")]

    limited = connect_error(ResourceExhausted("too many new jobs", retry_after=12.5), "CreateJob")
    assert limited.code == Code.RESOURCE_EXHAUSTED
    retry = next(d for d in limited.details if d.type_name == "google.rpc.RetryInfo")
    assert error_details_pb2.RetryInfo.FromString(retry.message_bytes).retry_delay.seconds == 12


def test_unexpected_errors_are_internal_without_details() -> None:
    error = connect_error(RuntimeError("database password is hunter2"), "GetJob")
    assert error.code == Code.INTERNAL
    assert "hunter2" not in error.message
