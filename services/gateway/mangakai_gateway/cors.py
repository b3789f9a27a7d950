"""CORS for the web listener: lets the app served from another origin (Vite's dev server, a CDN) call the API.

Only origins in GATEWAY_CORS_ORIGINS get CORS headers; the app served by the
gateway itself is same-origin and needs none. Preflights are answered here
(connectrpc does not); the headers gRPC-Web and Connect clients send and read
are allowed and exposed.
"""

from __future__ import annotations

from collections.abc import Iterable

from mangakai_gateway.asgi import App, Message, Receive, Scope, Send, header, respond

ALLOWED_HEADERS = (
    "authorization, content-type, connect-protocol-version, connect-timeout-ms, "
    "grpc-timeout, x-grpc-web, x-user-agent"
)
EXPOSED_HEADERS = (
    "grpc-status, grpc-message, grpc-status-details-bin, content-encoding, connect-content-encoding"
)
PREFLIGHT_MAX_AGE = "7200"


class CorsMiddleware:
    """Adds CORS headers for the configured origins ("*" allows any) and answers preflights."""

    def __init__(self, app: App, origins: Iterable[str]) -> None:
        self._app = app
        self._origins = {o.strip().rstrip("/") for o in origins if o.strip()}

    def _allowed(self, origin: str) -> bool:
        return bool(origin) and ("*" in self._origins or origin in self._origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        origin = header(scope, b"origin")
        if not self._allowed(origin):
            await self._app(scope, receive, send)
            return
        common = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method"):
            await respond(
                send,
                204,
                headers=[
                    *common,
                    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                    (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                    (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
                ],
            )
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *common,
                    (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
                ]
            await send(message)

        await self._app(scope, receive, send_with_cors)
