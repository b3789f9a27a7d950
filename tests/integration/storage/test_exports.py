"""Exports people keep: a real job through the whole mesh, downloaded with the `mangakai` CLI.

The CLI runs as its own process against the gateway of a real stack, exactly
as a person would run it; the files it leaves are then read the way a comic
reader (CBZ) and a PDF viewer read them.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mangakai_devstack.stack import Stack
from tests.integration.mesh_client import STORY_EN, fetch
from tests.integration.storage.document_checks import check_cbz, check_pdf

PANELS = 3


def mangakai(stack: Stack, home: Path, *args: str) -> dict[str, Any]:
    """Runs `mangakai --json ARGS` against the stack's gateway; returns its JSON output."""
    env = {**os.environ, "MANGAKAI_GATEWAY": stack.gateway_address, "XDG_CONFIG_HOME": str(home)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mangakai_cli",
            "--json",
            "--session-file",
            str(home / "sessions.json"),
            *args,
        ],
        env=env,
        cwd=home,
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"mangakai {' '.join(args)} failed:\n{result.stderr.decode()}"
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture(scope="module")
def generated(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A finished job made with `mangakai generate` (which also downloads its PDF)."""
    home = tmp_path_factory.mktemp("cli")
    story = home / "story.txt"
    story.write_text(STORY_EN, encoding="utf-8")
    result = mangakai(
        stack, home, "generate", str(story), "--panels", str(PANELS), "--out", str(home / "manga.pdf")
    )
    assert result["state"] == "COMPLETED", result
    return home, result


async def test_cbz_export_is_accepted_by_a_comic_reader(
    stack: Stack, generated: tuple[Path, dict[str, Any]]
) -> None:
    home, job = generated
    out = home / "manga.cbz"
    result = await asyncio.to_thread(
        mangakai, stack, home, "export", job["job"], "--format", "cbz", "--out", str(out)
    )
    assert result["path"] == str(out)
    data = out.read_bytes()
    assert result["bytes"] == len(data)

    archive = check_cbz(data)  # zip layout, image types, ComicInfo.xml valid against the v2.0 schema

    assert result["pages"] == len(archive.images)
    assert archive.page_types[0] == "FrontCover"
    assert set(archive.page_types[1:]) == {"Story"}
    # Three panels fill one classic page; with the cover that is two images.
    assert len(archive.images) == 2
    assert archive.text("Title") == "The Lantern Keeper"
    assert archive.text("LanguageISO") == "en"
    assert archive.text("Manga") == "YesAndRightToLeft"  # the default reading order
    cover, page = archive.images
    assert cover.size == page.size


async def test_pdf_has_a_typeset_title_page_and_print_resolution_pages(
    generated: tuple[Path, dict[str, Any]],
) -> None:
    home, job = generated
    pdf = check_pdf((home / "manga.pdf").read_bytes())
    assert len(pdf.page_sizes) == job["pages"] == 2
    assert all((round(w), round(h)) == (595, 842) for w, h in pdf.page_sizes)  # A4
    assert all(dpi >= 299 for dpi in pdf.image_dpi), pdf.image_dpi
    assert [name.split("+", 1)[-1] for name in pdf.fonts] == ["IPAexGothic"]
    assert set(pdf.fonts.values()) == {"FontFile2"}  # embedded TrueType
    assert "The Lantern Keeper" in pdf.title_text
    assert f"{PANELS} panels" in pdf.title_text
    assert pdf.metadata["Title"] == "The Lantern Keeper"
    assert pdf.metadata["Author"] == "MangakAI"
    assert pdf.metadata["Creator"] == "MangakAI"


async def test_panels_come_with_signed_webp_copies_and_thumbnails(
    stack: Stack, generated: tuple[Path, dict[str, Any]]
) -> None:
    home, job = generated
    shown = await asyncio.to_thread(mangakai, stack, home, "show", job["job"])
    images = [version["image"] for panel in shown["panels"] for version in panel["versions"]]
    assert len(images) == PANELS
    for image in images:
        assert image["webpBlobKey"] == image["blobKey"].removesuffix(".png") + ".webp"
        assert image["thumbnailBlobKey"] == image["blobKey"].removesuffix(".png") + ".thumb.webp"
        webp, headers = await asyncio.to_thread(fetch, image["webpUri"])
        assert headers["content-type"] == "image/webp"
        with Image.open(io.BytesIO(webp)) as decoded:
            assert (decoded.format, decoded.size) == ("WEBP", (image["width"], image["height"]))
        thumb, _ = await asyncio.to_thread(fetch, image["thumbnailUri"])
        with Image.open(io.BytesIO(thumb)) as decoded:
            assert decoded.format == "WEBP" and max(decoded.size) == 320
        png, _ = await asyncio.to_thread(fetch, image["uri"])
        assert len(webp) < len(png)
