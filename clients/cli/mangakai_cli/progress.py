"""The live view of a running job, fed by its JobEvents.

`JobView` is what the CLI knows of a job: state, percent, title and the state
of each panel, seeded from a Job snapshot and advanced by events. Three
displays show it: a rich progress bar with a row of panel cells on a
terminal, one plain line per event when stdout is not a terminal, and one
JSON object per event for `--json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from google.protobuf import json_format
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from mangakai.v1 import common_pb2
from mangakai_cli import enums

JobState = common_pb2.Job.State
PanelState = common_pb2.PanelVersion.State

TERMINAL_STATES = frozenset({JobState.STATE_COMPLETED, JobState.STATE_FAILED, JobState.STATE_CANCELLED})

PANEL_CELLS: dict[PanelState.ValueType, tuple[str, str]] = {
    PanelState.STATE_UNSPECIFIED: ("·", "dim"),
    PanelState.STATE_PENDING: ("·", "dim"),
    PanelState.STATE_RENDERING: ("◐", "yellow"),
    PanelState.STATE_SUCCEEDED: ("✓", "green"),
    PanelState.STATE_FAILED: ("✗", "red"),
    PanelState.STATE_CANCELLED: ("-", "dim"),
}


def job_state_label(state: JobState.ValueType) -> str:
    """A job state as a word for people: "cancelled", not "STATE_CANCELLED"."""
    return enums.spelling(JobState.DESCRIPTOR, state)


def panel_state_label(state: PanelState.ValueType) -> str:
    """A panel version's state as a word for people: "succeeded", "failed"."""
    return enums.spelling(PanelState.DESCRIPTOR, state)


def drawn_panels(states: Iterable[PanelState.ValueType]) -> str:
    """How far a job got, "4 of 24 panels drawn", from each panel's state."""
    listed = list(states)
    drawn = sum(1 for s in listed if s == PanelState.STATE_SUCCEEDED)
    return f"{drawn} of {len(listed)} panels drawn"


@dataclass
class JobView:
    """A job's progress as the CLI knows it."""

    name: str
    state: JobState.ValueType = JobState.STATE_UNSPECIFIED
    percent: int = 0
    title: str = ""
    panels: dict[int, PanelState.ValueType] = field(default_factory=dict)
    panel_failures: dict[int, str] = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def from_job(cls, job: common_pb2.Job) -> JobView:
        view = cls(name=job.name, state=job.state, percent=job.progress_percent, reason=job.failure_reason)
        view.title = job.title or job.plan.title
        if job.panels:
            for panel in job.panels:
                view.panels[panel.number] = panel.state
                if panel.state == PanelState.STATE_FAILED and panel.versions:
                    view.panel_failures[panel.number] = panel.versions[-1].failure_reason
        else:
            view.panels = dict.fromkeys(range(1, job.panel_count + 1), PanelState.STATE_PENDING)
        return view

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def apply(self, event: common_pb2.JobEvent) -> str | None:
        """Takes an event into the view; returns a line worth printing for a notable event."""
        self.state = event.job_state
        self.percent = event.progress_percent
        kind = event.WhichOneof("kind")
        notable: str | None = None
        if kind == "plan_ready":
            plan = event.plan_ready
            self.title = plan.title
            numbers = [scene.number or i for i, scene in enumerate(plan.scenes, start=1)]
            self.panels = {n: self.panels.get(n, PanelState.STATE_PENDING) for n in numbers}
            notable = f'plan ready: "{plan.title}", {len(plan.scenes)} scenes'
        elif kind == "panel_started":
            self.panels[event.panel_started.panel] = PanelState.STATE_RENDERING
            self.panel_failures.pop(event.panel_started.panel, None)
        elif kind == "panel_finished":
            self.panels[event.panel_finished.panel] = PanelState.STATE_SUCCEEDED
            self.panel_failures.pop(event.panel_finished.panel, None)
        elif kind == "panel_failed":
            number, reason = event.panel_failed.panel, event.panel_failed.version.failure_reason
            self.panels[number] = PanelState.STATE_FAILED
            self.panel_failures[number] = reason
            notable = f"panel {number} failed: {reason or 'no reason given'}"
        elif kind == "state_changed":
            self.reason = event.state_changed.reason
        if event.terminal or self.terminal:
            if self.state == JobState.STATE_CANCELLED:
                for number, state in self.panels.items():
                    if state in (PanelState.STATE_PENDING, PanelState.STATE_RENDERING):
                        self.panels[number] = PanelState.STATE_CANCELLED
            notable = self.outcome()
        return notable

    def outcome(self) -> str:
        """One line on how the job ended (or where it stands)."""
        line = f"{self.name} {job_state_label(self.state)}"
        if self.reason and self.state != JobState.STATE_COMPLETED:
            line += f": {self.reason}"
        if self.state in (JobState.STATE_CANCELLED, JobState.STATE_FAILED) and self.panels:
            line += f" ({drawn_panels(self.panels.values())})"
        if self.state == JobState.STATE_COMPLETED and self.panel_failures:
            line += f" with {len(self.panel_failures)} failed panel(s)"
        return line

    def panel_row(self) -> Text:
        row = Text()
        for number in sorted(self.panels):
            symbol, style = PANEL_CELLS.get(self.panels[number], ("?", ""))
            row.append(symbol, style=style)
            row.append(" ")
        done = sum(1 for s in self.panels.values() if s == PanelState.STATE_SUCCEEDED)
        row.append(
            f" {done}/{len(self.panels)} panels" if self.panels else "waiting for the plan", style="dim"
        )
        return row

    def describe(self, event: common_pb2.JobEvent) -> str:
        """A plain one-line description of an event, for logs and pipes."""
        kind = event.WhichOneof("kind")
        if kind == "plan_ready":
            what = f'plan ready: "{event.plan_ready.title}", {len(event.plan_ready.scenes)} scenes'
        elif kind == "panel_started":
            what = f"panel {event.panel_started.panel} rendering (version {event.panel_started.version})"
        elif kind == "panel_finished":
            what = f"panel {event.panel_finished.panel} done (version {event.panel_finished.version.version})"
        elif kind == "panel_failed":
            reason = event.panel_failed.version.failure_reason or "no reason given"
            what = f"panel {event.panel_failed.panel} failed: {reason}"
        elif kind == "state_changed":
            what = f"state {job_state_label(event.state_changed.state)}"
            if event.state_changed.reason:
                what += f": {event.state_changed.reason}"
        else:
            what = f"state {job_state_label(event.job_state)}"
        return f"[{event.progress_percent:3d}%] {what}  {self.panel_row().plain}"


