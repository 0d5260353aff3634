"""Gauges read from the database at scrape time.

They describe shared state (every API process and worker sees the same numbers), so they
are counted where that state lives rather than tracked in one process's memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import text

from project_orchestrator import metrics
from project_orchestrator.db.engine import Database

_SHARED_STATE = text(
    """
    SELECT
        (SELECT count(DISTINCT project_id) FROM workflow_runs
          WHERE status IN ('running', 'awaiting_approval', 'on_hold')) AS active_projects,
        (SELECT count(*) FROM approval_gates WHERE status = 'pending') AS gates_pending,
        (SELECT count(*) FROM pgqueuer WHERE status = 'queued') AS queue_depth
    """
)


async def refresh_shared_state(db: Database) -> None:
    async with db.engine.connect() as conn:
        row = (await conn.execute(_SHARED_STATE)).one()
    metrics.orchestrator_active_projects.set(row.active_projects)
    metrics.approval_gates_pending.set(row.gates_pending)
    metrics.job_queue_depth.set(row.queue_depth)


GAUGE_REFRESHERS: list[Callable[[Database], Awaitable[None]]] = [refresh_shared_state]
