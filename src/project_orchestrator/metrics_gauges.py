"""Gauges read from the database at scrape time.

They describe shared state (every API process and worker sees the same numbers), so they
are counted where that state lives rather than tracked in one process's memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import text

from project_orchestrator import metrics
from project_orchestrator.db.engine import Database

GaugeRefresher = Callable[[Database], Awaitable[None]]

# A run counts as stuck when it is running (no person is asked anything, it is not on
# hold, and it is past the vision, which is a conversation that waits for the person)
# and neither it nor any of its phase attempts changed for `stuck_after` seconds. A
# phase's row changes when its SCAR command starts and when it ends.
_SHARED_STATE = text(
    """
    SELECT
        (SELECT count(DISTINCT project_id) FROM workflow_runs
          WHERE status IN ('running', 'awaiting_approval', 'on_hold')) AS active_projects,
        (SELECT count(*) FROM approval_gates WHERE status = 'pending') AS gates_pending,
        (SELECT count(*) FROM pgqueuer WHERE status = 'queued') AS queue_depth,
        (SELECT count(*) FROM workflow_runs r
          WHERE r.status = 'running'
            AND r.current_phase IS DISTINCT FROM 'vision'
            AND greatest(
                r.updated_at,
                (SELECT max(p.updated_at) FROM workflow_phases p WHERE p.run_id = r.id)
            ) < now() - make_interval(secs => :stuck_after)) AS runs_stuck
    """
)


def shared_state_refresher(stuck_after_seconds: float) -> GaugeRefresher:
    async def refresh_shared_state(db: Database) -> None:
        async with db.engine.connect() as conn:
            row = (await conn.execute(_SHARED_STATE, {"stuck_after": stuck_after_seconds})).one()
        metrics.orchestrator_active_projects.set(row.active_projects)
        metrics.approval_gates_pending.set(row.gates_pending)
        metrics.job_queue_depth.set(row.queue_depth)
        metrics.workflow_runs_stuck.set(row.runs_stuck)

    return refresh_shared_state


def gauge_refreshers(*, stuck_after_seconds: float) -> list[GaugeRefresher]:
    return [shared_state_refresher(stuck_after_seconds)]
