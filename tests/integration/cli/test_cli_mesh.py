"""The real `mangakai` CLI, run as a process with its output piped, against the real mesh.

What a new user trips over in the first ten minutes: a cancel that prints the
state before it took effect, a cancelled job shown as 100 %, a generic panel
limit, `mangakai jobs` cut to 80 columns in a pipe, and a help that does not
say how the thing works. The renderer takes a fixed 1.2 s per panel and the
orchestrator draws one panel at a time, so a job can be cancelled half-way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mangakai_devstack.stack import Stack, StackFactory

CLI = [sys.executable, "-m", "mangakai_cli"]
# A title longer than the 80 columns a pipe gets by default, beside the job's name.
TITLE = "The Very Long Night of the Lighthouse Keeper Who Waited"
STORY = (
    f"{TITLE}\n\n"
    "Mara climbed the lighthouse stairs as the storm rolled in. The lamp had gone dark.\n\n"
    '"We have ten minutes before the ferry reaches the rocks," said Mara.\n\n'
    'Old Tomas handed her the last match. "Then light it well," he said.\n\n'
    "The flame caught. Far below, the ferry turned away from the reef.\n\n"
    "The passengers cheered, and Mara sat down on the cold stone steps.\n\n"
    "At dawn the sea was calm again."
)
DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def slow_stack(make_module_stack: StackFactory) -> Stack:
    return make_module_stack(
        overrides={
            "renderer": {"RENDERER_BACKEND": "fixed-latency", "FIXED_LATENCY_MS": "1200"},
            "orchestrator": {"RENDER_CONCURRENCY": "1"},
        }
    )


class Mangakai:
    """Runs `mangakai` as a new user would in a script: a process, stdout and stderr piped."""

    def __init__(self, stack: Stack, home: Path) -> None:
        self._env = {
            **os.environ,
            "MANGAKAI_GATEWAY": stack.gateway_address,
            "XDG_CONFIG_HOME": str(home / "config"),
        }
        # Rich sizes its output from these when set; a pipe must not depend on the caller's shell.
        for name in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE"):
            self._env.pop(name, None)
        self._cwd = home

    def __call__(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*CLI, *args],
            cwd=self._cwd,
            env=self._env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S * 2,
            check=False,
        )
        if expect is not None:
            assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def job(self, name: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self("show", name, "--json").stdout)
        return document

    def start(self, story: str, panels: int) -> str:
        (self._cwd / "story.txt").write_text(story, encoding="utf-8")
        return self("generate", "story.txt", "--panels", str(panels), "--no-wait").stdout.strip()

    def wait_until(self, name: str, drawn: int) -> dict[str, Any]:
        """Polls `show --json` until `drawn` panels are drawn (or the job ends), with a deadline."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            job = self.job(name)
            done = sum(1 for p in job.get("panels", []) if p.get("state") == "STATE_SUCCEEDED")
            if done >= drawn or job["state"] in ("STATE_COMPLETED", "STATE_FAILED", "STATE_CANCELLED"):
                return job
            assert time.monotonic() < deadline, f"{name}: {done} panels drawn after {DEADLINE_S} s"
            time.sleep(0.2)


@pytest.fixture
def mangakai(slow_stack: Stack, tmp_path: Path) -> Mangakai:
    return Mangakai(slow_stack, tmp_path)


def test_cancel_waits_for_the_outcome_and_show_tells_how_far_the_job_got(mangakai: Mangakai) -> None:
    name = mangakai.start(STORY, panels=6)
    mangakai.wait_until(name, drawn=1)

    cancelled = mangakai("cancel", name)

    # The outcome in words, not the state before the cancel took effect, nor an enum name.
    line = cancelled.stdout.strip()
    match = re.fullmatch(
        rf"{re.escape(name)} cancelled: cancelled by the user \((\d) of 6 panels drawn\)", line
    )
    assert match, line
    drawn = int(match.group(1))
    assert 1 <= drawn < 6
    assert "STATE_" not in cancelled.stdout + cancelled.stderr
    job = mangakai.job(name)
    assert job["state"] == "STATE_CANCELLED"
    assert sum(1 for p in job["panels"] if p["state"] == "STATE_SUCCEEDED") == drawn
    # Progress counts drawn panels over panels still wanted: a cancelled job is not 100 %.
    assert job.get("progressPercent", 0) == 100 * drawn // 6
    head = mangakai("show", name).stdout.splitlines()[0]
    assert head == f"{name}  cancelled  {100 * drawn // 6}%  ({drawn} of 6 panels drawn)"
    # Cancelling again says the job has already ended, in words.
    again = mangakai("cancel", name, expect=None)
    assert "STATE_" not in again.stdout + again.stderr
    assert f"{name} cancelled" in again.stdout + again.stderr
    # So does the gateway's refusal to export it.
    refused = mangakai("export", name, "--format", "pdf", expect=1)
    assert f"{name} is cancelled; only completed jobs" in refused.stderr, refused.stderr


def test_a_panel_out_of_range_names_the_jobs_panels(mangakai: Mangakai) -> None:
    name = mangakai.start(STORY, panels=2)
    job = mangakai.wait_until(name, drawn=2)
    assert job.get("progressPercent") == 100

    refused = mangakai("regenerate", name, "99", "make it rain", expect=2)

    assert "this job has panels 1 to 2" in refused.stderr, refused.stderr
    assert "24" not in refused.stderr


def test_jobs_piped_prints_whole_names_states_and_titles(mangakai: Mangakai) -> None:
    name = mangakai.start(STORY, panels=1)
    mangakai.wait_until(name, drawn=1)

    listed = mangakai("jobs").stdout.splitlines()

    assert listed[0].split("\t") == ["NAME", "STATE", "TITLE", "PANELS", "CREATED"]
    rows = {line.split("\t")[0]: line.split("\t") for line in listed[1:]}
    assert rows[name][1:4] == ["completed", TITLE, "1/1"], rows[name]
    assert len(max(listed, key=len)) > 80, "a pipe gets whole values, not 80 columns"
    # The machine format stays JSON.
    document = json.loads(mangakai("jobs", "--json").stdout)
    assert name in [j["name"] for j in document["jobs"]]


def test_help_shows_how_it_works_on_one_screen() -> None:
    shown = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60, check=True)
    text = shown.stdout
    assert "story -> plan -> panels -> pages -> export" in text
    for layout in ("classic", "four-koma", "webtoon", "single"):
        assert re.search(rf"\b{layout}\b +\w", text), f"layout {layout} is not explained"
    assert "rtl (right to left" in text and "ltr" in text
    assert "without a Gemini key" in text and "it can:" in text and "it cannot:" in text
    assert len(text.splitlines()) <= 50, "the help fits one screen"
