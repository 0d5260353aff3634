"""/api/v1/events behind the API key: list, inspect, replay."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from project_orchestrator.db.engine import Database
from tests.support.github_payloads import issue_comment, signed
from tests.support.webhooks import SECRET, URL, webhook_client

KEY = "api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def test_api_needs_the_key(tmp_path: Path, database_url: str, db: Database) -> None:
    async with webhook_client(tmp_path, database_url, api_key=KEY) as client:
        assert (await client.get("/api/v1/events")).status_code == 401
        wrong = await client.get("/api/v1/events", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert KEY not in wrong.text
    async with webhook_client(tmp_path, database_url) as client:
        # No API_KEY configured: no API, rather than an open one.
        assert (await client.get("/api/v1/events", headers=AUTH)).status_code == 401
    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert {a["action"] for a in audit} == {"unauthorized_access"}
    assert KEY not in (tmp_path / "audit.log").read_text()


async def test_list_get_and_replay(tmp_path: Path, database_url: str, db: Database) -> None:
    body, headers = signed(SECRET, "issue_comment", issue_comment("@orchestrator /help"))
    async with webhook_client(tmp_path, database_url, api_key=KEY) as client:
        assert (await client.post(URL, content=body, headers=headers)).status_code == 202
        async with db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE inbound_events SET status = 'failed', attempts = 6, last_error = 'x'")
            )
        [event] = (await client.get("/api/v1/events?failed=true", headers=AUTH)).json()
        assert event["external_id"] == headers["X-GitHub-Delivery"]
        detail = (await client.get(f"/api/v1/events/{event['id']}", headers=AUTH)).json()
        assert detail["payload"]["comment"]["body"] == "@orchestrator /help"

        replayed = await client.post(f"/api/v1/events/{event['id']}/replay", headers=AUTH)
        assert replayed.status_code == 202
        assert replayed.json() == {"status": "queued", "event_id": event["id"]}
        assert (await client.get("/api/v1/events?failed=true", headers=AUTH)).json() == []
        missing = await client.post("/api/v1/events/999999/replay", headers=AUTH)
        assert missing.status_code == 404

    async with db.engine.connect() as conn:
        status, attempts = (
            await conn.execute(text("SELECT status, attempts FROM inbound_events"))
        ).one()
        jobs = (await conn.execute(text("SELECT count(*) FROM pgqueuer"))).scalar_one()
    assert (status, attempts) == ("pending", 0)
    assert jobs == 2  # the original job and the replay's
    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert audit[-1]["action"] == "event_replayed"
    assert audit[-1]["user_id"] == "api"
