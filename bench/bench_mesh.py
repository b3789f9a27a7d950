"""Benchmarks of the whole mesh on this machine: parallel rendering, orchestration
overhead, throughput, WatchJob fan-out latency and idle memory.

Run from the repository root: `.venv/bin/python bench/bench_mesh.py` (or `make bench`).
It starts a real PostgreSQL, nats-server and the four services (devstack) with
the renderer's fixed-latency backend, whose panels take exactly L seconds, and
prints one line per target with the measured number and the target. Numbers on
these shared machines are noisy: compare ratios within one run.

Targets (2 cores):
- a 10-panel job finishes within 1.15x of plan + character sheet + ceil(10 / RENDER_CONCURRENCY) x L;
- orchestration overhead per 5-panel job under 150 ms at L = 0;
- at least 150 five-panel jobs per minute at L = 0, none lost;
- a WatchJob event reaches 500 concurrent watchers within 100 ms (p99);
- each idle service under 90 MB RSS.

The scaling part runs the throughput case with one and with two replicas of
every service (reached through the stack's DNS names with round-robin) and
prints both side by side. On two cores this shows what replication costs
(twice the processes on the same cores, calls spread over more connections),
not a speed-up: replicas pay off when they get cores of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from mangakai.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from mangakai_devstack.nats import NatsServer
from mangakai_devstack.postgres import PostgresServer
from mangakai_devstack.stack import StackFactory

STORY = (Path(__file__).resolve().parents[1] / "samples" / "en" / "the_lighthouse_keeper.txt").read_text()
TERMINAL = (
    common_pb2.Job.State.STATE_COMPLETED,
    common_pb2.Job.State.STATE_FAILED,
    common_pb2.Job.State.STATE_CANCELLED,
)


@contextlib.contextmanager
def stacks() -> Iterator[StackFactory]:
    """One non-durable PostgreSQL and nats-server in a temporary directory, and a factory of
    service stacks on them; everything is stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix="mangakai-bench-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # the postgres user must enter it
        postgres = PostgresServer(base / "pg", durable=False)
        nats = NatsServer(base / "nats")
        postgres.start()
        try:
            nats.start()
            factory = StackFactory(postgres, nats, base / "stacks")
            try:
                yield factory
            finally:
                factory.close()
                nats.stop()
        finally:
            postgres.stop()


def report(name: str, value: str, target: str, ok: bool) -> None:
    print(f"{'PASS' if ok else 'MISS'}  {name:<46} {value:<28} target {target}", flush=True)


class Client:
    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self.jobs = jobs_pb2_grpc.JobServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    @classmethod
    async def open(cls, channel: grpc.aio.Channel) -> Client:
        session = await sessions_pb2_grpc.SessionServiceStub(channel).CreateSession(
            sessions_pb2.CreateSessionRequest(client="bench")
        )
        return cls(channel, session.token)

    async def run_job(self, panels: int) -> tuple[float, common_pb2.JobEvent]:
        """Creates a job and watches it to its end; returns (seconds, last event)."""
        started = time.perf_counter()
        job = await self.jobs.CreateJob(
            jobs_pb2.CreateJobRequest(story=STORY, panel_count=panels), metadata=self.metadata
        )
        last = None
        async for event in self.jobs.WatchJob(
            jobs_pb2.WatchJobRequest(name=job.name), metadata=self.metadata
        ):
            last = event
        assert last is not None
        return time.perf_counter() - started, last


async def parallel_rendering(factory: StackFactory, latency: float, concurrency: int) -> None:
    stack = factory(
        overrides={
            "renderer": {"RENDERER_BACKEND": "fixed-latency", "FIXED_LATENCY_MS": str(int(latency * 1000))},
            "orchestrator": {"RENDER_CONCURRENCY": str(concurrency)},
        }
    )
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        client = await Client.open(channel)
        await client.run_job(2)  # warm up connections and caches
        seconds, last = await client.run_job(10)
        assert last.job_state == common_pb2.Job.State.STATE_COMPLETED
        # The plan of the fixed-latency backend is the local planner: measure it alone.
        plan_started = time.perf_counter()
        from mangakai_renderer.story_planner import plan_story

        plan_story(STORY, 10, common_pb2.StylePreferences())
        plan = time.perf_counter() - plan_started
    # The character sheet is drawn once, before the panels, and takes L as well.
    ideal = plan + latency + math.ceil(10 / concurrency) * latency
    ratio = seconds / ideal
    report(
        f"10-panel job, L={latency:.1f}s, concurrency {concurrency}",
        f"{seconds:.2f}s = {ratio:.3f}x ideal",
        f"<= 1.15x of {ideal:.2f}s",
        ratio <= 1.15,
    )
    stack.stop()


# Panels that take no time, so that only the mesh's own work is measured.
ZERO_LATENCY = {
    "renderer": {"RENDERER_BACKEND": "fixed-latency", "FIXED_LATENCY_MS": "0"},
    "orchestrator": {"RENDER_CONCURRENCY": "5"},
    # Hundreds of jobs from one session on one address: no rate limits.
    "gateway": {"RATE_LIMIT_SESSION_CALLS": "0", "RATE_LIMIT_ADDRESS_CALLS": "0"},
}


