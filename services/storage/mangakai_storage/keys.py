"""Blob keys: which strings name a blob, and which name a prefix of blobs.

A key is a path of lower-case segments, e.g. "jobs/0f3a/panels/001.png". The
rules keep keys safe as file paths (no "..", no absolute paths, no empty
segments) and identical on every backend.
"""

from __future__ import annotations

import re

from mangakai_runtime.errors import FieldViolation, InvalidArgument

MAX_KEY_LENGTH = 512

_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]*(?:/[a-z0-9_.-]+)*")


def key_problem(key: str) -> str | None:
    """Why `key` is not a valid blob key, or None when it is."""
    if not key:
        return "is required"
    if len(key) > MAX_KEY_LENGTH:
        return f"must be at most {MAX_KEY_LENGTH} characters"
    if key.startswith("/"):
        return "must not start with '/'"
    if key.endswith("/"):
        return "must not end with '/'"
    if "//" in key:
        return "must not contain empty segments ('//')"
    if any(segment in (".", "..") for segment in key.split("/")):
        return "must not contain '.' or '..' segments"
    if not _KEY.fullmatch(key):
        return "may contain only lower-case letters, digits, '_', '.', '-' and '/', and must start with a letter or digit"
    return None


def validate_key(key: str, field: str = "key") -> str:
    """Returns `key`, or raises InvalidArgument naming `field`."""
    problem = key_problem(key)
    if problem is not None:
        raise InvalidArgument([FieldViolation(field, problem)])
    return key


def prefix_problem(prefix: str) -> str | None:
    """Why `prefix` is not a valid key prefix ("jobs/0f3a/"), or None when it is."""
    if not prefix.endswith("/"):
        return "must end with '/'"
    problem = key_problem(prefix[:-1])
    return None if problem is None else problem.replace("is required", "must name at least one segment")


def validate_prefix(prefix: str, field: str = "prefix") -> str:
    """Returns `prefix`, or raises InvalidArgument naming `field`."""
    problem = prefix_problem(prefix)
    if problem is not None:
        raise InvalidArgument([FieldViolation(field, problem)])
    return prefix
