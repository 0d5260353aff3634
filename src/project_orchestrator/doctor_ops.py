"""`orchestrator doctor`'s operational checks: the job queue and the rate-limit store.

Kept apart from doctor.py (the dependency checks) so each module stays readable; both
build on doctor_results.py.
"""

from __future__ import annotations

import asyncio

from project_orchestrator.config import Settings, normalise_database_url
from project_orchestrator.doctor_results import (
    DATABASE_CONNECT_TIMEOUT_SECONDS,
    DATABASE_TIMEOUT_SECONDS,
    CheckResult,
    fail,
    ok,
    safe_url,
    warn,
)

# A job waiting longer than this means no worker is taking jobs.
STALE_JOB_SECONDS = 300

_QUEUE = """
SELECT
    (SELECT count(*) FROM pgqueuer WHERE status = 'queued' AND execute_after <= now()),
    (SELECT coalesce(extract(epoch FROM now() - min(execute_after)), 0)
       FROM pgqueuer WHERE status = 'queued' AND execute_after <= now()),
    (SELECT count(*) FROM inbound_events WHERE status = 'failed')
"""


async def check_queue(database_url: str) -> CheckResult:
    name = "queue"
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(
        normalise_database_url(database_url),
        poolclass=NullPool,
        connect_args={"timeout": DATABASE_CONNECT_TIMEOUT_SECONDS},
    )
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS), engine.connect() as conn:
            waiting, oldest, failed = (await conn.execute(text(_QUEUE))).one()
    except Exception as exc:
        return warn(name, f"not checked: the queue could not be read ({type(exc).__name__})")
    finally:
        await engine.dispose()
    if oldest > STALE_JOB_SECONDS:
        return fail(
            name,
            f"{waiting} jobs waiting, the oldest for {int(oldest // 60)} minutes: "
            "no worker is taking jobs",
            "start a worker (`orchestrator worker`, or `orchestrator serve` without "
            "--no-worker) and check its log for worker.crashed",
        )
    if failed:
        return warn(
            name,
            f"{waiting} jobs waiting; {failed} events ran out of attempts",
            "see `orchestrator events list --failed`, fix the cause, then "
            "`orchestrator events replay ID`",
        )
    return ok(name, f"{waiting} jobs waiting, no failed events")


async def check_rate_limit_storage(settings: Settings) -> CheckResult:
    name = "rate-limit"
    uri = settings.rate_limit_storage_uri
    if uri.startswith("memory://"):
        return ok(name, "counted in memory, per process (one API instance)")
    if not uri.startswith(("redis://", "rediss://")):
        return warn(name, f"{safe_url(uri)}: not checked (only Redis is checked)")
    from redis.asyncio import Redis

    client = Redis.from_url(uri, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    except Exception as exc:
        return fail(
            name,
            f"{safe_url(uri)} unreachable ({type(exc).__name__}): webhooks are let "
            "through unlimited while it is down",
            "start Redis or fix RATE_LIMIT_STORAGE_URI",
        )
    finally:
        await client.aclose()
    return ok(name, f"shared in {safe_url(uri)}")
