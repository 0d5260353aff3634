"""POST /webhooks/telegram through the real app: order of checks, codes, store-then-ack."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from project_orchestrator.app import create_app
from project_orchestrator.db.engine import Database
from tests.conftest import make_settings
from tests.support.fake_telegram import callback_update, text_update
from tests.support.records import audit_entries, event_and_job_counts

SECRET = "tg-webhook-secret_0123456789"
URL = "/webhooks/telegram"
HEADER = "X-Telegram-Bot-Api-Secret-Token"


@asynccontextmanager
async def webhook_client(
    tmp_path: Path, database_url: str, client_ip: str = "127.0.0.1", **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    # TELEGRAM_MODE=webhook: no poller, whatever the token.
    values: dict[str, Any] = {
        "database_url": database_url,
        "telegram_webhook_secret": SECRET,
        "TELEGRAM_MODE": "webhook",
    }
    values.update(overrides)
    app = create_app(make_settings(tmp_path, **values))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


def _post(
    client: httpx.AsyncClient, body: bytes, secret: str | None = SECRET
) -> Any:  # the coroutine of client.post
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[HEADER] = secret
    return client.post(URL, content=body, headers=headers)


async def test_accepted_then_duplicate(tmp_path: Path, database_url: str, db: Database) -> None:
    body = orjson.dumps(text_update(1001, chat_id=555, user_id=777, text="/status"))
    async with webhook_client(tmp_path, database_url) as client:
        first = await _post(client, body)
        again = await _post(client, body)
        metrics = (await client.get("/metrics")).text
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "accepted", "update_id": 1001}
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "update_id": 1001}
    assert "x-ratelimit-limit" in first.headers
    assert 'method="POST",route="/webhooks/telegram",status="200"' in metrics
    assert 'webhook_events_total{event="message",outcome="duplicate",source="telegram"}' in metrics
    assert await event_and_job_counts(db) == (1, 1)

    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT e.id, e.source::text AS source, e.external_id, e.event_type, "
                    "e.serial_key, e.status, e.payload::text AS body, e.headers, "
                    "e.correlation_id, e.client_ip, convert_from(j.payload, 'UTF8') AS job, "
                    "j.entrypoint FROM inbound_events e, pgqueuer j"
                )
            )
        ).one()
    assert (row.source, row.external_id, row.event_type) == ("telegram", "1001", "message")
    assert row.serial_key == "telegram:555"
    assert row.status == "pending"
    assert row.body.encode() == body  # kept exactly as received
    assert row.entrypoint == "handle_event"
    assert orjson.loads(row.job) == {"event_id": row.id, "correlation_id": row.correlation_id}
    assert row.correlation_id == first.headers["x-request-id"]
    assert row.client_ip == "127.0.0.1"
    # The secret proved the sender; it has no business in the database.
    assert HEADER.lower() not in row.headers
    assert SECRET not in json.dumps(row.headers)
    assert row.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("update", "event_type", "serial_key"),
    [
        (callback_update(7, 555, 777, "approve", message_id=3), "callback_query", "telegram:555"),
        (
            {"update_id": 8, "callback_query": {"id": "q", "from": {"id": 777}, "data": "x"}},
            "callback_query",
            "telegram:user:777",
        ),
        (
            {"update_id": 9, "edited_message": {"chat": {"id": -100123}, "text": "x"}},
            "edited_message",
            "telegram:-100123",
        ),
        (
            {"update_id": 10, "my_chat_member": {"chat": {"id": 42}, "from": {"id": 1}}},
            "my_chat_member",
            "telegram:42",
        ),
        (
            {"update_id": 11, "inline_query": {"id": "q", "query": "x"}},
            "inline_query",
            "telegram:-",
        ),
        ({"update_id": 12}, "unknown", "telegram:-"),
    ],
)
async def test_event_type_and_serial_key(
    tmp_path: Path,
    database_url: str,
    db: Database,
    update: dict[str, Any],
    event_type: str,
    serial_key: str,
) -> None:
    async with webhook_client(tmp_path, database_url) as client:
        response = await _post(client, orjson.dumps(update))
    assert response.json() == {"status": "accepted", "update_id": update["update_id"]}
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT event_type, serial_key FROM inbound_events"))).one()
    assert (row.event_type, row.serial_key) == (event_type, serial_key)


async def test_wrong_or_missing_secret_is_403_and_audited(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    body = orjson.dumps(text_update(1, 555, 777, "hi"))
    wrong_secret = "someone-elses-secret"
    async with webhook_client(tmp_path, database_url) as client:
        wrong = await _post(client, body, secret=wrong_secret)
        missing = await _post(client, body, secret=None)
        near_miss = await _post(client, body, secret=SECRET + "x")
        metrics = (await client.get("/metrics")).text
    assert wrong.status_code == missing.status_code == near_miss.status_code == 403
    assert wrong.json()["error"] == "bad_secret"
    assert await event_and_job_counts(db) == (0, 0)
    audit = audit_entries(tmp_path)
    assert [a["action"] for a in audit] == ["webhook_signature_failed"] * 3
    assert audit[0]["result"] == "denied"
    assert audit[0]["ip_address"] == "127.0.0.1"
    assert audit[0]["details"] == {"source": "telegram", "reason": "bad_secret"}
    log_text = (tmp_path / "audit.log").read_text()
    assert SECRET not in log_text
    assert wrong_secret not in log_text
    assert 'webhook_events_total{event="unknown",outcome="bad_secret",source="telegram"}' in metrics


async def test_no_secret_configured_refuses_everything(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    body = orjson.dumps(text_update(1, 555, 777, "hi"))
    async with webhook_client(tmp_path, database_url, telegram_webhook_secret=None) as client:
        with_header = await _post(client, body, secret="anything")
        without = await _post(client, body, secret=None)
        empty = await _post(client, body, secret="")
    for response in (with_header, without, empty):
        assert response.status_code == 403
        assert response.json()["error"] == "not_configured"
        assert "TELEGRAM_WEBHOOK_SECRET" in response.json()["message"]
    assert await event_and_job_counts(db) == (0, 0)
    assert {a["action"] for a in audit_entries(tmp_path)} == {"webhook_signature_failed"}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"{}",
        b'{"message": {"text": "hi"}}',
        b'{"update_id": "12"}',
        b'{"update_id": 1.5}',
        b'{"update_id": true}',
        b"\xff\xfe",
    ],
)
async def test_malformed_update_is_400(
    tmp_path: Path, database_url: str, db: Database, body: bytes
) -> None:
    async with webhook_client(tmp_path, database_url) as client:
        response = await _post(client, body)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_update"
    assert await event_and_job_counts(db) == (0, 0)
    [entry] = audit_entries(tmp_path)
    assert entry["action"] == "unauthorized_access"
    assert entry["details"]["reason"] == "bad_update"


async def test_secret_is_checked_before_the_body_is_parsed(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    async with webhook_client(tmp_path, database_url) as client:
        response = await _post(client, b"{not json", secret="wrong")
    assert response.status_code == 403


async def test_oversized_body_is_413(tmp_path: Path, database_url: str, db: Database) -> None:
    body = orjson.dumps(text_update(1, 555, 777, "x" * (1024 * 1024)))
    async with webhook_client(tmp_path, database_url) as client:
        response = await _post(client, body)
        # Just under the limit is fine.
        small = orjson.dumps(text_update(2, 555, 777, "x" * (1024 * 1024 - 400)))
        assert len(small) <= 1024 * 1024
        accepted = await _post(client, small)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert accepted.status_code == 200
    assert await event_and_job_counts(db) == (1, 1)


async def test_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    async with webhook_client(tmp_path, database_url, default_rate_limit="2/minute") as client:
        codes = [
            await _post(client, orjson.dumps(text_update(n, 555, 777, "hi"))) for n in (1, 2, 3)
        ]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert int(codes[2].headers["Retry-After"]) > 0
    assert codes[2].json()["error"] == "rate_limited"
    assert audit_entries(tmp_path)[-1]["action"] == "rate_limit_exceeded"
    assert await event_and_job_counts(db) == (2, 2)


async def test_database_down_is_503(tmp_path: Path) -> None:
    body = orjson.dumps(text_update(1, 555, 777, "hi"))
    async with webhook_client(
        tmp_path, "postgresql+asyncpg://nobody:pw@127.0.0.1:1/none"
    ) as client:
        response = await _post(client, body)
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert "Retry-After" in response.headers


async def test_route_is_documented(tmp_path: Path, database_url: str) -> None:
    async with webhook_client(tmp_path, database_url) as client:
        spec = (await client.get("/openapi.json")).json()
    responses = spec["paths"][URL]["post"]["responses"]
    assert {"200", "400", "403", "413", "429", "503"} <= set(responses)
