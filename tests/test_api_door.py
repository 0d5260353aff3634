"""/api/v1's door (issue 12): the key before the body, bounded bodies and JSON, failed
authentication rate-limited and audited in bounded lines, 503 when the database is away
or its schema was rebuilt under the running service, and recovery from the rebuild."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from project_orchestrator.api.guard import AUDITED_REFUSALS_PER_WINDOW
from project_orchestrator.app import create_app
from project_orchestrator.db.migrations import upgrade_to_head
from project_orchestrator.db.raw import asyncpg_dsn
from tests.conftest import make_settings
from tests.support import postgres
from tests.support.asgi import Exchange, Message, header_lines, http_scope
from tests.support.github_payloads import issue_comment, signed
from tests.support.records import audit_entries
from tests.support.webhooks import SECRET

KEY = "api-key-for-the-door-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
DECIDE = f"/api/v1/projects/{uuid.uuid4()}/gates/{uuid.uuid4()}/approve"


@asynccontextmanager
async def _api(
    tmp_path: Path, database_url: str, client_ip: str = "198.51.100.7", **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_key": KEY,
        "github_webhook_secret": SECRET,
    }
    values.update(overrides)
    app = create_app(make_settings(tmp_path, **values))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, manager.app


async def _call(app: Any, headers: dict[str, str], messages: list[Message]) -> tuple[int, int]:
    """(status, how many times the body was asked for)"""
    exchange = await Exchange(messages).run(
        app, http_scope(DECIDE, header_lines(headers), client=("198.51.100.7", 40000))
    )
    [status] = exchange.statuses
    return status, exchange.asked


async def test_the_key_is_checked_before_a_byte_of_the_body_is_read(
    tmp_path: Path, database_url: str
) -> None:
    body = {"type": "http.request", "body": b"x" * 1000, "more_body": True}
    async with _api(tmp_path, database_url) as (_, app):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            status, asked = await _call(app, headers, [body])
            assert (status, asked) == (401, 0)


async def test_bodies_over_one_mib_are_413_streamed_or_declared(
    tmp_path: Path, database_url: str
) -> None:
    chunk = b"x" * (256 * 1024)
    async with _api(tmp_path, database_url) as (client, app):
        declared = await client.post(
            DECIDE, content=b"{}", headers={**AUTH, "Content-Length": str(2**20 + 1)}
        )
        streamed = [{"type": "http.request", "body": chunk, "more_body": True}] * 5
        status, _ = await _call(app, AUTH, streamed)
        exactly = await client.post(
            DECIDE,
            content=b" " * (2**20 - 2) + b"{}",
            headers={**AUTH, "Content-Type": "application/json"},
        )
    assert declared.status_code == 413
    assert declared.json()["error"] == "too_large"
    assert status == 413
    # A body of exactly 1 MiB reaches the route (which finds no such gate).
    assert exactly.status_code == 422  # the route ran: no decided_by


async def test_json_nested_too_deep_or_not_json_is_400_before_the_route(
    tmp_path: Path, database_url: str
) -> None:
    deep = b'{"decided_by": "ada", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    headers = {**AUTH, "Content-Type": "application/json"}
    async with _api(tmp_path, database_url) as (client, _):
        too_deep = await client.post(DECIDE, content=deep, headers=headers)
        undecodable = await client.post(DECIDE, content=b"\x80{", headers=headers)
        shallow = await client.post(DECIDE, content=b'{"decided_by": "ada"}', headers=headers)
    assert too_deep.status_code == 400
    assert too_deep.json()["error"] == "too_deep"
    assert undecodable.status_code == 400
    assert undecodable.json()["error"] == "bad_json"
    assert shallow.status_code == 404  # the route ran: there is no such gate


async def test_a_client_that_hangs_up_mid_body_never_reaches_the_route(
    tmp_path: Path, database_url: str
) -> None:
    parts: list[Message] = [
        {"type": "http.request", "body": b'{"decided_by": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    async with _api(tmp_path, database_url) as (_, app):
        status, _ = await _call(app, AUTH, parts)
    assert status == 499


async def test_failed_authentication_is_rate_limited_per_client(
    tmp_path: Path, database_url: str
) -> None:
    async with _api(tmp_path, database_url) as (client, _):
        wrong = [
            (
                await client.get("/api/v1/projects", headers={"Authorization": "Bearer no"})
            ).status_code
            for _ in range(10)
        ]
        locked = await client.get("/api/v1/projects", headers={"Authorization": "Bearer no"})
        # Even the right key waits: a guesser must not learn its guess was right.
        right_key = await client.get("/api/v1/projects", headers=AUTH)
    async with _api(tmp_path, database_url, client_ip="198.51.100.8") as (other, _):
        elsewhere = await other.get("/api/v1/projects", headers=AUTH)
    assert wrong == [401] * 10
    assert locked.status_code == right_key.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert elsewhere.status_code == 200


async def test_a_flood_of_bad_keys_writes_a_bounded_number_of_audit_lines(
    tmp_path: Path, database_url: str
) -> None:
    flood = 300
    async with _api(tmp_path, database_url, trusted_proxies="10.0.0.0/8", client_ip="10.0.0.2") as (
        client,
        _,
    ):
        for n in range(flood):
            forwarded = {"X-Forwarded-For": f"203.0.{n // 250}.{n % 250 + 1}"}
            response = await client.get(
                "/api/v1/events", headers={"Authorization": f"Bearer guess-{n}", **forwarded}
            )
            assert response.status_code == 401
    entries = audit_entries(tmp_path)
    single = [e for e in entries if not e["details"].get("aggregated")]
    summary = [e for e in entries if e["details"].get("aggregated")]
    assert len(single) == AUDITED_REFUSALS_PER_WINDOW
    assert single[0]["ip_address"] == "203.0.0.1"  # the client behind the trusted proxy
    assert [e["action"] for e in summary] == ["unauthorized_access"]
    assert summary[0]["details"]["refusals"] == flood - AUDITED_REFUSALS_PER_WINDOW
    assert summary[0]["details"]["clients"] == flood - AUDITED_REFUSALS_PER_WINDOW
    assert all(f"guess-{n}" not in str(entries) for n in range(flood))


@pytest.mark.slow
async def test_the_api_answers_503_while_the_database_is_down(
    tmp_path: Path, private_postgres: postgres.RestartablePostgres
) -> None:
    await asyncio.to_thread(upgrade_to_head, private_postgres.url)
    async with _api(tmp_path, private_postgres.url) as (client, _):
        assert (await client.get("/api/v1/projects", headers=AUTH)).status_code == 200
        private_postgres.stop()
        down = [
            await client.get(path, headers=AUTH)
            for path in ("/api/v1/projects", "/api/v1/events", f"/api/v1/projects/{uuid.uuid4()}")
        ]
        private_postgres.start()
        back = await client.get("/api/v1/projects", headers=AUTH)
    assert [r.status_code for r in down] == [503, 503, 503]
    assert down[0].json()["error"] == "unavailable"
    assert int(down[0].headers["Retry-After"]) > 0
    assert back.status_code == 200


@pytest.fixture
def own_database(pg_server_url: str) -> Iterator[str]:
    """A migrated database of this test's own, since the test rebuilds its schema."""
    url = postgres.create_database(pg_server_url, prefix="orchestrator_rebuild")
    upgrade_to_head(url)
    yield url
    postgres.drop_database(pg_server_url, url)


