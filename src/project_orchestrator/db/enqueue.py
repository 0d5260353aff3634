"""Queueing jobs from an ORM session: same connection, so same transaction."""

from __future__ import annotations

import uuid
from datetime import timedelta

import structlog
from pgqueuer.queries import Queries
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.db import raw
from project_orchestrator.db.jobs import (
    AGENT_TURN,
    DELIVER_OUTBOUND,
    HANDLE_EVENT,
    RUN_STEP,
    DeliveryJob,
    EventJob,
    StepJob,
    TurnJob,
)


async def enqueue_event_jobs(session: AsyncSession, jobs: list[EventJob]) -> None:
    """The jobs become visible exactly when the session's transaction commits."""
    if not jobs:
        return
    connection = await raw.in_transaction(session)
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
        job = StepJob(job.phase_id, _current_correlation_id())
    connection = await raw.in_transaction(session)
    await Queries.from_asyncpg_connection(connection).enqueue(
        entrypoint=RUN_STEP,
        payload=job.encode(),
        dedupe_key=keys.step_dedupe(job.phase_id),
        on_conflict="skip",
    )


async def enqueue_checks_poll(
    session: AsyncSession, phase_id: str, number: int, delay: timedelta
) -> None:
    """The next poll of a checks phase, due after `delay`, queued once however often asked."""
    job = StepJob(phase_id, _current_correlation_id(), poll=number)
    connection = await raw.in_transaction(session)
    await Queries.from_asyncpg_connection(connection).enqueue(
        entrypoint=RUN_STEP,
        payload=job.encode(),
        execute_after=delay,
        dedupe_key=keys.checks_poll(phase_id, number),
        on_conflict="skip",
    )


async def enqueue_checks_wake(session: AsyncSession, phase_id: str) -> None:
    """Read GitHub again now: a check finished. No dedupe key: one already running may
    have read GitHub before this check finished, so it must not absorb this one."""
    job = StepJob(phase_id, _current_correlation_id(), wake=True)
    await _enqueue_one(session, RUN_STEP, job.encode())


async def enqueue_delivery(session: AsyncSession, conversation: str) -> None:
    """Deliver the conversation's outbox once the session's transaction commits."""
    job = DeliveryJob(conversation, _current_correlation_id())
    await _enqueue_one(session, DELIVER_OUTBOUND, job.encode())


async def enqueue_turn(session: AsyncSession, project_id: uuid.UUID) -> None:
    """The agent answers the project's pending turn once the session commits."""
    job = TurnJob(str(project_id), _current_correlation_id())
    await _enqueue_one(session, AGENT_TURN, job.encode())


# One job without a dedupe key, written as pgqueuer's own enqueue writes it (the job row
# and a `queued` line in its log; tests pin the parity), in one short statement: every
# message queues two such jobs, and pgqueuer's general statement (dedupe keys, batches)
# cost several times as much to run.
_ENQUEUE_ONE = """
    WITH job AS (
        INSERT INTO pgqueuer (priority, entrypoint, payload, headers, status)
        VALUES (0, $1, $2::bytea, 'null'::jsonb, 'queued')
        RETURNING id, entrypoint, priority
    )
    INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM job
"""


async def _enqueue_one(session: AsyncSession, entrypoint: str, payload: bytes) -> None:
    connection = await raw.in_transaction(session)
    await connection.execute(_ENQUEUE_ONE, entrypoint, payload)


def _current_correlation_id() -> str | None:
    current = structlog.contextvars.get_contextvars().get("correlation_id")
    return current if isinstance(current, str) else None
