"""The NATS subjects and JetStream names the orchestrator and the gateway agree on.

Everything lives under a namespace (setting NATS_NAMESPACE, default
"mangakai"), so that several deployments, or several test stacks, can share
one NATS server without seeing each other's jobs.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

_NAMESPACE = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class Subjects:
    """Subject and stream names of one namespace."""

    namespace: str = "mangakai"

    def __post_init__(self) -> None:
        if not _NAMESPACE.fullmatch(self.namespace):
            raise ValueError(f"NATS namespace {self.namespace!r} must match {_NAMESPACE.pattern}")

    @property
    def events_stream(self) -> str:
        """Limits-retention stream holding every job's events."""
        return f"{self.namespace.upper()}_JOB_EVENTS"

    @property
    def events_wildcard(self) -> str:
        return f"{self.namespace}.jobs.*.events"

    def events(self, job_id: uuid.UUID | str) -> str:
        """Subject of one job's events, in sequence order."""
        return f"{self.namespace}.jobs.{job_id}.events"

    def control(self, job_id: uuid.UUID | str) -> str:
        """Core NATS subject telling the worker that runs a job to stop it."""
        return f"{self.namespace}.jobs.{job_id}.control"

    @property
    def work_stream(self) -> str:
        """Work-queue stream with one message per job run."""
        return f"{self.namespace.upper()}_WORK"

    @property
    def work(self) -> str:
        return f"{self.namespace}.work.jobs"

    @property
    def work_consumer(self) -> str:
        """The durable pull consumer every orchestrator replica shares."""
        return "orchestrator"
