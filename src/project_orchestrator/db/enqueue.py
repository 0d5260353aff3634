"""Queueing jobs from an ORM session: same connection, so same transaction."""

from __future__ import annotations

import asyncpg
import structlog
from pgqueuer.queries import Queries
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.db.jobs import HANDLE_EVENT, RUN_STEP, EventJob, StepJob


async def enqueue_event_jobs(session: AsyncSession, jobs: list[EventJob]) -> None:
    """The jobs become visible exactly when the session's transaction commits."""
    if not jobs:
        return
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await enqueue_on_connection(raw.driver_connection, jobs)


async def enqueue_on_connection(connection: asyncpg.Connection, jobs: list[EventJob]) -> None:
    """pgqueuer's batch enqueue on a connection whose transaction the caller owns."""
    if not jobs:
        return
    await Queries.from_asyncpg_connection(connection).enqueue(
        entrypoint=[HANDLE_EVENT] * len(jobs),
        payload=[job.encode() for job in jobs],
        priority=[0] * len(jobs),
    )


async def enqueue_step_job(session: AsyncSession, job: StepJob) -> None:
    """Queue a phase's step in the session's transaction, once while one is still waiting.

    The dedupe key makes a second request for the same phase attempt (a resume racing a
    retry) a no-op instead of a second SCAR command.
    """
    if job.correlation_id is None:
        # The request or job that caused this step: its logs and the step's share an id.
        current = structlog.contextvars.get_contextvars().get("correlation_id")
        job = StepJob(job.phase_id, current if isinstance(current, str) else None)
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await Queries.from_asyncpg_connection(raw.driver_connection).enqueue(
        entrypoint=RUN_STEP,
        payload=job.encode(),
        dedupe_key=keys.step_dedupe(job.phase_id),
        on_conflict="skip",
    )
