"""Derivatives of panel images: a WebP copy for web pages and readers, and a thumbnail for lists.

They are made from the PNG a client uploads, before that PNG is committed,
and stored beside it under the keys `mangakai_runtime.blobs` names; so once
a panel's PNG is visible, its WebP copy and thumbnail are too. Encoding is
deterministic: a retried upload produces the same bytes, which the backends
store once.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mangakai_runtime.blobs import thumbnail_key, webp_key

WEBP_CONTENT_TYPE = "image/webp"


@dataclass(frozen=True)
class Derivative:
    """One derived image, ready to store."""

    key: str
    data: bytes
    width: int
    height: int


def derivable(key: str, content_type: str) -> bool:
    """Whether an upload of `content_type` to `key` gets derivatives."""
    return content_type.split(";", 1)[0].strip() == "image/png" and webp_key(key) is not None


def _webp(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    # method=4 is Pillow's default trade of speed for size; exact keeps transparent pixels' colour.
    image.save(buffer, format="WEBP", quality=quality, method=4, exact=image.mode == "RGBA")
    return buffer.getvalue()


def make_derivatives(source: Path, key: str, *, quality: int, thumbnail_pixels: int) -> list[Derivative]:
    """The WebP copy and the thumbnail of the PNG at `source` (stored as `key`). Runs in a thread."""
    full_key, thumb_key = webp_key(key), thumbnail_key(key)
    if full_key is None or thumb_key is None:
        return []
    with Image.open(source) as opened:
        image = opened.convert(
            "RGBA" if opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info else "RGB"
        )
    thumbnail = image.copy()
    thumbnail.thumbnail((thumbnail_pixels, thumbnail_pixels), Image.Resampling.LANCZOS)
    return [
        Derivative(full_key, _webp(image, quality), image.width, image.height),
        Derivative(thumb_key, _webp(thumbnail, quality), thumbnail.width, thumbnail.height),
    ]
