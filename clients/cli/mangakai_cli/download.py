"""Downloading a signed URL to a file, atomically.

The bytes go to a temporary file beside the destination, which is renamed
over it only once the download is complete: an interrupted download never
leaves a truncated PDF or image behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_TIMEOUT_S = 60.0


class DownloadError(Exception):
    """A URL could not be fetched; the message names the URL's host and the cause."""


def download(uri: str, destination: Path, *, timeout: float = DEFAULT_TIMEOUT_S) -> int:
    """Fetches `uri` into `destination` and returns the number of bytes written."""
    if not uri:
        raise DownloadError(f"no download address for {destination}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}-", suffix=".part", dir=destination.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            try:
                with urllib.request.urlopen(uri, timeout=timeout) as response:
                    shutil.copyfileobj(response, tmp)
            except urllib.error.HTTPError as exc:
                raise DownloadError(f"downloading {_safe(uri)} failed: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, TimeoutError, ValueError) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                raise DownloadError(f"downloading {_safe(uri)} failed: {reason}") from exc
            size = tmp.tell()
        # mkstemp makes the file 0600; a download is an ordinary, readable file.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, destination)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return size


def _safe(uri: str) -> str:
    # A signed URL's query string is a credential; keep it out of error messages.
    return uri.split("?", 1)[0]
