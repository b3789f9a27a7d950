"""Prometheus metrics of the orchestrator."""

from __future__ import annotations

import prometheus_client

from mangakai.v1 import common_pb2

JobState = common_pb2.Job.State

JOBS_FINISHED = prometheus_client.Counter(
    "mangakai_jobs_finished_total",
    "Job runs that reached a terminal state: completed, partial (completed with failed panels), "
    "failed or cancelled.",
    ["state"],
)
PANEL_RENDER_SECONDS = prometheus_client.Histogram(
    "mangakai_panel_render_seconds",
    "Time to draw one panel, as seen by the orchestrator.",
    ["backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
PANELS_FINISHED = prometheus_client.Counter(
    "mangakai_panels_finished_total", "Panel versions that were drawn or failed.", ["outcome"]
)
ACTIVE_JOBS = prometheus_client.Gauge(
    "mangakai_orchestrator_active_jobs", "Jobs this replica is running now."
)
WORK_PENDING = prometheus_client.Gauge(
    "mangakai_work_pending", "Job runs waiting in the JetStream work consumer (not yet delivered)."
)


_FINISHED_LABELS = {
    JobState.STATE_COMPLETED: "completed",
    JobState.STATE_FAILED: "failed",
    JobState.STATE_CANCELLED: "cancelled",
}


def finished_label(state: JobState.ValueType, failed_panels: int = 0) -> str:
    """The `state` label of a run that ended in `state`: a completed run with failed panels is
    "partial", so that the task-success SLO does not count it as a success."""
    if state == JobState.STATE_COMPLETED and failed_panels > 0:
        return "partial"
    return _FINISHED_LABELS[state]