async def _rebuild_schema(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    await asyncio.to_thread(upgrade_to_head, url)


async def _traffic(client: httpx.AsyncClient) -> list[int]:
    """A webhook and the API routes that read enum-typed columns."""
    body, headers = signed(SECRET, "issue_comment", issue_comment("hello"))
    codes = [(await client.post("/webhooks/github", content=body, headers=headers)).status_code]
    for path in ("/api/v1/projects", "/api/v1/events?failed=true"):
        codes.append((await client.get(path, headers=AUTH)).status_code)
    return codes


async def test_a_schema_rebuilt_under_the_service_is_noticed_and_recovered_from(
    tmp_path: Path, own_database: str
) -> None:
    async with _api(tmp_path, own_database) as (client, _):
        assert await _traffic(client) == [202, 200, 200]
        assert (await client.get("/health/ready")).status_code == 200
        await _rebuild_schema(own_database)
        noticed = await client.get("/health/ready")
        after = await _traffic(client)
        ready = await client.get("/health/ready")
    assert noticed.status_code == 503
    assert noticed.json()["status"] == "not ready"
    assert noticed.json()["schema"] == "rebuilt; reconnecting"
    assert after == [202, 200, 200]
    assert ready.status_code == 200


async def test_traffic_that_meets_a_rebuilt_schema_first_gets_503_then_recovers(
    tmp_path: Path, own_database: str
) -> None:
    async with _api(tmp_path, own_database) as (client, _):
        assert await _traffic(client) == [202, 200, 200]
        await _rebuild_schema(own_database)
        first = await _traffic(client)
        second = await _traffic(client)
    assert all(code in (200, 202, 503) for code in first), first
    assert second == [202, 200, 200]
