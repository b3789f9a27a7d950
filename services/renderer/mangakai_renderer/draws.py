"""The draws in flight on this replica: each one a task the renderer owns, keyed by output blob key.

A draw is paid for (a Gemini image request) the moment it starts, so it must
not die with the call that asked for it: the caller's connection dropping, an
orchestrator killed or a sibling panel's database write failing all cancel
the gRPC call, not the draw. The draw runs on, stores its image, and the
caller's retry (or the next orchestrator's) joins it while it runs or finds the
stored result. Only two things end a draw early: the job being cancelled
(CancelJob, heard on the job's control subject) and this replica's own
shutdown once its grace is over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

log = logging.getLogger(__name__)

T = TypeVar("T")


class DrawBook:
    """Draw tasks by output blob key, with the job each belongs to."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._jobs: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    async def run(self, key: str, job: str, draw: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The result of the draw for `key`: the one in flight, or `draw()` started now.

        The caller waits shielded: cancelling the caller leaves the draw running.
        """
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.create_task(draw(), name=f"draw {key}")
            self._tasks[key] = task
            self._jobs[key] = job
            task.add_done_callback(lambda done: self._forget(key, done))
        return cast(T, await asyncio.shield(task))

    def cancel_job(self, job: str) -> int:
        """Cancels every draw of `job` (it was cancelled); returns how many."""
        keys = [key for key, owner in self._jobs.items() if owner == job]
        for key in keys:
            self._tasks[key].cancel()
        return len(keys)

    async def close(self, grace: float) -> None:
        """Lets the draws in flight finish and store their images within `grace`, then cancels the rest."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            log.warning("cancelled %d draws still running at the end of the shutdown grace", len(late))
            await asyncio.wait(late)

    def _forget(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
            del self._jobs[key]
        # A draw whose callers all left fails unobserved: retrieve the error so asyncio does not log
        # "exception never retrieved" (the next caller draws again or gets the answer it deserves).
        if not task.cancelled() and task.exception() is not None:
            log.info("draw of %s ended with %r", key, task.exception())
