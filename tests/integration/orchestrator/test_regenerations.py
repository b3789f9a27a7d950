"""Regenerating a panel again and again: every regeneration is a run of its own.

A job's claim attempts count per run, so ten regenerations in a row all draw
(they used to add up until the fifth failed at once, "could not be finished
after N attempts", and the job could never be exported again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from mangakai.v1 import common_pb2, jobs_pb2
from mangakai_devstack.stack import Stack, StackFactory
from tests.integration.mesh_client import Session, new_session

JobState = common_pb2.Job.State
VersionState = common_pb2.PanelVersion.State
REGENERATIONS = 10


@pytest.fixture(scope="module")
def quick_stack(make_module_stack: StackFactory) -> Stack:
    return make_module_stack(
        {
            "renderer": {"RENDERER_BACKEND": "fixed-latency", "FIXED_LATENCY_MS": "20"},
            # More regenerations than the per-session limit allows in a burst.
            "gateway": {"RATE_LIMIT_SESSION_CALLS": "0"},
        }
    )


@pytest.fixture
async def session(quick_stack: Stack) -> AsyncIterator[Session]:
    async with grpc.aio.insecure_channel(quick_stack.gateway_address) as channel:
        yield await new_session(channel)


async def test_ten_regenerations_in_a_row_all_draw_and_the_job_still_exports(session: Session) -> None:
    job = await session.create_job(panels=2)
    events = await session.events(job.name)
    assert events[-1].job_state == JobState.STATE_COMPLETED

    for round_ in range(1, REGENERATIONS + 1):
        panel = await session.jobs.RegeneratePanel(
            jobs_pb2.RegeneratePanelRequest(name=job.name, panel=1, instruction=f"take {round_}"),
            metadata=session.metadata,
            timeout=30,
        )
        assert panel.versions[-1].version == round_ + 1
        # RegeneratePanel has reopened the job (RENDERING) before answering: wait for the run's end.
        ended = await _ended(session, job.name)
        assert ended.state == JobState.STATE_COMPLETED, f"regeneration {round_}: {ended.failure_reason}"

    done = await session.get(job.name)
    first = done.panels[0]
    assert len(first.versions) == REGENERATIONS + 1
    assert all(v.state == VersionState.STATE_SUCCEEDED for v in first.versions), [
        (v.version, v.failure_reason) for v in first.versions if v.state != VersionState.STATE_SUCCEEDED
    ]
    assert first.current_version == REGENERATIONS + 1
    export = await session.jobs.ExportJob(
        jobs_pb2.ExportJobRequest(name=job.name, format=common_pb2.EXPORT_FORMAT_PDF),
        metadata=session.metadata,
        timeout=60,
    )
    assert export.page_count >= 1


async def _ended(session: Session, name: str, within: float = 60.0) -> common_pb2.Job:
    deadline = time.monotonic() + within
    while True:
        job = await session.get(name)
        if job.state not in (JobState.STATE_QUEUED, JobState.STATE_PLANNING, JobState.STATE_RENDERING):
            return job
        assert time.monotonic() < deadline, f"{name} still {JobState.Name(job.state)} after {within}s"
        await asyncio.sleep(0.05)
