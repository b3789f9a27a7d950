"""Live job events for WatchJob, fanned out from one JetStream consumer per job.

However many clients watch a job through this gateway replica, the replica
holds one ordered JetStream consumer on the job's subject; it replays the
job's events from the start and then tails them. Each watcher reads the
shared, gap-free, in-order list from its own position, so reconnecting with
`after_sequence` loses nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from mangakai.v1 import common_pb2
from mangakai_runtime.errors import Unavailable
from mangakai_runtime.subjects import Subjects

log = logging.getLogger(__name__)

LINGER_SECONDS = 30.0

FillGap = Callable[[uuid.UUID, int], Awaitable[list[common_pb2.JobEvent]]]


class _Feed:
    """The events of one job seen so far, in sequence order, shared by its watchers."""

    def __init__(self, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        self.events: list[common_pb2.JobEvent] = []
        # Replaced on every addition: watchers wait on the current one, no lock to pass around.
        self.changed = asyncio.Event()
        self.watchers = 0
        self.subscription: object | None = None
        self.closer: asyncio.TimerHandle | None = None
        self.filling: asyncio.Task[None] | None = None

    @property
    def last(self) -> int:
        return self.events[-1].sequence if self.events else 0

    async def add(self, events: list[common_pb2.JobEvent]) -> None:
        """Appends the events that continue the sequence; drops repeats."""
        added = False
        for event in sorted(events, key=lambda e: e.sequence):
            if event.sequence == self.last + 1:
                self.events.append(event)
                added = True
        if added:
            self.changed.set()
            self.changed = asyncio.Event()

    def fill(self, fill_gap: FillGap) -> None:
        """Looks in the job store for events missed on the way, in the background and one look at
        a time: a slow store must not hold back the live events that arrive meanwhile."""
        if self.filling is not None and not self.filling.done():
            return

        async def look() -> None:
            try:
                await self.add(await fill_gap(self.job_id, self.last))
            except Exception:
                log.warning(
                    "filling the events of job %s failed; trying again later", self.job_id, exc_info=True
                )

        self.filling = asyncio.get_running_loop().create_task(look())


class JobEventHub:
    """Shares one JetStream consumer per watched job among all of its watchers."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, *, idle_seconds: float) -> None:
        self._js = js
        self._subjects = subjects
        self._idle = idle_seconds
        self._feeds: dict[uuid.UUID, _Feed] = {}
        self._opening: dict[uuid.UUID, asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._draining = False

    async def _feed(self, job_id: uuid.UUID) -> _Feed:
        lock = self._opening.setdefault(job_id, asyncio.Lock())
        async with lock:
            feed = self._feeds.get(job_id)
            if feed is not None:
                if feed.closer is not None:
                    feed.closer.cancel()
                    feed.closer = None
                return feed
            feed = _Feed(job_id)

            async def on_message(msg: Msg) -> None:
                try:
                    event = common_pb2.JobEvent.FromString(msg.data)
                except Exception:
                    log.warning("undecodable event on %s", msg.subject)
                    return
                # An event after a gap (e.g. cut by stream limits) is dropped here; the
                # watchers' idle check fetches the missing ones from the job store.
                await feed.add([event])

            feed.subscription = await self._js.subscribe(
                self._subjects.events(job_id),
                cb=on_message,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
            )
            self._feeds[job_id] = feed
            return feed

    def _release(self, feed: _Feed) -> None:
        feed.watchers -= 1
        if feed.watchers > 0:
            return
        loop = asyncio.get_running_loop()

        def close() -> None:
            if feed.watchers == 0 and self._feeds.get(feed.job_id) is feed:
                del self._feeds[feed.job_id]
                self._opening.pop(feed.job_id, None)
                if feed.filling is not None:
                    feed.filling.cancel()
                if feed.subscription is not None:
                    task = loop.create_task(feed.subscription.unsubscribe())  # type: ignore[attr-defined]
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)

        # Keep the feed a little while: a refreshing browser comes straight back.
        feed.closer = loop.call_later(LINGER_SECONDS, close)

    async def watch(
        self, job_id: uuid.UUID, after: int, fill_gap: FillGap
    ) -> AsyncIterator[common_pb2.JobEvent]:
        """Every event with a sequence above `after`, in order, then live ones; never ends by itself.

        `fill_gap(job_id, after)` reads stored events from the job store; it is used when
        nothing arrives for a while, so a slow or lost relay cannot stall a watcher.
        """
        self._refuse_if_draining()
        feed = await self._feed(job_id)
        feed.watchers += 1
        try:
            position = after
            while True:
                self._refuse_if_draining()
                if feed.last <= position:
                    changed = feed.changed
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._idle):
                            await changed.wait()
                    self._refuse_if_draining()
                    if feed.last <= position:
                        # Nothing arrived for a while: make sure nothing was missed on the way.
                        feed.fill(fill_gap)
                        continue
                # The feed starts at sequence 1, so event n sits at index n - 1.
                for event in feed.events[position:]:
                    yield event
                    position = event.sequence
        finally:
            self._release(feed)

    async def drain(self) -> None:
        """Ends every watch with UNAVAILABLE: its client re-attaches (with the last sequence it saw)
        to another replica at once, instead of holding this one open until the grace runs out."""
        self._draining = True
        for feed in self._feeds.values():
            feed.changed.set()
            feed.changed = asyncio.Event()

    def _refuse_if_draining(self) -> None:
        if self._draining:
            raise Unavailable(
                "this gateway is shutting down; watch again to continue after the last event you saw",
                reason="GATEWAY_DRAINING",
            )

    async def close(self) -> None:
        for feed in list(self._feeds.values()):
            if feed.subscription is not None:
                with contextlib.suppress(Exception):
                    await feed.subscription.unsubscribe()  # type: ignore[attr-defined]
        self._feeds.clear()
