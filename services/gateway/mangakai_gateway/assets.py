"""The browser app's built files (web/dist), served by the gateway's web listener.

Vite names everything under assets/ after a hash of its content, so those
files are cached for a year (`immutable`); index.html and the other unhashed
files are revalidated on every load, so a new build is picked up at once.
Any other GET path without a file (e.g. /jobs/{id}, /history) gets index.html:
the app routes on the client.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
from pathlib import Path

from mangakai_gateway.asgi import Receive, Scope, Send, header, respond

HASHED_PREFIX = "assets/"
IMMUTABLE = b"public, max-age=31536000, immutable"
REVALIDATE = b"no-cache"
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class StaticAssets:
    """Serves the files of one directory (GET and HEAD only)."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def _file(self, path: str) -> Path | None:
        relative = path.lstrip("/")
        candidate = (self._root / relative).resolve() if relative else self._root / "index.html"
        if not candidate.is_relative_to(self._root) or not candidate.is_file():
            return None
        return candidate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await respond(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        path: str = scope["path"]
        found = self._file(path)
        if found is None:
            if path.lstrip("/").startswith(HASHED_PREFIX) or "." in path.rsplit("/", 1)[-1]:
                await respond(send, 404, b"not found\n", [(b"content-type", b"text/plain")])
                return
            found = self._root / "index.html"  # a client-side route
            if not found.is_file():
                await respond(
                    send,
                    503,
                    b"the web app is not built: run `make web`\n",
                    [(b"content-type", b"text/plain; charset=utf-8")],
                )
                return
        body = await asyncio.to_thread(found.read_bytes)
        hashed = found.relative_to(self._root).as_posix().startswith(HASHED_PREFIX)
        kind = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
            kind += "; charset=utf-8"
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        headers = [
            (b"content-type", kind.encode()),
            (b"cache-control", IMMUTABLE if hashed else REVALIDATE),
            (b"etag", etag.encode()),
            *_SECURITY_HEADERS,
        ]
        if header(scope, b"if-none-match") == etag:
            await respond(send, 304, headers=headers)
            return
        headers.append((b"content-length", str(len(body)).encode()))
        await respond(send, 200, b"" if scope["method"] == "HEAD" else body, headers)
