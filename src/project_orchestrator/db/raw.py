"""Plain asyncpg connections, for the hot ingress path and the job queue.

The ORM is for the services; the webhook path and pgqueuer talk to asyncpg directly,
on the same database and in the same transactions.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import make_url

from project_orchestrator import SERVICE_NAME


def asyncpg_dsn(database_url: str) -> str:
    """`postgresql+asyncpg://...` (SQLAlchemy's form) as a DSN asyncpg understands."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 4) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        asyncpg_dsn(database_url),
        min_size=min_size,
        max_size=max_size,
        timeout=3,
        command_timeout=30,
        server_settings={"application_name": SERVICE_NAME},
    )
    if pool is None:  # only when asyncpg is misused; keeps the type honest
        raise RuntimeError("asyncpg returned no pool")
    return pool


async def connect(database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        asyncpg_dsn(database_url),
        timeout=3,
        server_settings={"application_name": SERVICE_NAME},
    )
