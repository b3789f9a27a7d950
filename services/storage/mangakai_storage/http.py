"""The HTTP server behind signed fs URLs: GET and HEAD of `/blobs/{key}`, and `/healthz`.

Blobs are content-addressed, so a response never changes for its ETag (the
sha256), but the URL that reaches it expires: responses are `private` (no
shared cache keeps serving a blob to others once its URL is dead) and cached
no longer than the URL's remaining lifetime. A signed URL is a bearer
credential, so any origin may read it (the web app loads panels from here).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from hypercorn.asyncio import serve
from hypercorn.config import Config

from mangakai_runtime.errors import NotFound
from mangakai_storage.backend import BlobBackend
from mangakai_storage.keys import key_problem
from mangakai_storage.metrics import BYTES_OUT
from mangakai_storage.signing import UrlSigner, Verdict

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

BLOB_PATH = "/blobs/"
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"ETag, Content-Length, Content-Range, Accept-Ranges"),
]
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def cache_control(expires_at: int, *, now: float | None = None) -> str:
    """Cache-Control of a blob served through a URL valid until `expires_at` (unix seconds)."""
    remaining = max(0, expires_at - int(now if now is not None else time.time()))
    return f"private, max-age={remaining}"


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes the blob does not have."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The [start, end) bytes a single-range header asks for; None to send the whole blob.

    Malformed headers and multiple ranges are ignored, as RFC 9110 allows.
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    end = size if not last else min(int(last) + 1, size)
    return start, end


def _etag_matches(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


class BlobHttpApp:
    """ASGI app serving blobs at signed URLs."""

    def __init__(self, backend: BlobBackend, signer: UrlSigner | None) -> None:
        self._backend = backend
        self._signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/healthz":
            await self._plain(send, 200, b"ok\n", head=method == "HEAD")
        elif path.startswith(BLOB_PATH) and self._signer is not None:
            if method in ("GET", "HEAD"):
                await self._blob(scope, send, path[len(BLOB_PATH) :], head=method == "HEAD")
            elif method == "OPTIONS":
                await self._preflight(send)
            else:
                await self._plain(
                    send, 405, b"method not allowed\n", extra=[(b"allow", b"GET, HEAD, OPTIONS")]
                )
        else:
            await self._plain(send, 404, b"not found\n")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _plain(
        self,
        send: Send,
        status: int,
        body: bytes,
        *,
        head: bool = False,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *(extra or []),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _preflight(self, send: Send) -> None:
        headers = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
            (b"access-control-allow-headers", b"Range, If-None-Match"),
            (b"access-control-max-age", b"86400"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _blob(self, scope: Scope, send: Send, key: str, *, head: bool) -> None:
        assert self._signer is not None
        query = parse_qs(scope["query_string"].decode("latin-1"))
        expires = query.get("expires", [""])[0]
        sig = query.get("sig", [""])[0]
        if key_problem(key) is not None:
            await self._plain(send, 404, b"not found\n", head=head, extra=_CORS)
            return
        verdict = self._signer.verify(key, expires, sig)
        if verdict is not Verdict.VALID:
            await self._plain(send, 403, f"forbidden: {verdict.value}\n".encode(), head=head, extra=_CORS)
            return
        request_headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        try:
            async with self._backend.open(key) as reader:
                info = reader.info
                etag = f'"{info.sha256}"'
                common = [
                    (b"etag", etag.encode()),
                    (b"cache-control", cache_control(int(expires)).encode()),
                    (b"accept-ranges", b"bytes"),
                    *_CORS,
                ]
                if_none_match = request_headers.get("if-none-match")
                if if_none_match is not None and _etag_matches(if_none_match, etag):
                    await send({"type": "http.response.start", "status": 304, "headers": common})
                    await send({"type": "http.response.body", "body": b""})
                    return
                status, start, end = 200, 0, info.size
                range_header = request_headers.get("range")
                if range_header is not None:
                    try:
                        byte_range = parse_range(range_header, info.size)
                    except RangeNotSatisfiable:
                        await self._plain(
                            send,
                            416,
                            b"range not satisfiable\n",
                            head=head,
                            extra=[(b"content-range", f"bytes */{info.size}".encode()), *_CORS],
                        )
                        return
                    if byte_range is not None:
                        status, (start, end) = 206, byte_range
                headers = [
                    (b"content-type", info.content_type.encode("latin-1")),
                    (b"content-length", str(end - start).encode()),
                    *common,
                ]
                if status == 206:
                    headers.append((b"content-range", f"bytes {start}-{end - 1}/{info.size}".encode()))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                if head:
                    await send({"type": "http.response.body", "body": b""})
                    return
                counter = BYTES_OUT.labels(self._backend.name)
                async for chunk in reader.chunks(start, end):
                    counter.inc(len(chunk))
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except NotFound:
            await self._plain(send, 404, b"not found\n", head=head, extra=_CORS)


class BlobHttpServer:
    """Hypercorn serving the blob app on a socket bound up front, so the port is known before serving."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        self._app: BlobHttpApp | None = None
        self._stopped = asyncio.Event()

    @classmethod
    def bind(cls, host: str, port: int) -> BlobHttpServer:
        """Binds `host:port` (0 picks a free port) without serving yet."""
        host = host.strip("[]")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return cls(sock)

    def attach(self, app: BlobHttpApp) -> None:
        self._app = app

    async def run(self) -> None:
        """Serves until `stop()` or cancellation."""
        if self._app is None:
            raise RuntimeError("BlobHttpServer.attach() was not called")
        config = Config()
        # Hypercorn adopts the descriptor and closes it when it stops.
        config.bind = [f"fd://{self._sock.detach()}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = 5.0
        # Our app follows the ASGI protocol with plain dicts, not hypercorn's typed events.
        app: Any = self._app
        await serve(app, config, shutdown_trigger=self._stopped.wait)

    async def stop(self) -> None:
        self._stopped.set()
