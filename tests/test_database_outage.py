"""Probes turn 503 within seconds of the database going away and recover by themselves."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from project_orchestrator.app import create_app
from tests.conftest import make_settings
from tests.support.postgres import RestartablePostgres

pytestmark = pytest.mark.slow


async def _wait_for(client: httpx.AsyncClient, path: str, status: int, limit: float) -> float:
    started = time.monotonic()
    while True:
        response = await client.get(path)
        if response.status_code == status:
            return time.monotonic() - started
        if time.monotonic() - started > limit:
            raise AssertionError(f"{path} stayed {response.status_code}, wanted {status}")
        await asyncio.sleep(0.2)


async def test_probes_follow_the_database_down_and_back(
    tmp_path: Path, private_postgres: RestartablePostgres
) -> None:
    app = create_app(make_settings(tmp_path, database_url=private_postgres.url))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/health/db")).status_code == 200
            assert (await client.get("/health/ready")).status_code == 200

            private_postgres.stop()
            await _wait_for(client, "/health/db", 503, limit=8)
            ready = await client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["database"] == "fail"
            # Liveness does not depend on the database.
            assert (await client.get("/health")).status_code == 200

            private_postgres.start()
            await _wait_for(client, "/health/db", 200, limit=15)
            await _wait_for(client, "/health/ready", 200, limit=5)


async def test_an_idle_connection_killed_by_the_server_is_replaced_on_checkout(
    database_url: str,
) -> None:
    """Connections that sat idle are pinged before use (one in steady use is not: see
    `db.engine.IDLE_BEFORE_PING_SECONDS`); a dead one is swapped for a fresh one."""
    from sqlalchemy import text

    from project_orchestrator.db import engine as engine_module

    db = engine_module.create_database(database_url, pool_size=1, max_overflow=0)
    try:
        async with db.session_scope() as session:
            first_pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with db.session_scope() as session:  # at once: the same connection, no ping
            assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one() == (
                first_pid
            )
        killer = engine_module.create_database(database_url, pool_size=1, max_overflow=0)
        try:
            async with killer.session_scope() as session:
                await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
        finally:
            await killer.dispose()
        await asyncio.sleep(engine_module.IDLE_BEFORE_PING_SECONDS + 0.2)
        async with db.session_scope() as session:
            replaced = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert replaced != first_pid
    finally:
        await db.dispose()


async def test_a_connection_killed_in_steady_use_fails_once_then_the_pool_recovers(
    database_url: str,
) -> None:
    from sqlalchemy import exc, text

    from project_orchestrator.db.engine import create_database

    db = create_database(database_url, pool_size=1, max_overflow=0)
    try:
        async with db.session_scope() as session:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    except exc.DBAPIError:
        pass  # killed itself mid-transaction: that statement fails, as it must
    try:
        async with db.session_scope() as session:  # at once: no ping, but a new connection
            again = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert again != pid
    finally:
        await db.dispose()
