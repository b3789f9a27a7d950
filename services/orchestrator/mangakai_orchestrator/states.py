"""The job state machine: which state a job may move to from which, in one pure table.

Every change of a job's state goes through `check` (in Python) or is guarded
in SQL by `sources` (`UPDATE jobs ... WHERE state = ANY(sources(target))`), so
the store can only make the moves listed here; anything else raises
`IllegalTransition`. A regeneration is a new run of an ended job: COMPLETED or
FAILED back to RENDERING, with the run's attempts counted from zero again.

    QUEUED ─> PLANNING ─> RENDERING ─> COMPLETED ─┐
       │          │           │   ^──────────────┘ (a regeneration: a new run)
       │          │           ├─> FAILED ─> RENDERING (a regeneration, once planned)
       └──────────┴───────────┴─> FAILED | CANCELLED
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from mangakai.v1 import common_pb2

JobState = common_pb2.Job.State
State: TypeAlias = common_pb2.Job.State.ValueType

QUEUED = JobState.STATE_QUEUED
PLANNING = JobState.STATE_PLANNING
RENDERING = JobState.STATE_RENDERING
COMPLETED = JobState.STATE_COMPLETED
FAILED = JobState.STATE_FAILED
CANCELLED = JobState.STATE_CANCELLED

ACTIVE: frozenset[State] = frozenset({QUEUED, PLANNING, RENDERING})
TERMINAL: frozenset[State] = frozenset({COMPLETED, FAILED, CANCELLED})

TRANSITIONS: Mapping[State, frozenset[State]] = {
    QUEUED: frozenset({PLANNING, FAILED, CANCELLED}),
    PLANNING: frozenset({RENDERING, FAILED, CANCELLED}),
    RENDERING: frozenset({COMPLETED, FAILED, CANCELLED}),
    COMPLETED: frozenset({RENDERING}),
    FAILED: frozenset({RENDERING}),
    CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    """A move the state machine does not allow (a bug, or a race lost to another change)."""

    def __init__(self, current: State | None, target: State) -> None:
        shown = "missing" if current is None else JobState.Name(current)
        super().__init__(f"a job cannot move from {shown} to {JobState.Name(target)}")
        self.current = current
        self.target = target


def allowed(current: State, target: State) -> bool:
    return target in TRANSITIONS[current]


def check(current: State, target: State) -> None:
    """Raises IllegalTransition unless a job in `current` may move to `target`."""
    if not allowed(current, target):
        raise IllegalTransition(current, target)


def sources(target: State) -> list[int]:
    """Every state a job may move to `target` from (for the guard of an UPDATE), in order."""
    return sorted(int(state) for state, targets in TRANSITIONS.items() if target in targets)
