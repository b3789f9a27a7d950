"""The job state machine's table: the moves a job may make, and that every other move raises."""

from __future__ import annotations

import itertools

import pytest

from mangakai_orchestrator import states
from mangakai_orchestrator.states import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PLANNING,
    QUEUED,
    RENDERING,
    IllegalTransition,
)

ALLOWED = {
    (QUEUED, PLANNING),
    (QUEUED, FAILED),
    (QUEUED, CANCELLED),
    (PLANNING, RENDERING),
    (PLANNING, FAILED),
    (PLANNING, CANCELLED),
    (RENDERING, COMPLETED),
    (RENDERING, FAILED),
    (RENDERING, CANCELLED),
    # Regenerations: a new run of an ended job.
    (COMPLETED, RENDERING),
    (FAILED, RENDERING),
}
EVERY = [QUEUED, PLANNING, RENDERING, COMPLETED, FAILED, CANCELLED]


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_an_allowed_move_passes(current: states.State, target: states.State) -> None:
    states.check(current, target)


@pytest.mark.parametrize(
    ("current", "target"), [move for move in itertools.product(EVERY, EVERY) if move not in ALLOWED]
)
def test_any_other_move_raises(current: states.State, target: states.State) -> None:
    with pytest.raises(IllegalTransition, match="cannot move from"):
        states.check(current, target)


def test_a_cancelled_job_never_moves_again() -> None:
    assert not any(states.allowed(CANCELLED, target) for target in EVERY)


def test_every_active_state_can_end_as_failed_or_cancelled() -> None:
    for state in states.ACTIVE:
        assert states.allowed(state, FAILED) and states.allowed(state, CANCELLED)


def test_sources_lists_every_state_a_target_is_reached_from() -> None:
    assert states.sources(RENDERING) == sorted([PLANNING, COMPLETED, FAILED])
    assert states.sources(QUEUED) == []
    assert set(states.ACTIVE) | set(states.TERMINAL) == set(EVERY)
