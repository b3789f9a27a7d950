"""The job view fed by events, and how the displays show it."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from mangakai.v1 import common_pb2
from mangakai_cli.progress import JobView, LiveJobDisplay, PlainJobDisplay, open_display

JobState = common_pb2.Job.State
PanelState = common_pb2.PanelVersion.State


def _events() -> list[common_pb2.JobEvent]:
    plan = common_pb2.ScenePlan(title="Moon Cat", scenes=[common_pb2.Scene(number=n) for n in (1, 2, 3)])
    failed = common_pb2.PanelVersion(version=1, state=PanelState.STATE_FAILED, failure_reason="blocked")
    kinds: list[dict[str, Any]] = [
        {"plan_ready": plan},
        {"panel_started": common_pb2.PanelStarted(panel=1, version=1)},
        {"panel_finished": common_pb2.PanelFinished(panel=1, version=common_pb2.PanelVersion(version=1))},
        {"panel_started": common_pb2.PanelStarted(panel=2, version=1)},
        {"panel_failed": common_pb2.PanelFailed(panel=2, version=failed)},
        {"panel_started": common_pb2.PanelStarted(panel=3, version=1)},
    ]
    return [
        common_pb2.JobEvent(
            job="jobs/x", sequence=i, job_state=JobState.STATE_RENDERING, progress_percent=10 * i, **kind
        )
        for i, kind in enumerate(kinds, start=1)
    ]


def test_events_move_the_panel_cells() -> None:
    view = JobView(name="jobs/x")
    notable = [view.apply(event) for event in _events()]

    assert view.title == "Moon Cat"
    assert view.panel_row().plain == "✓ ✗ ◐  1/3 panels"
    assert view.percent == 60
    assert view.panel_failures == {2: "blocked"}
    assert notable[0] == 'plan ready: "Moon Cat", 3 scenes'
    assert notable[4] == "panel 2 failed: blocked"


def test_cancellation_marks_unfinished_panels() -> None:
    view = JobView(name="jobs/x")
    for event in _events():
        view.apply(event)
    line = view.apply(
        common_pb2.JobEvent(
            sequence=7,
            job_state=JobState.STATE_CANCELLED,
            terminal=True,
            state_changed=common_pb2.JobStateChanged(state=JobState.STATE_CANCELLED, reason="by the user"),
        )
    )
    assert line == "jobs/x cancelled: by the user (1 of 3 panels drawn)"
    assert view.panel_row().plain.startswith("✓ ✗ - ")


def test_a_terminal_gets_the_live_display_and_a_pipe_plain_lines() -> None:
    view = JobView(name="jobs/x")
    tty = Console(file=io.StringIO(), force_terminal=True, width=100)
    pipe = Console(file=io.StringIO(), force_terminal=False)
    assert isinstance(open_display(tty, view), LiveJobDisplay)
    assert isinstance(open_display(pipe, view), PlainJobDisplay)


def test_the_live_display_draws_the_bar_and_the_cells() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    view = JobView(name="jobs/x")
    with LiveJobDisplay(console, view) as display:
        for event in _events():
            display.update(event)
    text = out.getvalue()
    assert "60%" in text
    assert "✓ ✗ ◐" in text
    assert "panel 2 failed: blocked" in text
    assert 'plan ready: "Moon Cat", 3 scenes' in text
