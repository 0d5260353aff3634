"""Inputs that once poisoned the queue or slipped past ingress (issue 12): each is refused
at the door with a clear 400, or, already stored, ends `failed`/`ignored` without blocking
the events after it, and the API and CLI show it without a 500."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database
from project_orchestrator.events.cli import list_events, replay
from project_orchestrator.events.models import EventStatus, InboundEvent
from project_orchestrator.jsonlimits import MAX_JSON_DEPTH, nesting_depth, too_deep
from project_orchestrator.logging import configure_logging
from tests.conftest import make_settings
from tests.support.asgi import Exchange, Message, header_lines, http_scope
from tests.support.fake_github import FakeGitHub
from tests.support.github_payloads import issue_comment, repository, signed, user
from tests.support.records import audit_entries, event_and_job_counts
from tests.support.webhooks import SECRET, URL, webhook_client
from tests.support.worker import work_until_idle

TELEGRAM_SECRET = "telegram-secret-0123456789"
TELEGRAM_URL = "/webhooks/telegram"


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = {"d": value} if level % 2 else [value]
    return value


def _deep_json(depth: int) -> bytes:
    # orjson refuses to write what is this deep, so the body is written by hand.
    return b'{"zen": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


def test_depth_is_counted_in_levels_and_the_bracket_count_shortcut_is_sound() -> None:
    assert nesting_depth("x") == 0
    assert nesting_depth({"a": [1, {"b": None}]}) == 3
    assert nesting_depth(_nested(MAX_JSON_DEPTH + 1)) == MAX_JSON_DEPTH + 1
    # Brackets inside strings only raise the count: many of them, shallow document.
    shallow = {"text": "[[[[{{{{" * 40}
    assert not too_deep(orjson.dumps(shallow), shallow)
    deep = _nested(MAX_JSON_DEPTH + 1)
    assert too_deep(orjson.dumps(deep), deep)
    at_limit = _nested(MAX_JSON_DEPTH)
    assert not too_deep(orjson.dumps(at_limit), at_limit)


async def test_github_refuses_json_nested_too_deep(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    body = _deep_json(1000)
    _, headers = signed(SECRET, "ping", {})
    from project_orchestrator.ingress.github.signature import sign

    headers["X-Hub-Signature-256"] = sign(SECRET.encode(), body)
    async with webhook_client(tmp_path, database_url) as client:
        deep = await client.post(URL, content=body, headers=headers)
        fine_body, fine_headers = signed(SECRET, "ping", {"zen": _nested(MAX_JSON_DEPTH - 1)})
        fine = await client.post(URL, content=fine_body, headers=fine_headers)
    assert deep.status_code == 400
    assert deep.json()["error"] == "too_deep"
    assert str(MAX_JSON_DEPTH) in deep.json()["message"]
    assert fine.status_code == 202
    assert await event_and_job_counts(db) == (1, 1)
    assert audit_entries(tmp_path)[0]["details"]["reason"] == "too_deep"


async def test_telegram_refuses_json_nested_too_deep_and_checks_the_secret_first(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    deep = b'{"update_id": 1, "message": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    good = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    overrides = {"telegram_webhook_secret": TELEGRAM_SECRET, "TELEGRAM_MODE": "webhook"}
    async with webhook_client(tmp_path, database_url, **overrides) as client:
        refused = await client.post(TELEGRAM_URL, content=deep, headers=good)
        # Over the size limit but without the secret: the secret is what it is told.
        unsigned = await client.post(
            TELEGRAM_URL,
            content=b"x" * (2 * 1024 * 1024),
            headers={"Content-Type": "application/json"},
        )
    assert refused.status_code == 400
    assert refused.json()["error"] == "bad_update"
    assert unsigned.status_code == 403
    assert await event_and_job_counts(db) == (0, 0)


@pytest.mark.parametrize(
    "delivery", ["caf\u00e9-1234".encode(), "d\u00e9livr\u00e9".encode("latin-1"), b"tab\there"]
)
async def test_a_delivery_id_outside_printable_ascii_is_refused(
    tmp_path: Path, database_url: str, db: Database, delivery: bytes
) -> None:
    body, headers = signed(SECRET, "ping", {"zen": "hi"})
    # As bytes: httpx would encode text as ASCII, and headers travel as Latin-1.
    raw = [
        (k.encode(), delivery if k == "X-GitHub-Delivery" else v.encode())
        for k, v in headers.items()
    ]
    async with webhook_client(tmp_path, database_url) as client:
        response = await client.post(URL, content=body, headers=raw)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_headers"
    assert await event_and_job_counts(db) == (0, 0)


@pytest.mark.parametrize(
    "full_name",
    ["acme/wid\x00gets", "acme/" + "w" * 101, "a" * 40 + "/widgets", "acme", "acme/x/y", "/x"],
)
async def test_a_repository_name_github_would_not_allow_is_refused_and_audited(
    tmp_path: Path, database_url: str, db: Database, full_name: str
) -> None:
    payload = issue_comment("@orchestrator /help")
    payload["repository"] = {**repository(), "full_name": full_name}
    body, headers = signed(SECRET, "issue_comment", payload)
    async with webhook_client(tmp_path, database_url) as client:
        response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_repository"
    [entry] = audit_entries(tmp_path)
    assert entry["result"] == "denied"
    assert entry["details"]["reason"] == "bad_repository"
    assert await event_and_job_counts(db) == (0, 0)


async def test_the_longest_names_github_allows_are_accepted(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    payload = issue_comment("hello")
    payload["repository"] = {**repository(), "full_name": "o" * 39 + "/" + "n" * 100}
    body, headers = signed(SECRET, "issue_comment", payload)
    async with webhook_client(tmp_path, database_url) as client:
        assert (await client.post(URL, content=body, headers=headers)).status_code == 202


async def test_several_forwarded_for_lines_are_one_list(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    """A spoofed first line and the proxy's own second line: the client is the rightmost
    untrusted hop across both, so the spoofed GitHub address gets nobody through."""
    body, headers = signed(SECRET, "ping", {"zen": "hi"})
    filtering = {
        "WEBHOOK_IP_FILTERING_ENABLED": True,
        "github_webhook_ips": "140.82.112.0/20",
        "trusted_proxies": "10.0.0.0/8",
    }
    async with webhook_client(tmp_path, database_url, client_ip="10.0.0.2", **filtering) as c:
        spoofed = await c.post(
            URL,
            content=body,
            headers=[
                *headers.items(),
                ("X-Forwarded-For", "140.82.112.5"),
                ("X-Forwarded-For", "203.0.113.9"),
            ],
        )
    assert spoofed.status_code == 403
    [entry] = audit_entries(tmp_path)
    assert entry["action"] == "webhook_ip_denied"
    assert entry["ip_address"] == "203.0.113.9"
    assert await event_and_job_counts(db) == (0, 0)


async def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", json_output=True, stream=stream)
    body, headers = signed(SECRET, "ping", {"zen": "x" * 10_000})
    try:
        async with webhook_client(tmp_path, database_url) as client:
            app = client._transport.app  # type: ignore[attr-defined]
            parts: list[Message] = [
                {"type": "http.request", "body": body[:5000], "more_body": True},
                {"type": "http.disconnect"},
            ]
            exchange = await Exchange(parts).run(app, http_scope(URL, header_lines(headers)))
            metrics = (await client.get("/metrics")).text
    finally:
        configure_logging(level="INFO", json_output=False)
    assert exchange.statuses == [499]
    records = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    events = [r["event"] for r in records]
    assert "webhook.client_disconnected" in events
    assert "webhook.unhandled_error" not in events
    assert not [r for r in records if r.get("level") in ("error", "critical")]
    assert 'outcome="client_disconnected"' in metrics
    assert await event_and_job_counts(db) == (0, 0)


async def _store_raw(db: Database, repo: str, delivery: str, payload_json: str) -> int:
    """An event as an older version stored it, bypassing today's ingress checks."""
    async with db.engine.begin() as conn:
        event_id = (
            await conn.execute(
                text(
                    "INSERT INTO inbound_events (source, external_id, event_type, serial_key,"
                    " headers, payload) VALUES ('github', :d, 'issue_comment', :k, '{}',"
                    " CAST(:p AS json)) RETURNING id"
                ),
                {"d": delivery, "k": f"github:{repo}", "p": payload_json},
            )
        ).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO pgqueuer (priority, entrypoint, payload, status) VALUES "
                "(0, 'handle_event', CAST(:j AS bytea), 'queued')"
            ),
            {"j": json.dumps({"event_id": event_id, "correlation_id": None}).encode()},
        )
    return int(event_id)


