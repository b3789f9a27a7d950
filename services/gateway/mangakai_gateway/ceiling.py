"""The global ceiling of job runs in flight, shared by every gateway replica.

Job runs in flight are the messages of the JetStream work queue: the
orchestrator queues one per job run (CreateJob, RegeneratePanel) and acks it
only when the run has ended, so the stream's message count is the number of
runs queued or running, whichever gateway accepted them. Reading it costs one
NATS request per call that would add a run. Replicas that check at the same
moment may each let one run through, so the ceiling can be passed by at most
the number of replicas; a fixed store of its own would add a write per call
for no better bound on the spend that matters (the renderers' Gemini quota
has its own budget).
"""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext

from mangakai_runtime.errors import ResourceExhausted
from mangakai_runtime.subjects import Subjects

# What a refused caller is told to wait: runs take tens of seconds, so sooner rarely helps.
RETRY_SECONDS = 15.0


class JobsInFlightCeiling:
    """Refuses new job runs while `ceiling` runs are queued or running; 0 means no ceiling."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, ceiling: int) -> None:
        self._js = js
        self._stream = subjects.work_stream
        self._ceiling = ceiling

    async def check(self) -> None:
        """RESOURCE_EXHAUSTED with RetryInfo when the ceiling is reached."""
        if self._ceiling <= 0:
            return
        try:
            info = await self._js.stream_info(self._stream)
        except nats.js.errors.NotFoundError:
            return  # no orchestrator has made the queue yet: nothing is in flight
        in_flight = info.state.messages
        if in_flight >= self._ceiling:
            raise ResourceExhausted(
                f"the service is at its ceiling of {self._ceiling} jobs in flight; "
                f"retry in {RETRY_SECONDS:g} s",
                retry_after=RETRY_SECONDS,
                reason="JOBS_IN_FLIGHT_CEILING",
            )
