"""What each `mangakai` command does, given parsed arguments and an open GatewayClient.

Each command prints for a person, or one JSON document with `--json`, and
returns the process exit code: 0 when everything asked for happened, 1 when
the job failed, was cancelled or has panels that could not be drawn.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from rich.console import Console
from rich.table import Table

from mangakai.v1 import common_pb2, jobs_pb2
from mangakai_cli import enums
from mangakai_cli.client import GatewayClient, job_id
from mangakai_cli.download import download
from mangakai_cli.progress import (
    PANEL_CELLS,
    TERMINAL_STATES,
    JobState,
    JobView,
    PanelState,
    drawn_panels,
    job_state_label,
    open_display,
    panel_state_label,
)

EXIT_OK = 0
EXIT_FAILED = 1
DEFAULT_OUT_DIR = Path("out")

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_EXPORT_EXTENSIONS = {common_pb2.EXPORT_FORMAT_PDF: ".pdf", common_pb2.EXPORT_FORMAT_CBZ: ".cbz"}


@dataclass
class Terminal:
    """Where a command's output goes."""

    out: Console
    err: Console
    as_json: bool = False

    def line(self, text: str = "") -> None:
        self.out.print(text, markup=False, highlight=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        self.err.print(f"mangakai: {text}", markup=False, highlight=False, soft_wrap=True)

    def record(self, values: Sequence[str]) -> None:
        """One tab-separated line, written as is (the console would expand the tabs)."""
        self.out.file.write("\t".join(v.replace("\t", " ").replace("\n", " ") for v in values) + "\n")
        self.out.file.flush()

    def emit_json(self, document: Any) -> None:
        self.out.file.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        self.out.file.flush()


def _to_dict(message: Any) -> dict[str, Any]:
    document: dict[str, Any] = json_format.MessageToDict(message)
    return document


# -- generate ------------------------------------------------------------------------------------


async def generate(
    term: Terminal,
    client: GatewayClient,
    request: jobs_pb2.CreateJobRequest,
    *,
    wait: bool,
    out: Path | None,
    images_dir: Path | None,
) -> int:
    """Creates a job and, unless told not to wait, follows it and fetches the PDF and panel images."""
    request.request_id = str(uuid.uuid4())
    job = await client.create_job(request)
    if not wait:
        if term.as_json:
            term.emit_json(_to_dict(job))
        else:
            term.line(job.name)
        return EXIT_OK
    if not term.as_json:
        term.line(job.name)
        if term.out.is_terminal:
            # The live view and the downloads can take minutes; say how to come back after Ctrl-C.
            term.out.print(
                f"(Ctrl-C stops watching, not the job: mangakai watch {job_id(job.name)})", style="dim"
            )
    await follow(term, client, job, after_sequence=0, quiet=term.as_json)
    job = await client.get_job(job.name)
    # The JSON keeps the machine spelling it always had ("COMPLETED"); words are for people.
    result: dict[str, Any] = {"job": job.name, "state": JobState.Name(job.state).removeprefix("STATE_")}
    if job.state != JobState.STATE_COMPLETED:
        if term.as_json:
            result["failure_reason"] = job.failure_reason
            term.emit_json(result)
        else:
            term.line(_ended_line(job))
        return EXIT_FAILED

    pdf_path = out or DEFAULT_OUT_DIR / f"{job_id(job.name)}.pdf"
    export = await client.export_job(job.name, common_pb2.EXPORT_FORMAT_PDF)
    await asyncio.to_thread(download, export.uri, pdf_path)
    folder = images_dir or DEFAULT_OUT_DIR / job_id(job.name)
    images = await _download_panels(job, folder)
    missing = _undrawn_panels(job)

    result.update(
        pdf=str(pdf_path),
        pages=export.page_count,
        images=[str(p) for p in images],
        failed_panels=[{"panel": n, "reason": r} for n, r in missing.items()],
    )
    if term.as_json:
        term.emit_json(result)
    else:
        term.line(f"PDF: {pdf_path} ({export.page_count} pages)")
        term.line(f"panels: {folder}/ ({len(images)} images)")
        _report_missing(term, missing)
    return EXIT_FAILED if missing else EXIT_OK


async def _download_panels(job: common_pb2.Job, folder: Path) -> list[Path]:
    paths: list[Path] = []
    for panel in job.panels:
        version = _current_version(panel)
        if version is None or not version.image.uri:
            continue
        suffix = _EXTENSIONS.get(version.image.content_type, ".png")
        path = folder / f"panel-{panel.number:02d}{suffix}"
        await asyncio.to_thread(download, version.image.uri, path)
        paths.append(path)
    return paths


def _current_version(panel: common_pb2.Panel) -> common_pb2.PanelVersion | None:
    if panel.current_version <= 0:
        return None
    for version in panel.versions:
        if version.version == panel.current_version:
            return version
    if panel.current_version <= len(panel.versions):
        return panel.versions[panel.current_version - 1]
    return None


def _undrawn_panels(job: common_pb2.Job) -> dict[int, str]:
    """Panels with no drawn version, with the reason their latest attempt gave."""
    missing: dict[int, str] = {}
    for panel in job.panels:
        if panel.current_version > 0:
            continue
        reason = panel.versions[-1].failure_reason if panel.versions else ""
        missing[panel.number] = reason or panel_state_label(panel.state).lower()
    return missing


def _report_missing(term: Terminal, missing: dict[int, str]) -> None:
    if not missing:
        return
    numbers = ", ".join(str(n) for n in missing)
    term.warn(f"{len(missing)} panel(s) could not be drawn: {numbers}")
    for number, reason in missing.items():
        term.warn(f"  panel {number}: {reason}")


def _ended_line(job: common_pb2.Job) -> str:
    line = f"{job.name} {job_state_label(job.state)}"
    if job.failure_reason:
        line += f": {job.failure_reason}"
    if job.state in (JobState.STATE_CANCELLED, JobState.STATE_FAILED) and job.panels:
        line += f" ({drawn_panels(p.state for p in job.panels)})"
    return line


# -- watch ---------------------------------------------------------------------------------------


async def follow(
    term: Terminal, client: GatewayClient, seed: common_pb2.Job, *, after_sequence: int, quiet: bool = False
) -> JobView:
    """Shows the job's events after `after_sequence` until the run ends; returns what was seen."""
    view = JobView.from_job(seed)
    if view.terminal and seed.last_event_sequence <= after_sequence:
        if not quiet:
            term.line(view.outcome())
        return view
    if quiet:
        async for event in client.watch(seed.name, after_sequence):
            view.apply(event)
        return view
    with open_display(term.out, view, as_json=term.as_json) as display:
        async for event in client.watch(seed.name, after_sequence):
            display.update(event)
    return view


async def watch(term: Terminal, client: GatewayClient, name: str) -> int:
    """Re-attaches to a job: its current state, then live events until it ends."""
    job = await client.get_job(name)
    view = await follow(term, client, job, after_sequence=job.last_event_sequence)
    if view.state != JobState.STATE_COMPLETED:
        return EXIT_FAILED
    if view.panel_failures and not term.as_json:
        _report_missing(term, view.panel_failures)
    return EXIT_FAILED if view.panel_failures else EXIT_OK


# -- jobs, show, cancel --------------------------------------------------------------------------


async def list_jobs(
    term: Terminal, client: GatewayClient, *, page_size: int, page_token: str, all_pages: bool
) -> int:
    jobs: list[common_pb2.Job] = []
    token = page_token
    while True:
        response = await client.list_jobs(page_size, token)
        jobs.extend(response.jobs)
        token = response.next_page_token
        if not all_pages or not token:
            break
    if term.as_json:
        term.emit_json({"jobs": [_to_dict(j) for j in jobs], "next_page_token": token})
        return EXIT_OK
    if not jobs:
        term.line("no jobs yet; start one with: mangakai generate STORY.txt")
        return EXIT_OK
    header = ("NAME", "STATE", "TITLE", "PANELS", "CREATED")
    rows = [
        (job.name, job_state_label(job.state), job.title, _panel_tally(job), _when(job.create_time))
        for job in jobs
    ]
    if term.out.is_terminal:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in header:
            if column == "TITLE":
                table.add_column(column, no_wrap=True, overflow="ellipsis")
            else:
                table.add_column(column, no_wrap=True, justify="right" if column == "PANELS" else "left")
        for row in rows:
            table.add_row(*row)
        term.out.print(table)
    else:
        # Piped: whole values, one job a line, tab-separated (a table would be cut to 80 columns).
        for row in (header, *rows):
            term.record(row)
    if token:
        term.line(f"more: mangakai jobs --page-token {token}")
    return EXIT_OK


async def show(term: Terminal, client: GatewayClient, name: str) -> int:
    job = await client.get_job(name)
    if term.as_json:
        term.emit_json(_to_dict(job))
        return EXIT_OK
    for line in describe_job(job):
        term.line(line)
    return EXIT_OK


def _panel_tally(job: common_pb2.Job) -> str:
    done = sum(1 for p in job.panels if p.current_version > 0 or p.state == PanelState.STATE_SUCCEEDED)
    return f"{done}/{max(job.panel_count, len(job.panels))}"


def describe_job(job: common_pb2.Job) -> list[str]:
    """A job's details as text lines: state, plan, scenes with dialogue, panels with versions."""
    head = f"{job.name}  {job_state_label(job.state)}  {job.progress_percent}%"
    if job.panels:
        head += f"  ({drawn_panels(p.state for p in job.panels)})"
    lines = [head]
    if job.failure_reason:
        lines.append(f"failure: {job.failure_reason}")
    if job.state == JobState.STATE_COMPLETED and job.failed_panel_count:
        lines.append(f"partial: {job.failed_panel_count} of {job.panel_count} panels failed")
    title = job.title or job.plan.title
    if title:
        language = f" ({job.plan.language})" if job.plan.language else ""
        lines.append(f'title: "{title}"{language}')
    times = [
        f"{label} {_when(ts)}"
        for label, ts in (("created", job.create_time), ("updated", job.update_time), ("ended", job.end_time))
        if _when(ts)
    ]
    if times:
        lines.append(", ".join(times))
    layout = [
        f"{label} {enums.spelling(descriptor, value)}"
        for label, descriptor, value in (
            ("layout", common_pb2.PageLayout.DESCRIPTOR, job.layout),
            ("reading order", common_pb2.ReadingOrder.DESCRIPTOR, job.reading_order),
        )
        if value
    ]
    if layout:
        lines.append(", ".join(layout))
    style = _style_summary(job.style)
    if style:
        lines.append(f"style: {style}")
    if job.plan.characters:
        lines.append("characters:")
        lines.extend(f"  {c.name}: {c.description}" for c in job.plan.characters)

    panels = {p.number: p for p in job.panels}
    scenes = list(job.plan.scenes) or [p.scene for p in job.panels if p.HasField("scene")]
    if scenes:
        lines.append("scenes:")
    for scene in scenes:
        shot = enums.spelling(common_pb2.ShotType.DESCRIPTOR, scene.shot)
        lines.append(f"  {scene.number}. [{shot}] {scene.setting}: {scene.action}".rstrip(": "))
        if scene.characters:
            lines.append(f"     characters: {', '.join(scene.characters)}")
        if scene.narration:
            lines.append(f"     narration: {scene.narration}")
        for dialogue in scene.dialogue:
            speaker = dialogue.speaker or "?"
            lines.append(f'     {speaker}: "{dialogue.text}"')
        panel = panels.pop(scene.number, None)
        if panel is not None:
            lines.extend(_panel_lines(panel))
    for panel in panels.values():  # panels without a scene in the plan, if any
        lines.extend(_panel_lines(panel))
    return lines


def _panel_lines(panel: common_pb2.Panel) -> list[str]:
    symbol, _ = PANEL_CELLS.get(panel.state, ("?", ""))
    current = f", current version {panel.current_version}" if panel.current_version else ""
    lines = [f"     panel {panel.number} {symbol} {panel_state_label(panel.state)}{current}"]
    for version in panel.versions:
        parts = [f"v{version.version}", panel_state_label(version.state)]
        if version.instruction:
            parts.append(f'"{version.instruction}"')
        if version.HasField("image") and version.image.width:
            parts.append(f"{version.image.width}x{version.image.height} {version.image.content_type}")
        if version.failure_reason:
            parts.append(f"({version.failure_reason})")
        lines.append("       " + " ".join(parts))
    return lines


def _style_summary(style: common_pb2.StylePreferences) -> str:
    parts = []
    for field_name, descriptor in (
        ("art_style", common_pb2.ArtStyle.DESCRIPTOR),
        ("mood", common_pb2.Mood.DESCRIPTOR),
        ("color_palette", common_pb2.ColorPalette.DESCRIPTOR),
        ("character_style", common_pb2.CharacterStyle.DESCRIPTOR),
        ("line_style", common_pb2.LineStyle.DESCRIPTOR),
        ("composition", common_pb2.Composition.DESCRIPTOR),
    ):
        value = getattr(style, field_name)
        if value:
            parts.append(f"{field_name.replace('_', ' ')} {enums.spelling(descriptor, value)}")
    if style.notes:
        parts.append(f'notes "{style.notes}"')
    return ", ".join(parts)


def _when(timestamp: timestamp_pb2.Timestamp) -> str:
    if not timestamp.seconds and not timestamp.nanos:
        return ""
    return timestamp.ToDatetime(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M")


async def cancel(term: Terminal, client: GatewayClient, name: str) -> int:
    """Cancels a job and waits for the outcome: the panel being drawn finishes or stops first."""
    job = await client.cancel_job(name)
    if job.state not in TERMINAL_STATES:
        async for _ in client.watch(name, job.last_event_sequence):
            pass  # the stream ends with the terminal event
        job = await client.get_job(name)
    if term.as_json:
        term.emit_json(_to_dict(job))
    elif job.state == JobState.STATE_CANCELLED:
        term.line(_ended_line(job))
    else:
        term.warn(f"{_ended_line(job)}: it ended before the cancel took effect")
    return EXIT_OK if job.state == JobState.STATE_CANCELLED else EXIT_FAILED


# -- regenerate, export --------------------------------------------------------------------------


async def regenerate(
    term: Terminal,
    client: GatewayClient,
    name: str,
    *,
    panel: int,
    instruction: str,
    reference: bytes,
    wait: bool,
) -> int:
    """Asks for a new version of one panel and, with `wait`, follows the job until it is drawn."""
    before = await client.get_job(name)
    result = await client.regenerate_panel(name, panel, instruction, reference)
    new_version = result.versions[-1].version if result.versions else 0
    if not wait:
        if term.as_json:
            term.emit_json(_to_dict(result))
        else:
            term.line(f"{name} panel {panel}: version {new_version} {panel_state_label(result.state)}")
        return EXIT_OK
    if not term.as_json:
        term.line(f"{name} panel {panel}: drawing version {new_version}")
    # Only the events of this new run: the job's earlier run ended with its own terminal event.
    seed = await client.get_job(name)
    await follow(term, client, seed, after_sequence=before.last_event_sequence, quiet=term.as_json)
    job = await client.get_job(name)
    drawn = next((p for p in job.panels if p.number == panel), None)
    latest = drawn.versions[-1] if drawn is not None and drawn.versions else None
    ok = latest is not None and latest.state == PanelState.STATE_SUCCEEDED
    if term.as_json:
        term.emit_json(_to_dict(drawn) if drawn is not None else {})
    elif latest is None:
        term.warn(f"panel {panel} has no versions")
    elif ok:
        term.line(f"panel {panel} version {latest.version} drawn: {latest.image.uri}")
    else:
        reason = latest.failure_reason or panel_state_label(latest.state).lower()
        term.warn(f"panel {panel} was not redrawn: {reason}")
    return EXIT_OK if ok else EXIT_FAILED


async def export(
    term: Terminal,
    client: GatewayClient,
    name: str,
    *,
    export_format: common_pb2.ExportFormat.ValueType,
    out: Path | None,
) -> int:
    result = await client.export_job(name, export_format)
    path = out or DEFAULT_OUT_DIR / f"{job_id(name)}{_EXPORT_EXTENSIONS.get(export_format, '')}"
    size = await asyncio.to_thread(download, result.uri, path)
    if term.as_json:
        term.emit_json({"job": name, "path": str(path), "bytes": size, "pages": result.page_count})
    else:
        term.line(f"{path} ({result.page_count} pages, {size} bytes)")
    return EXIT_OK