class JobDisplay(Protocol):
    def __enter__(self) -> JobDisplay: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def update(self, event: common_pb2.JobEvent) -> None: ...


class _PanelRow:
    """Renders the view's panel cells afresh on every refresh of the live display."""

    def __init__(self, view: JobView) -> None:
        self._view = view

    def __rich__(self) -> Text:
        return Text("panels  ", style="bold") + self._view.panel_row()


class LiveJobDisplay:
    """A progress bar and a row of panel cells, redrawn in place; notable events printed above."""

    def __init__(self, console: Console, view: JobView) -> None:
        self._console = console
        self._view = view
        self._progress = Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._task: TaskID = self._progress.add_task(
            job_state_label(view.state), total=100, completed=view.percent
        )
        self._live = Live(Group(self._progress, _PanelRow(view)), console=console, refresh_per_second=8)

    def __enter__(self) -> LiveJobDisplay:
        if self._view.title:
            self._console.print(Text(f'"{self._view.title}"', style="bold"))
        self._live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.refresh()
        self._live.stop()

    def update(self, event: common_pb2.JobEvent) -> None:
        notable = self._view.apply(event)
        self._progress.update(
            self._task, completed=self._view.percent, description=job_state_label(self._view.state)
        )
        if notable:
            style = "red" if event.WhichOneof("kind") == "panel_failed" or self._failed_end() else ""
            self._live.console.print(Text(notable, style=style))

    def _failed_end(self) -> bool:
        return self._view.state in (JobState.STATE_FAILED, JobState.STATE_CANCELLED)


class PlainJobDisplay:
    """One line per event, for pipes and logs."""

    def __init__(self, console: Console, view: JobView) -> None:
        self._console = console
        self._view = view

    def __enter__(self) -> PlainJobDisplay:
        if self._view.title:
            self._print(f'"{self._view.title}"')
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def update(self, event: common_pb2.JobEvent) -> None:
        notable = self._view.apply(event)
        self._print(self._view.describe(event))
        if event.terminal and notable:
            self._print(notable)

    def _print(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)


class JsonEventLog:
    """One JSON object per event (protobuf JSON mapping), for `--json`."""

    def __init__(self, console: Console, view: JobView) -> None:
        self._console = console
        self._view = view

    def __enter__(self) -> JsonEventLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def update(self, event: common_pb2.JobEvent) -> None:
        self._view.apply(event)
        line = json.dumps(json_format.MessageToDict(event), ensure_ascii=False)
        self._console.file.write(line + "\n")
        self._console.file.flush()


def open_display(console: Console, view: JobView, *, as_json: bool = False) -> JobDisplay:
    """The display that suits the output: JSON lines, a live view on a terminal, or plain lines."""
    if as_json:
        return JsonEventLog(console, view)
    if console.is_terminal:
        return LiveJobDisplay(console, view)
    return PlainJobDisplay(console, view)
