"""Which strings are blob keys and prefixes."""

from __future__ import annotations

import pytest

from mangakai_runtime.errors import InvalidArgument
from mangakai_storage.keys import MAX_KEY_LENGTH, key_problem, validate_key, validate_prefix


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "0",
        "jobs/0f3a/panels/001.png",
        "jobs/x_y-z.v2/page.1.png",
        "a/.hidden",
        "a/..b",
        "a" * MAX_KEY_LENGTH,
    ],
)
def test_valid_keys(key: str) -> None:
    assert key_problem(key) is None
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("", "required"),
        ("../x", "'..'"),
        ("a/../x", "'..'"),
        ("a/./x", "'.'"),
        ("a/..", "'..'"),
        ("/abs", "start with '/'"),
        ("a//b", "empty segments"),
        ("a/", "end with '/'"),
        ("Jobs/x", "lower-case"),
        ("jobs/X.png", "lower-case"),
        ("a b", "lower-case"),
        ("a\\b", "lower-case"),
        ("a\x00b", "lower-case"),
        ("caf\u00e9", "lower-case"),
        (".x", "must start with a letter or digit"),
        ("a" * (MAX_KEY_LENGTH + 1), "at most 512"),
    ],
)
def test_invalid_keys_name_the_field(key: str, words: str) -> None:
    problem = key_problem(key)
    assert problem is not None
    assert words in problem
    with pytest.raises(InvalidArgument) as raised:
        validate_key(key, "header.key")
    assert [(v.field, v.description) for v in raised.value.violations] == [("header.key", problem)]


def test_prefixes() -> None:
    assert validate_prefix("jobs/0f3a/") == "jobs/0f3a/"
    for prefix in ("jobs/0f3a", "/", "", "../", "a//", "Jobs/"):
        with pytest.raises(InvalidArgument) as raised:
            validate_prefix(prefix)
        assert raised.value.violations[0].field == "prefix"
