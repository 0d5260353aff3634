"""Engine and session factory; only the edges (request, job) commit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from project_orchestrator import SERVICE_NAME, effects

# Short enough that probes turn 503 within seconds of the database going away.
CONNECT_TIMEOUT_SECONDS = 3.0
PROBE_TIMEOUT_SECONDS = 3.0
# A connection back in the pool for longer than this is pinged before it is handed out.
# One in steady use is not: a ping is three round trips (BEGIN, ";", ROLLBACK) and about a
# millisecond of CPU, paid per transaction, and a connection that dies while in use fails
# its statement either way (the pool then replaces every connection of that generation).
IDLE_BEFORE_PING_SECONDS = 1.0


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    @asynccontextmanager
    async def session_scope(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit when the block succeeds, roll back when it raises.

        Audit lines and metric counts the block reports (`effects.after_commit`) are
        emitted after the commit, and dropped with a rollback.
        """
        with effects.collecting() as pending:
            async with self.sessionmaker() as session:
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
        effects.run(pending)

    async def ping(self) -> None:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS), self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def one_connection_database(url: str) -> AsyncIterator[Database]:
    """A database of one connection for a command that runs once (`orchestrator events
    list`, `report`), disposed when the command is done."""
    db = create_database(url, pool_size=1, max_overflow=0)
    try:
        yield db
    finally:
        await db.dispose()


def worker_pool_size(concurrency: int) -> int:
    """Connections a worker needs: one per job running (no job holds two, and none holds
    one while it waits on a model, SCAR or a channel), and a little room for probes."""
    return concurrency + 2


def create_database(url: str, *, pool_size: int = 10, max_overflow: int = 5) -> Database:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # See `_ping_when_idle`: a connection that died with the server is replaced on
        # checkout, so the service recovers by itself when the database comes back.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={
            "timeout": CONNECT_TIMEOUT_SECONDS,
            "command_timeout": 30,
            "server_settings": {"application_name": SERVICE_NAME},
        },
    )
    _ping_when_idle(engine, IDLE_BEFORE_PING_SECONDS)
    return Database(engine=engine, sessionmaker=async_sessionmaker(engine, expire_on_commit=False))


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """SQLAlchemy's pre-ping, only for connections that sat idle for `idle_seconds`.

    Raising DisconnectionError from a checkout listener is SQLAlchemy's documented way to
    have the pool discard that connection and hand out another (fresh) one instead."""
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _handed_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # new, or in steady use
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # Whatever went wrong, this connection is not to be trusted: the pool tries a
            # fresh one, and that one fails plainly when the server is really away.
            raise exc.DisconnectionError("the connection failed its ping") from error
