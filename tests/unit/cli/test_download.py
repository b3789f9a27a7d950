"""Downloads land complete or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_gateway import FileServer

from mangakai_cli.download import DownloadError, download


def test_download_writes_the_file(files: FileServer, tmp_path: Path) -> None:
    uri = files.add("/a.pdf", b"%PDF-1.7 body")
    destination = tmp_path / "nested" / "a.pdf"

    assert download(uri, destination) == len(b"%PDF-1.7 body")

    assert destination.read_bytes() == b"%PDF-1.7 body"


def test_a_failed_download_keeps_the_old_file_and_leaves_no_temporary(
    files: FileServer, tmp_path: Path
) -> None:
    destination = tmp_path / "a.pdf"
    destination.write_bytes(b"previous export")
    uri = files.add("/present.pdf", b"x").replace("/present.pdf", "/missing.pdf")

    with pytest.raises(DownloadError, match="HTTP 404") as raised:
        download(uri, destination)

    assert "signature" not in str(raised.value)  # the signed query string is a credential
    assert destination.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["a.pdf"]
