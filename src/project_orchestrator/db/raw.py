"""Plain asyncpg connections, for the hot ingress path and the job queue.

The ORM is for the services; the webhook path and pgqueuer talk to asyncpg directly,
on the same database and in the same transactions. So do the statements every message
runs (its turn, its delivery): `in_transaction` hands out the asyncpg connection under
an ORM session, inside that session's transaction.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import SERVICE_NAME


def asyncpg_dsn(database_url: str) -> str:
    """`postgresql+asyncpg://...` (SQLAlchemy's form) as a DSN asyncpg understands."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """No reset on release. asyncpg's default runs four statements (unlock advisory locks,
    close cursors, unlisten, reset settings) each time a connection goes back, a round
    trip per ingress batch; the statements run on these pools leave none of that behind."""


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 4) -> asyncpg.Pool:
    """A pool for statements that leave no session state (no SET, LISTEN, cursor or
    session-level advisory lock): connections go back to it without a reset."""
    pool = await asyncpg.create_pool(
        asyncpg_dsn(database_url),
        min_size=min_size,
        max_size=max_size,
        timeout=3,
        command_timeout=30,
        server_settings={"application_name": SERVICE_NAME},
        reset=_keep_session,
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


_KEPT = "project_orchestrator.raw_connection"


async def in_transaction(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection of `session`, with the session's transaction begun on it.

    A statement run here commits or rolls back with the session. SQLAlchemy's adapter
    sends BEGIN only before its own first statement, so a connection taken before any
    would run in autocommit: the BEGIN is sent here then. On this connection json and
    jsonb parameters are JSON text (SQLAlchemy's codecs), and results come back decoded.
    The ORM's objects in the session do not see what is written here.

    Kept in the session's `info` for the rest of its transaction: asking SQLAlchemy for
    the connection again costs more than the statement it is for.
    """
    transaction = session.sync_session.get_transaction()
    kept = session.info.get(_KEPT)
    # Private to the adapter (uv.lock fixes its version; tests pin the behaviour).
    if kept is not None and kept[0] is transaction and kept[1]._transaction is not None:
        driver: asyncpg.Connection = kept[2]
        return driver
    connection = await session.connection()
    fairy = await connection.get_raw_connection()
    adapted: Any = fairy.dbapi_connection
    if adapted._transaction is None:
        await adapted._start_transaction()
    driver = fairy.driver_connection
    session.info[_KEPT] = (session.sync_session.get_transaction(), adapted, driver)
    return driver


def json_text(value: Any) -> str:
    """A json or jsonb parameter for `in_transaction`'s connection."""
    return orjson.dumps(value).decode()
