"""HMAC-signed, expiring download URLs for blobs on the fs backend.

A URL is `{base}/blobs/{key}?expires={unix seconds}&sig={hex}`, where `sig`
is HMAC-SHA256 over the key and the expiry. Whoever holds the URL may read
that one blob until it expires; nothing else is needed to check it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import time
from urllib.parse import quote

_HEX_KEY = re.compile(r"(?:[0-9a-fA-F]{2}){16,}")


def signing_key_bytes(text: str) -> bytes:
    """The HMAC key from its setting: hex of 16+ bytes is decoded, anything else is used as UTF-8."""
    if _HEX_KEY.fullmatch(text):
        return bytes.fromhex(text)
    return text.encode()


class Verdict(enum.Enum):
    """The outcome of checking a signed URL."""

    VALID = "valid"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad signature"
    EXPIRED = "expired"


class UrlSigner:
    """Signs and checks blob URLs with one secret key."""

    def __init__(self, key: bytes, base_url: str) -> None:
        if not key:
            raise ValueError("the signing key must not be empty")
        self._key = key
        self._base_url = base_url.rstrip("/")

    def _signature(self, key: str, expires: int) -> str:
        message = f"{key}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, key: str, ttl_seconds: int, *, now: float | None = None) -> tuple[str, int]:
        """A URL for `key` and the unix time at which it expires."""
        expires = int(now if now is not None else time.time()) + ttl_seconds
        url = f"{self._base_url}/blobs/{quote(key, safe='/')}?expires={expires}&sig={self._signature(key, expires)}"
        return url, expires

    def verify(self, key: str, expires: str, sig: str, *, now: float | None = None) -> Verdict:
        """Whether `sig` signs `key` until `expires`, and that time has not passed."""
        if not expires.isascii() or not expires.isdigit() or len(expires) > 12 or not sig.isascii():
            return Verdict.MALFORMED
        expires_at = int(expires)
        # Compare before looking at the time, so a forged URL learns nothing from the answer.
        if not hmac.compare_digest(self._signature(key, expires_at), sig.lower()):
            return Verdict.BAD_SIGNATURE
        if expires_at <= (now if now is not None else time.time()):
            return Verdict.EXPIRED
        return Verdict.VALID
