"""Health probes and /metrics, exactly as CONTRACT.md shapes them."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from project_orchestrator.app import create_app
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database
from project_orchestrator.db.migrations import upgrade_to_head
from tests.conftest import make_settings
from tests.support import postgres
from tests.support.contract import METRIC_NAMES
from tests.support.fake_http import FakeServer, unused_tcp_url


async def test_liveness(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "service": "project-orchestrator"}


async def test_database_probe_connected(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/db")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "database": "connected"}


async def test_ready_when_migrated_without_ai(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "database": "ok",
        "ai_service": "not_configured",
    }


async def test_ai_probe_not_configured(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ai")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["ai_service"] == "not_configured"


async def _get(settings: Settings, path: str) -> httpx.Response:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get(path)


async def test_ai_probe_reachable_and_unreachable(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def models(_: object) -> JSONResponse:
        return JSONResponse({"error": "unauthorised"}, status_code=401)

    with FakeServer(Starlette(routes=[Route("/v1/models", models)])) as fake:
        reachable = make_settings(
            tmp_path,
            database_url=database_url,
            anthropic_api_key="k-123456",
            anthropic_base_url=fake.url,
        )
        response = await _get(reachable, "/health/ai")
        assert response.json() == {"status": "healthy", "ai_service": "reachable"}
        # The probe never sends the key: reachability only, nothing billable.
        assert all("k-123456" not in str(r.headers) for r in fake.requests)

    unreachable = make_settings(
        tmp_path,
        database_url=database_url,
        anthropic_api_key="k-123456",
        anthropic_base_url=unused_tcp_url(),
    )
    response = await _get(unreachable, "/health/ai")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["ai_service"] == "unreachable"
    ready = await _get(unreachable, "/health/ready")
    assert ready.status_code == 200
    assert ready.json()["ai_service"] == "degraded"


async def test_ready_is_503_while_migrations_are_pending(
    tmp_path: Path, pg_server_url: str
) -> None:
    # Sync helpers run their own event loop: keep them off this test's loop.
    url = await asyncio.to_thread(postgres.create_database, pg_server_url)
    try:
        settings = make_settings(tmp_path, database_url=url)
        response = await _get(settings, "/health/ready")
        assert response.status_code == 503
        assert response.json()["status"] == "not ready"
        assert response.json()["database"] == "ok"
        assert response.json()["migrations"] == "pending"

        await asyncio.to_thread(upgrade_to_head, url)
        response = await _get(settings, "/health/ready")
        assert response.status_code == 200
    finally:
        await asyncio.to_thread(postgres.drop_database, pg_server_url, url)


async def test_database_probe_unreachable_hides_secrets(tmp_path: Path) -> None:
    password = "hunter2-very-secret"
    settings = make_settings(
        tmp_path, database_url=f"postgresql://orchestrator:{password}@127.0.0.1:1/none"
    )
    db_response = await _get(settings, "/health/db")
    assert db_response.status_code == 503
    body = db_response.json()
    assert body["status"] == "unhealthy"
    assert body["database"] == "disconnected"
    assert body["error"]
    assert password not in db_response.text

    ready = await _get(settings, "/health/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready"
    assert ready.json()["database"] == "fail"


async def test_metrics_exposes_every_contract_metric(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    await client.get("/no/such/page")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in METRIC_NAMES:
        assert re.search(rf"^# TYPE {name} ", text, re.MULTILINE), name
    # Labelled by route template, never by raw path.
    assert 'route="/health",status="200"' in text
    assert 'route="unmatched",status="404"' in text
    assert "/no/such/page" not in text


async def test_the_docs_and_the_schema_are_counted_under_their_own_routes(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs")).status_code == 200
    await client.get("/api/v1/projects/not-a-uuid")  # a path with a parameter in it
    text = (await client.get("/metrics")).text
    assert 'route="/openapi.json",status="200"' in text
    assert 'route="/docs",status="200"' in text
    assert "not-a-uuid" not in text


async def test_request_id_is_echoed_or_created(client: httpx.AsyncClient) -> None:
    given = await client.get("/health", headers={"X-Request-ID": "abc12345-trace"})
    assert given.headers["x-request-id"] == "abc12345-trace"
    made = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
