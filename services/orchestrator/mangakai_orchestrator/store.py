"""The job store: jobs, their panels and panel versions, and the events that announce each change.

PostgreSQL is the source of truth. Every change of a job and the event that
announces it are written in one transaction: the event gets the job's next
sequence number and lands in `job_events`, from where the relay publishes it
to JetStream (the outbox, see outbox.py), so no event is lost or reordered
when a process dies between the write and the publish. Every change of a
job's state goes through the state machine's table (states.py). Who holds a
job lives in leases.py, cached exports in exports.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from google.protobuf import timestamp_pb2

from mangakai.v1 import common_pb2, jobs_pb2
from mangakai_orchestrator import states

JobState = common_pb2.Job.State
VersionState = common_pb2.PanelVersion.State

ACTIVE_STATES = tuple(sorted(states.ACTIVE))
TERMINAL_STATES = tuple(sorted(states.TERMINAL))


def state_word(state: JobState.ValueType) -> str:
    """A state as a word for messages people read ("cancelled", not "STATE_CANCELLED")."""
    return JobState.Name(state).removeprefix("STATE_").lower()


UNSETTLED_VERSIONS = (VersionState.STATE_PENDING, VersionState.STATE_RENDERING)


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def job_name(job_id: uuid.UUID) -> str:
    return f"jobs/{job_id}"


@dataclass(frozen=True)
class PendingVersion:
    """A panel version waiting to be drawn."""

    number: int
    version: int
    scene: common_pb2.Scene
    instruction: str
    reference_blob_key: str
    previous_image_key: str  # the current version's un-lettered art when kept, else its image


class JobStore:
    """SQL access for the orchestrator. Methods taking a session id only ever see that session's jobs."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ---- events (written here, relayed by outbox.py) ---------------------

    async def _append_event(
        self, conn: PoolConnectionProxy, job_id: uuid.UUID, event: common_pb2.JobEvent
    ) -> common_pb2.JobEvent:
        """Gives the event the job's next sequence number and the job's state and progress, and stores it."""
        row = await conn.fetchrow(
            "UPDATE jobs SET last_event_seq = last_event_seq + 1, update_time = now() "
            "WHERE id = $1 RETURNING last_event_seq, state, now() AS now",
            job_id,
        )
        assert row is not None
        event.job = job_name(job_id)
        event.sequence = row["last_event_seq"]
        event.job_state = row["state"]
        event.create_time.FromDatetime(row["now"])
        event.progress_percent = await self._progress(conn, job_id)
        event.terminal = row["state"] in TERMINAL_STATES
        await conn.execute(
            "INSERT INTO job_events (job_id, seq, event, create_time) VALUES ($1, $2, $3, $4)",
            job_id,
            event.sequence,
            event.SerializeToString(),
            row["now"],
        )
        return event

    async def _progress(self, conn: PoolConnectionProxy, job_id: uuid.UUID) -> int:
        """The one definition of a job's progress: drawn panels over panels still wanted.

        A panel is drawn when its latest version succeeded; it is no longer wanted
        when its latest version failed (Job.failed_panel_count reports those).
        Cancelled panels stay wanted, so a job cancelled or failed half-way shows
        how far it got rather than 100; before the plan there is nothing to count.
        """
        row = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE latest.state = $2) AS drawn,
                      count(*) FILTER (WHERE latest.state <> $3) AS wanted
               FROM (SELECT DISTINCT ON (number) state FROM panel_versions
                     WHERE job_id = $1 ORDER BY number, version DESC) AS latest""",
            job_id,
            VersionState.STATE_SUCCEEDED,
            VersionState.STATE_FAILED,
        )
        assert row is not None
        drawn, wanted = int(row["drawn"]), int(row["wanted"])
        return (100 * drawn) // wanted if wanted else 0

    # ---- jobs: the public operations -------------------------------------

    async def create_job(
        self, session_id: uuid.UUID, request: jobs_pb2.CreateJobRequest
    ) -> tuple[common_pb2.Job, bool]:
        """Stores a QUEUED job; returns it and whether it is new (False when request_id matched)."""
        job_id = uuid.uuid4()
        request_id = request.request_id or None
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                """INSERT INTO jobs (id, session_id, request_id, state, story, panel_count, style, layout, reading_order)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                   ON CONFLICT (session_id, request_id) DO NOTHING RETURNING id""",
                job_id,
                session_id,
                request_id,
                JobState.STATE_QUEUED,
                request.story,
                request.panel_count,
                request.style.SerializeToString(),
                request.layout,
                request.reading_order,
            )
            if inserted is None:
                existing = await conn.fetchval(
                    "SELECT id FROM jobs WHERE session_id = $1 AND request_id = $2", session_id, request_id
                )
                job = await self._load_job(conn, session_id, existing, full=True)
                assert job is not None
                return job, False
            await self._append_event(
                conn,
                job_id,
                common_pb2.JobEvent(state_changed=common_pb2.JobStateChanged(state=JobState.STATE_QUEUED)),
            )
            job = await self._load_job(conn, session_id, job_id, full=True)
            assert job is not None
            return job, True

    async def get_job(
        self, session_id: uuid.UUID | None, job_id: uuid.UUID, *, full: bool = True
    ) -> common_pb2.Job | None:
        async with self._pool.acquire() as conn:
            return await self._load_job(conn, session_id, job_id, full=full)

    async def list_jobs(
        self, session_id: uuid.UUID, page_size: int, after: tuple[datetime, uuid.UUID] | None
    ) -> tuple[list[common_pb2.Job], tuple[datetime, uuid.UUID] | None]:
        async with self._pool.acquire() as conn:
            if after is None:
                rows = await conn.fetch(
                    "SELECT * FROM jobs WHERE session_id = $1 ORDER BY create_time DESC, id DESC LIMIT $2",
                    session_id,
                    page_size + 1,
                )
            else:
                rows = await conn.fetch(
                    """SELECT * FROM jobs WHERE session_id = $1 AND (create_time, id) < ($2, $3)
                       ORDER BY create_time DESC, id DESC LIMIT $4""",
                    session_id,
                    after[0],
                    after[1],
                    page_size + 1,
                )
            more = len(rows) > page_size
            rows = rows[:page_size]
            jobs = [await self._job_from_row(conn, r, full=False) for r in rows]
            cursor = (rows[-1]["create_time"], rows[-1]["id"]) if more and rows else None
            return jobs, cursor

    async def request_cancel(
        self, session_id: uuid.UUID, job_id: uuid.UUID
    ) -> tuple[common_pb2.Job | None, bool]:
        """Cancels a job: at once when no worker holds it, else by flagging it for its worker.

        Returns the job (None when absent) and whether a running worker must be told.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT state, owner, lease_expires_at > now() AS leased FROM jobs "
                "WHERE id = $1 AND session_id = $2 FOR UPDATE",
                job_id,
                session_id,
            )
            if row is None:
                return None, False
            if row["state"] in TERMINAL_STATES:
                return await self._load_job(conn, session_id, job_id, full=True), False
            if row["owner"] is not None and row["leased"]:
                await conn.execute(
                    "UPDATE jobs SET cancel_requested = true, update_time = now() WHERE id = $1", job_id
                )
                return await self._load_job(conn, session_id, job_id, full=True), True
            await self._finish(conn, job_id, JobState.STATE_CANCELLED, "cancelled by the user")
            return await self._load_job(conn, session_id, job_id, full=True), False

    async def add_panel_version(
        self, session_id: uuid.UUID, job_id: uuid.UUID, number: int, instruction: str, reference_blob_key: str
    ) -> common_pb2.Panel:
        """Queues a new version of a panel of a finished job and reopens the job for it."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT state, plan IS NOT NULL AS planned FROM jobs WHERE id = $1 AND session_id = $2 FOR UPDATE",
                job_id,
                session_id,
            )
            if row is None:
                raise LookupError(job_name(job_id))
            if not states.allowed(row["state"], JobState.STATE_RENDERING) or not row["planned"]:
                raise JobStateError(
                    f"{job_name(job_id)} is {state_word(row['state'])}; panels can be regenerated once the job "
                    "has completed or failed after planning"
                )
            exists = await conn.fetchval(
                "SELECT 1 FROM panels WHERE job_id = $1 AND number = $2", job_id, number
            )
            if not exists:
                raise PanelNumberError(number)
            version = await conn.fetchval(
                "SELECT max(version) + 1 FROM panel_versions WHERE job_id = $1 AND number = $2",
                job_id,
                number,
            )
            await conn.execute(
                """INSERT INTO panel_versions (job_id, number, version, state, instruction, reference_blob_key)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                job_id,
                number,
                version,
                VersionState.STATE_PENDING,
                instruction,
                reference_blob_key,
            )
            # A new run of the job: its attempts count from zero again (they used to add up
            # over regenerations until the fifth failed at once).
            await self._move(conn, job_id, JobState.STATE_RENDERING)
            await conn.execute(
                """UPDATE jobs SET state = $2, run = run + 1, attempts = 0, cancel_requested = false,
                          end_time = NULL, failure_reason = '' WHERE id = $1""",
                job_id,
                JobState.STATE_RENDERING,
            )
            await self._append_event(
                conn,
                job_id,
                common_pb2.JobEvent(state_changed=common_pb2.JobStateChanged(state=JobState.STATE_RENDERING)),
            )
            job = await self._load_job(conn, session_id, job_id, full=True)
            assert job is not None
            return job.panels[number - 1]

    # ---- jobs: the worker's side ----------------------------------------

    async def cancel_requested(self, job_id: uuid.UUID) -> bool:
        return bool(await self._pool.fetchval("SELECT cancel_requested FROM jobs WHERE id = $1", job_id))

    async def set_state(self, job_id: uuid.UUID, state: JobState.ValueType) -> common_pb2.JobEvent | None:
        """Moves an active job to another active state; None when it already was there."""
        async with self._pool.acquire() as conn, conn.transaction():
            if await self._move(conn, job_id, state) == state:
                return None
            await conn.execute("UPDATE jobs SET state = $2 WHERE id = $1", job_id, state)
            return await self._append_event(
                conn, job_id, common_pb2.JobEvent(state_changed=common_pb2.JobStateChanged(state=state))
            )

    async def save_plan(self, job_id: uuid.UUID, plan: common_pb2.ScenePlan) -> common_pb2.JobEvent:
        """Stores the plan, creates one panel (with a pending first version) per scene, moves to RENDERING."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._move(conn, job_id, JobState.STATE_RENDERING)
            await conn.execute(
                "UPDATE jobs SET plan = $2, title = $3, state = $4 WHERE id = $1",
                job_id,
                plan.SerializeToString(),
                plan.title,
                JobState.STATE_RENDERING,
            )
            await conn.executemany(
                "INSERT INTO panels (job_id, number, scene) VALUES ($1, $2, $3)",
                [(job_id, s.number, s.SerializeToString()) for s in plan.scenes],
            )
            await conn.executemany(
                "INSERT INTO panel_versions (job_id, number, version, state) VALUES ($1, $2, 1, $3)",
                [(job_id, s.number, VersionState.STATE_PENDING) for s in plan.scenes],
            )
            return await self._append_event(conn, job_id, common_pb2.JobEvent(plan_ready=plan))

    async def save_character_sheet(self, job_id: uuid.UUID, image: common_pb2.Image) -> common_pb2.JobEvent:
        """Stores the job's character sheet and announces it."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE jobs SET character_sheet = $2 WHERE id = $1", job_id, image.SerializeToString()
            )
            return await self._append_event(conn, job_id, common_pb2.JobEvent(character_sheet_ready=image))

    async def pending_versions(self, job_id: uuid.UUID) -> list[PendingVersion]:
        rows = await self._pool.fetch(
            """SELECT v.number, v.version, p.scene, v.instruction, v.reference_blob_key,
                      (SELECT coalesce(cv.art, cv.image) FROM panel_versions cv
                        WHERE cv.job_id = p.job_id AND cv.number = p.number AND cv.version = p.current_version) AS current
               FROM panel_versions v JOIN panels p USING (job_id, number)
               WHERE v.job_id = $1 AND v.state = ANY($2::smallint[])
               ORDER BY v.number, v.version""",
            job_id,
            list(UNSETTLED_VERSIONS),
        )
        return [
            PendingVersion(
                number=r["number"],
                version=r["version"],
                scene=common_pb2.Scene.FromString(r["scene"]),
                instruction=r["instruction"],
                reference_blob_key=r["reference_blob_key"],
                previous_image_key=common_pb2.Image.FromString(r["current"]).blob_key if r["current"] else "",
            )
            for r in rows
        ]

    async def start_version(self, job_id: uuid.UUID, number: int, version: int) -> common_pb2.JobEvent:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE panel_versions SET state = $4 WHERE job_id = $1 AND number = $2 AND version = $3",
                job_id,
                number,
                version,
                VersionState.STATE_RENDERING,
            )
            return await self._append_event(
                conn,
                job_id,
                common_pb2.JobEvent(panel_started=common_pb2.PanelStarted(panel=number, version=version)),
            )

    async def finish_version(
        self,
        job_id: uuid.UUID,
        number: int,
        version: int,
        image: common_pb2.Image,
        art: common_pb2.Image | None = None,
    ) -> common_pb2.JobEvent:
        """Records a drawn version (and its un-lettered art) and makes it the panel's current one."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE panel_versions SET state = $4, image = $5, art = $6, end_time = now(), failure_reason = ''
                   WHERE job_id = $1 AND number = $2 AND version = $3""",
                job_id,
                number,
                version,
                VersionState.STATE_SUCCEEDED,
                image.SerializeToString(),
                art.SerializeToString() if art is not None and art.blob_key else None,
            )
            await conn.execute(
                "UPDATE panels SET current_version = $3 WHERE job_id = $1 AND number = $2",
                job_id,
                number,
                version,
            )
            stored = await self._version(conn, job_id, number, version)
            return await self._append_event(
                conn,
                job_id,
                common_pb2.JobEvent(panel_finished=common_pb2.PanelFinished(panel=number, version=stored)),
            )

    async def fail_version(
        self, job_id: uuid.UUID, number: int, version: int, reason: str
    ) -> common_pb2.JobEvent:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE panel_versions SET state = $4, failure_reason = $5, end_time = now()
                   WHERE job_id = $1 AND number = $2 AND version = $3""",
                job_id,
                number,
                version,
                VersionState.STATE_FAILED,
                reason,
            )
            stored = await self._version(conn, job_id, number, version)
            return await self._append_event(
                conn,
                job_id,
                common_pb2.JobEvent(panel_failed=common_pb2.PanelFailed(panel=number, version=stored)),
            )

    async def finish_job(
        self, job_id: uuid.UUID, *, cancelled: bool = False, reason: str = ""
    ) -> common_pb2.JobEvent:
        """Ends the job's run: CANCELLED, COMPLETED when any panel has an image, FAILED otherwise."""
        async with self._pool.acquire() as conn, conn.transaction():
            if cancelled:
                return await self._finish(
                    conn, job_id, JobState.STATE_CANCELLED, reason or "cancelled by the user"
                )
            if reason:
                return await self._finish(conn, job_id, JobState.STATE_FAILED, reason)
            drawn = await conn.fetchval(
                "SELECT count(*) FROM panels WHERE job_id = $1 AND current_version > 0", job_id
            )
            if drawn:
                return await self._finish(conn, job_id, JobState.STATE_COMPLETED, "")
            failures = await conn.fetch(
                """SELECT DISTINCT failure_reason FROM panel_versions
                   WHERE job_id = $1 AND state = $2 AND failure_reason <> '' LIMIT 3""",
                job_id,
                VersionState.STATE_FAILED,
            )
            detail = "; ".join(r["failure_reason"] for r in failures) or "no panel could be drawn"
            return await self._finish(conn, job_id, JobState.STATE_FAILED, f"every panel failed: {detail}")

    async def failed_panel_count(self, job_id: uuid.UUID) -> int:
        """Panels whose latest version failed (what makes a COMPLETED job partial)."""
        count: int = await self._pool.fetchval(
            """SELECT count(*) FROM panel_versions v
               WHERE v.job_id = $1 AND v.state = $2
                 AND v.version = (SELECT max(version) FROM panel_versions
                                  WHERE job_id = v.job_id AND number = v.number)""",
            job_id,
            VersionState.STATE_FAILED,
        )
        return count

    async def _move(
        self, conn: PoolConnectionProxy, job_id: uuid.UUID, target: JobState.ValueType
    ) -> JobState.ValueType:
        """Locks the job's row for a change of state to `target` and returns its state now.

        Every change of a job's state goes through here: a move the state machine
        does not allow raises IllegalTransition (staying put is not a move).
        """
        current: JobState.ValueType | None = await conn.fetchval(
            "SELECT state FROM jobs WHERE id = $1 FOR UPDATE", job_id
        )
        if current is None:
            raise states.IllegalTransition(None, target)
        if current != target:
            states.check(current, target)
        return current

    async def _finish(
        self, conn: PoolConnectionProxy, job_id: uuid.UUID, state: JobState.ValueType, reason: str
    ) -> common_pb2.JobEvent:
        await self._move(conn, job_id, state)
        await conn.execute(
            """UPDATE panel_versions SET state = $2, failure_reason = $3, end_time = now()
               WHERE job_id = $1 AND state = ANY($4::smallint[])""",
            job_id,
            VersionState.STATE_CANCELLED if state == JobState.STATE_CANCELLED else VersionState.STATE_FAILED,
            reason or "the job ended before this panel was drawn",
            list(UNSETTLED_VERSIONS),
        )
        await conn.execute(
            """UPDATE jobs SET state = $2, failure_reason = $3, end_time = now(), owner = NULL,
                      lease_expires_at = NULL, cancel_requested = false WHERE id = $1""",
            job_id,
            state,
            reason if state != JobState.STATE_COMPLETED else "",
        )
        return await self._append_event(
            conn,
            job_id,
            common_pb2.JobEvent(state_changed=common_pb2.JobStateChanged(state=state, reason=reason)),
        )

    # ---- what an export is made of ---------------------------------------

    async def export_inputs(
        self, session_id: uuid.UUID, job_id: uuid.UUID
    ) -> tuple[common_pb2.Job, list[common_pb2.Image]] | None:
        job = await self.get_job(session_id, job_id, full=True)
        if job is None:
            return None
        images = [p.versions[p.current_version - 1].image for p in job.panels if p.current_version > 0]
        return job, images

    # ---- reading ----------------------------------------------------------

    async def _version(
        self, conn: PoolConnectionProxy, job_id: uuid.UUID, number: int, version: int
    ) -> common_pb2.PanelVersion:
        row = await conn.fetchrow(
            "SELECT * FROM panel_versions WHERE job_id = $1 AND number = $2 AND version = $3",
            job_id,
            number,
            version,
        )
        assert row is not None
        return _version_from_row(row)

    async def _load_job(
        self, conn: PoolConnectionProxy, session_id: uuid.UUID | None, job_id: uuid.UUID, *, full: bool
    ) -> common_pb2.Job | None:
        if session_id is None:
            row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        else:
            row = await conn.fetchrow(
                "SELECT * FROM jobs WHERE id = $1 AND session_id = $2", job_id, session_id
            )
        if row is None:
            return None
        return await self._job_from_row(conn, row, full=full)

    async def _job_from_row(
        self, conn: PoolConnectionProxy, row: asyncpg.Record, *, full: bool
    ) -> common_pb2.Job:
        job = common_pb2.Job(
            name=job_name(row["id"]),
            state=row["state"],
            panel_count=row["panel_count"],
            style=common_pb2.StylePreferences.FromString(row["style"]),
            layout=row["layout"],
            reading_order=row["reading_order"],
            request_id=row["request_id"] or "",
            failure_reason=row["failure_reason"],
            last_event_sequence=row["last_event_seq"],
            create_time=_ts(row["create_time"]),
            update_time=_ts(row["update_time"]),
            end_time=_ts(row["end_time"]),
            title=row["title"],
        )
        if row["character_sheet"] is not None:
            job.character_sheet.ParseFromString(row["character_sheet"])
        job.progress_percent = await self._progress(conn, row["id"])
        panel_rows = await conn.fetch(
            "SELECT number, scene, current_version FROM panels WHERE job_id = $1 ORDER BY number", row["id"]
        )
        version_rows = await conn.fetch(
            "SELECT * FROM panel_versions WHERE job_id = $1 ORDER BY number, version", row["id"]
        )
        versions: dict[int, list[common_pb2.PanelVersion]] = {}
        for v in version_rows:
            versions.setdefault(v["number"], []).append(_version_from_row(v))
        for p in panel_rows:
            mine = versions.get(p["number"], [])
            panel = job.panels.add(number=p["number"], current_version=p["current_version"])
            panel.state = mine[-1].state if mine else VersionState.STATE_PENDING
            if full:
                panel.scene.ParseFromString(p["scene"])
                panel.versions.extend(mine)
            elif p["current_version"] > 0:
                # Listings carry only the current version, for thumbnails.
                panel.versions.append(mine[p["current_version"] - 1])
        job.failed_panel_count = sum(p.state == VersionState.STATE_FAILED for p in job.panels)
        if full:
            job.story = row["story"]
            if row["plan"] is not None:
                job.plan.ParseFromString(row["plan"])
        return job

    # ---- choosing a panel's current version ------------------------------

    async def set_current_version(
        self, session_id: uuid.UUID, job_id: uuid.UUID, number: int, version: int
    ) -> common_pb2.Panel:
        """Makes a drawn version of a panel its current one (what is shown and exported).

        Raises LookupError when the session has no such job, PanelNumberError
        when the job has no such panel, VersionNotDrawnError when the version
        does not exist or has no image.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            owned = await conn.fetchval(
                "SELECT 1 FROM jobs WHERE id = $1 AND session_id = $2 FOR UPDATE", job_id, session_id
            )
            if not owned:
                raise LookupError(job_name(job_id))
            exists = await conn.fetchval(
                "SELECT 1 FROM panels WHERE job_id = $1 AND number = $2", job_id, number
            )
            if not exists:
                raise PanelNumberError(number)
            state = await conn.fetchval(
                "SELECT state FROM panel_versions WHERE job_id = $1 AND number = $2 AND version = $3",
                job_id,
                number,
                version,
            )
            if state != VersionState.STATE_SUCCEEDED:
                raise VersionNotDrawnError(number, version)
            await conn.execute(
                "UPDATE panels SET current_version = $3 WHERE job_id = $1 AND number = $2",
                job_id,
                number,
                version,
            )
            await conn.execute("UPDATE jobs SET update_time = now() WHERE id = $1", job_id)
            job = await self._load_job(conn, session_id, job_id, full=True)
            assert job is not None
            return job.panels[number - 1]


def _version_from_row(row: asyncpg.Record) -> common_pb2.PanelVersion:
    version = common_pb2.PanelVersion(
        version=row["version"],
        state=row["state"],
        instruction=row["instruction"],
        reference_blob_key=row["reference_blob_key"],
        failure_reason=row["failure_reason"],
        create_time=_ts(row["create_time"]),
        end_time=_ts(row["end_time"]),
    )
    if row["image"] is not None:
        version.image.ParseFromString(row["image"])
    if row["art"] is not None:
        version.art.ParseFromString(row["art"])
    return version


class JobStateError(Exception):
    """The job is not in a state that allows the operation."""


class PanelNumberError(Exception):
    """The job has no panel with that number."""

    def __init__(self, number: int) -> None:
        super().__init__(f"no panel {number}")
        self.number = number


class VersionNotDrawnError(Exception):
    """The panel has no drawn (SUCCEEDED) version with that number."""

    def __init__(self, number: int, version: int) -> None:
        super().__init__(f"panel {number} has no drawn version {version}")
        self.number = number
        self.version = version
