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
