"""The gateway's web listener: gRPC-Web, Connect (and gRPC) for the public API, plus the browser app.

One ASGI application, served by hypercorn on WEB_PORT: requests under
/mangakai.v1.SessionService/ and /mangakai.v1.JobService/ go to connectrpc
(which speaks gRPC-Web, Connect and, over HTTP/2, gRPC), everything else to
the built browser app. CORS wraps both for the configured origins.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence

from hypercorn.asyncio import serve
from hypercorn.config import Config

from mangakai_gateway.asgi import App, Receive, Scope, Send, respond
from mangakai_runtime.server import Listener

log = logging.getLogger(__name__)


class WebApp:
    """Routes API paths to their connectrpc application and the rest to the static app."""

    def __init__(self, services: Sequence[tuple[str, App]], fallback: App) -> None:
        self._routes = [(f"/{path.strip('/')}/", app) for path, app in services]
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        for prefix, app in self._routes:
            if path.startswith(prefix):
                await app(scope, receive, send)
                return
        if path == "/healthz":
            await respond(send, 200, b"ok\n", [(b"content-type", b"text/plain")])
            return
        await self._fallback(scope, receive, send)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one (read it from getsockname())."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def server(app: App, sock: socket.socket, grace_seconds: float) -> Listener:
    """A `Listener` serving `app` on `sock` with hypercorn.

    When told to drain, hypercorn closes the listening socket (new connections are
    refused), closes idle keep-alive connections and waits up to `grace_seconds`
    for the requests in flight to finish before it cancels them.
    """
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = grace_seconds

    async def run(draining: asyncio.Event) -> None:
        log.info("web listener (gRPC-Web, Connect, the app) on port %d", sock.getsockname()[1])
        # Our own shutdown trigger also keeps hypercorn from taking over SIGTERM/SIGINT,
        # which belong to ServiceMain's orderly shutdown.
        try:
            await serve(app, config, shutdown_trigger=draining.wait)  # type: ignore[arg-type]
        finally:
            # hypercorn adopted the descriptor (fd://) and closes it itself when it drains;
            # closing it again here would fail, or close whatever reused the number since.
            sock.detach()
        log.info("web listener drained")

    return run
