"""Queueing jobs from an ORM session: same connection, so same transaction."""

from __future__ import annotations

import uuid

import structlog
from pgqueuer.queries import Queries
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
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
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await Queries.from_asyncpg_connection(raw.driver_connection).enqueue(
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
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await Queries.from_asyncpg_connection(raw.driver_connection).enqueue(
        entrypoint=RUN_STEP,
        payload=job.encode(),
        dedupe_key=keys.step_dedupe(job.phase_id),
        on_conflict="skip",
    )


async def enqueue_delivery(session: AsyncSession, conversation: str) -> None:
    """Deliver the conversation's outbox once the session's transaction commits."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await Queries.from_asyncpg_connection(raw.driver_connection).enqueue(
        entrypoint=DELIVER_OUTBOUND,
        payload=DeliveryJob(conversation, _current_correlation_id()).encode(),
    )


async def enqueue_turn(session: AsyncSession, project_id: uuid.UUID) -> None:
    """The agent answers the project's pending turn once the session commits."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    job = TurnJob(str(project_id), _current_correlation_id())
    await Queries.from_asyncpg_connection(raw.driver_connection).enqueue(
        entrypoint=AGENT_TURN, payload=job.encode()
    )


def _current_correlation_id() -> str | None:
    current = structlog.contextvars.get_contextvars().get("correlation_id")
    return current if isinstance(current, str) else None
