"""Content types: which are accepted, and checking that image bytes are what they claim.

Panels are PNG and the web app shows blobs as images, so a blob declared as
an image must decode as that image format; anything else could be served
with a misleading type.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from PIL import Image

from mangakai_runtime.errors import FieldViolation, InvalidArgument
from mangakai_storage.backend import ContentCheck

MAX_CONTENT_TYPE_LENGTH = 255

_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*(?:;[ -~]*)?")

IMAGE_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
}
"""Image types accepted, and the Pillow format their bytes must decode as."""


def content_type_problem(content_type: str) -> str | None:
    """Why `content_type` is not accepted, or None when it is."""
    if not content_type:
        return "is required"
    if len(content_type) > MAX_CONTENT_TYPE_LENGTH:
        return f"must be at most {MAX_CONTENT_TYPE_LENGTH} characters"
    if not _CONTENT_TYPE.fullmatch(content_type):
        return "must be a lower-case MIME type such as 'image/png'"
    media_type = content_type.split(";", 1)[0].strip()
    if media_type.startswith("image/") and media_type not in IMAGE_FORMATS:
        return f"image types must be one of {', '.join(sorted(IMAGE_FORMATS))}"
    return None


def content_check(content_type: str, field: str) -> ContentCheck | None:
    """The check the bytes of a blob of `content_type` must pass, if any."""
    media_type = content_type.split(";", 1)[0].strip()
    expected = IMAGE_FORMATS.get(media_type)
    if expected is None:
        return None

    def check(path: Path) -> None:
        problem = _image_problem(path, expected)
        if problem is not None:
            raise InvalidArgument([FieldViolation(field, f"content is not a valid {media_type}: {problem}")])

    return check


def _image_problem(path: Path, expected: str) -> str | None:
    try:
        with warnings.catch_warnings():
            # Large images are fine here; only the format and integrity matter.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                actual = image.format
                image.verify()
    except Image.DecompressionBombError:
        return "the image has too many pixels"
    except Exception as exc:
        return f"it does not decode ({type(exc).__name__})"
    if actual != expected:
        return f"the bytes are {actual}"
    return None
