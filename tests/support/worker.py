"""Running the real worker in-process until the queue has nothing left to do."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import text

from project_orchestrator.audit import AuditLog
from project_orchestrator.composition.worker import build_workload
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database
from project_orchestrator.queue.worker import WorkerOptions, Workload, run_worker

FAST_RETRIES = WorkerOptions(
    concurrency=4,
    heartbeat_timeout=timedelta(seconds=5),
    drain_timeout=timedelta(seconds=10),
    retry_initial_delay=timedelta(milliseconds=20),
    retry_max_delay=timedelta(milliseconds=100),
    poll_interval=timedelta(milliseconds=50),
)


# A job due later than this (a checks phase's next poll, an hour away) is not work the
# test waits for: it is what the service would do long after the test's moment.
LATER = timedelta(seconds=10)


async def unfinished_jobs(db: Database) -> int:
    """Jobs running, or queued and due before LATER from now."""
    async with db.engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM pgqueuer WHERE status = 'picked' OR "
                        "(status = 'queued' AND execute_after < now() + make_interval(secs => :s))"
                    ),
                    {"s": LATER.total_seconds()},
                )
            ).scalar_one()
        )


async def work_until_idle(
    settings: Settings,
    db: Database,
    options: WorkerOptions = FAST_RETRIES,
    limit_seconds: float = 30,
    shape: Callable[[Workload], None] | None = None,
) -> None:
    """Run a worker until no job is queued or running, then stop it the SIGTERM way.

    `shape` may change the workload first (wrap a handler to inject a fault)."""
    assert settings.database_url is not None
    audit = AuditLog(settings.audit_log_path, known_secrets=settings.secret_values())
    stop = asyncio.Event()
    workload = build_workload(settings, db, audit)
    if shape is not None:
        shape(workload)
    worker = asyncio.create_task(run_worker(settings.database_url, workload, stop, options))
    try:
        await wait_until_idle(db, [worker], limit_seconds)
    finally:
        stop.set()
        await worker
        await workload.aclose()


async def wait_until_idle(
    db: Database, workers: list[asyncio.Task[None]], limit_seconds: float = 30
) -> None:
    """Until no job is queued or running; a worker that dies raises here."""
    async with asyncio.timeout(limit_seconds):
        while await unfinished_jobs(db) > 0:
            for worker in workers:
                if worker.done():
                    worker.result()
            await asyncio.sleep(0.05)
