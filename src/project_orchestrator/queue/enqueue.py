"""Queueing jobs from an ORM session: same connection, so same transaction."""

from __future__ import annotations

import asyncpg
from pgqueuer.queries import Queries
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.queue.jobs import HANDLE_EVENT, EventJob


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