def _worker_settings(tmp_path: Path, database_url: str, github: FakeGitHub) -> Settings:
    return make_settings(
        tmp_path,
        database_url=database_url,
        github_webhook_secret=SECRET,
        github_access_token="ghp-test-token-123456",
        github_api_url=github.base_url,
    )


async def test_a_stored_event_nested_too_deep_fails_and_blocks_nothing(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    settings = _worker_settings(tmp_path, database_url, github)
    poison = await _store_raw(db, "acme/widgets", "poison-1", _deep_json(1000).decode())
    after = await _store_raw(
        db, "acme/widgets", "after-1", orjson.dumps(issue_comment("@orchestrator /help")).decode()
    )
    await work_until_idle(settings, db, limit_seconds=60)

    async with db.sessionmaker() as session:
        failed = await session.get(InboundEvent, poison)
        handled = await session.get(InboundEvent, after)
    assert failed is not None
    assert handled is not None
    assert failed.status is EventStatus.FAILED
    assert failed.last_error
    assert "RecursionError" in failed.last_error
    assert handled.status is EventStatus.HANDLED
    assert len(github.comments("acme/widgets", 7)) == 1

    listed = await list_events(database_url, failed_only=True, limit=10)
    assert len(listed) == 1
    assert listed[0].split()[0] == str(poison)
    assert "queued again" in await replay(database_url, poison)

    from tests.support.webhooks import webhook_client as api_client

    auth = {"Authorization": "Bearer api-key-0123456789abcdef"}
    async with api_client(tmp_path, database_url, api_key="api-key-0123456789abcdef") as client:
        listing = await client.get("/api/v1/events", headers=auth)
        detail = await client.get(f"/api/v1/events/{poison}", headers=auth)
        again = await client.post(f"/api/v1/events/{poison}/replay", headers=auth)
    assert listing.status_code == 200
    assert {e["id"] for e in listing.json()} == {poison, after}
    assert detail.status_code == 200
    assert isinstance(detail.json()["payload"], str)
    assert detail.json()["payload"].startswith('{"zen": [[[')
    assert again.status_code == 202


async def test_a_signed_issues_event_without_an_issue_is_ignored_not_retried(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub, caplog: Any
) -> None:
    settings = _worker_settings(tmp_path, database_url, github)
    broken = [
        ("issues", {"action": "opened", "repository": repository(), "sender": user("alice")}),
        ("issue_comment", {**issue_comment("@orchestrator /help"), "issue": {"number": "7"}}),
        ("issue_comment", {**issue_comment("@orchestrator /help"), "comment": "text"}),
    ]
    async with webhook_client(tmp_path, database_url) as client:
        for event, payload in broken:
            body, headers = signed(SECRET, event, payload)
            assert (await client.post(URL, content=body, headers=headers)).status_code == 202
    with caplog.at_level(logging.WARNING):
        await work_until_idle(settings, db)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT status, attempts FROM inbound_events"))).all()
    assert [(r.status, r.attempts) for r in rows] == [("ignored", 1)] * 3
    assert github.comments("acme/widgets", 7) == []
    assert caplog.text.count("github.event_malformed") == 3
    assert "`issue` is missing" in caplog.text