async def overhead_and_throughput(factory: StackFactory, jobs: int) -> None:
    stack = factory(overrides=ZERO_LATENCY)
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        client = await Client.open(channel)
        for _ in range(3):
            await client.run_job(5)
        durations = [(await client.run_job(5))[0] for _ in range(20)]
        overhead = statistics.median(durations) * 1000
        report(
            "orchestration overhead, 5-panel job, L=0",
            f"median {overhead:.0f} ms (p90 {sorted(durations)[17] * 1000:.0f})",
            "< 150 ms",
            overhead < 150,
        )

        completed, per_minute = await throughput(client, jobs)
        report(
            f"throughput, {jobs} five-panel jobs at once, L=0",
            f"{per_minute:.0f} jobs/min, {completed}/{jobs} done",
            ">= 150 jobs/min, none lost",
            per_minute >= 150 and completed == jobs,
        )
    stack.stop()


async def throughput(client: Client, jobs: int) -> tuple[int, float]:
    """Runs `jobs` five-panel jobs at once; returns (how many completed, completed jobs per minute)."""
    started = time.perf_counter()
    results = await asyncio.gather(*(client.run_job(5) for _ in range(jobs)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    completed = sum(
        1
        for r in results
        if not isinstance(r, BaseException) and r[1].job_state == common_pb2.Job.State.STATE_COMPLETED
    )
    return completed, completed / elapsed * 60


async def scaling(factory: StackFactory, jobs: int) -> None:
    """Throughput at L = 0 with 1 and with 2 replicas of every service, side by side."""
    rates: dict[int, float] = {}
    for replicas in (1, 2):
        stack = factory(overrides=ZERO_LATENCY, replicas=replicas)
        round_robin = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
        async with grpc.aio.insecure_channel(
            stack.target("gateway"), options=[("grpc.service_config", round_robin)]
        ) as channel:
            client = await Client.open(channel)
            for _ in range(3):
                await client.run_job(5)
            completed, rates[replicas] = await throughput(client, jobs)
        report(
            f"throughput, {replicas} replica(s) of each service, L=0",
            f"{rates[replicas]:.0f} jobs/min, {completed}/{jobs} done",
            ">= 100 jobs/min, none lost",
            rates[replicas] >= 100 and completed == jobs,
        )
        stack.stop()
    print(
        f"      scaling: 2 replicas / 1 replica = {rates[2] / rates[1]:.2f}x "
        "(2 cores: this is the cost of replication, not a speed-up)",
        flush=True,
    )


async def watch_fan_out(factory: StackFactory, watchers: int) -> None:
    stack = factory(
        overrides={
            "renderer": {"RENDERER_BACKEND": "fixed-latency", "FIXED_LATENCY_MS": "1500"},
            "orchestrator": {"RENDER_CONCURRENCY": "1"},
        }
    )
    delays: list[float] = []
    by_event: dict[int, list[float]] = {}
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        client = await Client.open(channel)
        job = await client.jobs.CreateJob(
            jobs_pb2.CreateJobRequest(story=STORY, panel_count=4), metadata=client.metadata
        )
        ready = asyncio.Event()
        connected = 0
        # Several HTTP/2 connections, as several browsers would use.
        channels = [grpc.aio.insecure_channel(stack.gateway_address) for _ in range(10)]

        async def watch(index: int) -> None:
            nonlocal connected
            stub = jobs_pb2_grpc.JobServiceStub(channels[index % len(channels)])
            first = True
            async for event in stub.WatchJob(
                jobs_pb2.WatchJobRequest(name=job.name), metadata=client.metadata
            ):
                if first:
                    first = False
                    connected += 1
                    if connected == watchers:
                        ready.set()
                if ready.is_set() and event.HasField("panel_finished"):
                    delay = time.time() - event.create_time.ToDatetime().timestamp()
                    delays.append(delay)
                    by_event.setdefault(event.sequence, []).append(delay)

        tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
        await asyncio.gather(*tasks)
        for ch in channels:
            await ch.close()
    for sequence, values in sorted(by_event.items()):
        values.sort()
        print(
            f"      event {sequence}: first {values[0] * 1000:.0f} ms, median {values[len(values) // 2] * 1000:.0f} ms,"
            f" last {values[-1] * 1000:.0f} ms"
        )
    delays.sort()
    p99 = delays[int(len(delays) * 0.99) - 1] * 1000 if delays else float("inf")
    report(
        f"WatchJob fan-out to {watchers} watchers",
        f"p99 {p99:.0f} ms, p50 {delays[len(delays) // 2] * 1000:.0f} ms ({len(delays)} deliveries)",
        "p99 <= 100 ms",
        p99 <= 100,
    )
    stack.stop()


def idle_memory(factory: StackFactory) -> None:
    stack = factory()
    time.sleep(2.0)  # let start-up garbage settle: this measures the idle state, not an event
    for name, process in stack.services.items():
        status = Path(f"/proc/{process.pid}/status").read_text()
        rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024
        report(f"idle RSS of {name}", f"{rss:.0f} MB", "< 90 MB", rss < 90)
    stack.stop()


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency", type=float, default=2.0, help="L in seconds for the parallelism check")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=150)
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument(
        "--only",
        choices=["memory", "parallel", "overhead", "scaling", "watch"],
        action="append",
        help="run only these parts",
    )
    args = parser.parse_args()
    parts = set(args.only or ["memory", "parallel", "overhead", "scaling", "watch"])
    with stacks() as factory:
        if "memory" in parts:
            idle_memory(factory)
        if "parallel" in parts:
            await parallel_rendering(factory, args.latency, args.concurrency)
        if "overhead" in parts:
            await overhead_and_throughput(factory, args.jobs)
        if "scaling" in parts:
            await scaling(factory, min(args.jobs, 100))
        if "watch" in parts:
            await watch_fan_out(factory, args.watchers)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
