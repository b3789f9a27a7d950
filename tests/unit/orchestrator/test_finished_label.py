"""The state label of mangakai_jobs_finished_total: a job with failed panels is not a success."""

from __future__ import annotations

import pytest

from mangakai.v1 import common_pb2
from mangakai_orchestrator.metrics import finished_label

JobState = common_pb2.Job.State


@pytest.mark.parametrize(
    ("state", "failed_panels", "label"),
    [
        (JobState.STATE_COMPLETED, 0, "completed"),
        (JobState.STATE_COMPLETED, 1, "partial"),
        (JobState.STATE_FAILED, 0, "failed"),
        (JobState.STATE_FAILED, 3, "failed"),
        (JobState.STATE_CANCELLED, 0, "cancelled"),
    ],
)
def test_a_completed_run_with_failed_panels_is_partial(
    state: JobState.ValueType, failed_panels: int, label: str
) -> None:
    assert finished_label(state, failed_panels) == label
