"""POST /webhooks/github through the real app: order of checks, codes, store-then-ack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from project_orchestrator.db.engine import Database
from tests.support.github_payloads import issue_comment, signed
from tests.support.records import audit_entries, event_and_job_counts
from tests.support.redis_server import URI as REDIS_URI
from tests.support.redis_server import clear_of_a_window_edge, own_address, require_redis
from tests.support.webhooks import SECRET, URL, webhook_client


async def test_accepted_then_duplicate(tmp_path: Path, database_url: str, db: Database) -> None:
    body, headers = signed(SECRET, "issue_comment", issue_comment("@orchestrator /status"))
    async with webhook_client(tmp_path, database_url) as client:
        first = await client.post(URL, content=body, headers=headers)
        assert first.status_code == 202
        assert first.json() == {"status": "accepted", "delivery": headers["X-GitHub-Delivery"]}
        again = await client.post(URL, content=body, headers=headers)
        assert again.status_code == 200
        assert again.json()["status"] == "duplicate"
        metrics = (await client.get("/metrics")).text
    # The fast path is measured under its route template like any other route.
    assert 'method="POST",route="/webhooks/github",status="202"' in metrics
    assert "X-RateLimit-Limit".lower() in first.headers
    assert await event_and_job_counts(db) == (1, 1)

    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT e.id, e.event_type, e.serial_key, e.status, e.payload::text AS body, "
                    "e.headers, e.correlation_id, convert_from(j.payload, 'UTF8') AS job "
                    "FROM inbound_events e, pgqueuer j"
                )
            )
        ).one()
    assert row.event_type == "issue_comment"
    assert row.serial_key == "github:acme/widgets"
    assert row.status == "pending"
    # The exact signed bytes are kept; the signature header is not.
    assert row.body.encode() == body
    assert "X-Hub-Signature-256".lower() not in row.headers
    assert orjson.loads(row.job) == {"event_id": row.id, "correlation_id": row.correlation_id}
    assert row.correlation_id == first.headers["x-request-id"]


async def test_signature_failures_are_refused_and_audited(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    body, headers = signed("someone-elses-secret", "issue_comment", issue_comment("hi"))
    async with webhook_client(tmp_path, database_url) as client:
        wrong = await client.post(URL, content=body, headers=headers)
        missing = await client.post(
            URL, content=body, headers={k: v for k, v in headers.items() if "Signature" not in k}
        )
        metrics = (await client.get("/metrics")).text
    assert wrong.status_code == missing.status_code == 403
    assert await event_and_job_counts(db) == (0, 0)
    audit = audit_entries(tmp_path)
    assert [a["action"] for a in audit] == ["webhook_signature_failed"] * 2
    assert audit[0]["result"] == "denied"
    assert audit[0]["ip_address"] == "127.0.0.1"
    assert SECRET not in (tmp_path / "audit.log").read_text()
    assert headers["X-Hub-Signature-256"] not in (tmp_path / "audit.log").read_text()
    assert (
        'webhook_events_total{event="issue_comment",outcome="bad_signature",source="github"}'
        in metrics
    )


async def test_rotation_accepts_either_secret(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    async with webhook_client(
        tmp_path, database_url, github_webhook_secret=f"new-secret-abcdef,{SECRET}"
    ) as client:
        old_body, old_headers = signed(SECRET, "ping", {"zen": "old"})
        new_body, new_headers = signed("new-secret-abcdef", "ping", {"zen": "new"})
        assert (await client.post(URL, content=old_body, headers=old_headers)).status_code == 202
        assert (await client.post(URL, content=new_body, headers=new_headers)).status_code == 202


async def test_no_secret_configured_refuses_everything(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    body, headers = signed(SECRET, "ping", {"zen": "hi"})
    async with webhook_client(tmp_path, database_url, github_webhook_secret="") as client:
        response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 503
    assert await event_and_job_counts(db) == (0, 0)


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (
            lambda b, h: (b, {**h, "Content-Type": "application/x-www-form-urlencoded"}),
            415,
            "unsupported_media_type",
        ),
        (
            lambda b, h: (b, {k: v for k, v in h.items() if k != "X-GitHub-Event"}),
            400,
            "missing_headers",
        ),
        (
            lambda b, h: (b, {k: v for k, v in h.items() if k != "X-GitHub-Delivery"}),
            400,
            "missing_headers",
        ),
    ],
)
async def test_malformed_requests(
    tmp_path: Path, database_url: str, db: Database, mutate: Any, status: int, reason: str
) -> None:
    body, headers = mutate(*signed(SECRET, "ping", {"zen": "hi"}))
    async with webhook_client(tmp_path, database_url) as client:
        response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == reason
    assert await event_and_job_counts(db) == (0, 0)


async def test_body_must_be_a_json_object(tmp_path: Path, database_url: str, db: Database) -> None:
    async with webhook_client(tmp_path, database_url) as client:
        for payload in ([1, 2, 3], "just a string"):
            body, headers = signed(SECRET, "ping", payload)
            assert (await client.post(URL, content=body, headers=headers)).status_code == 400
        # Signed garbage is still garbage, and checked after the signature.
        garbage = b"{not json"
        _, headers = signed(SECRET, "ping", {})
        from project_orchestrator.ingress.github.signature import sign

        headers["X-Hub-Signature-256"] = sign(SECRET.encode(), garbage)
        assert (await client.post(URL, content=garbage, headers=headers)).status_code == 400
    assert await event_and_job_counts(db) == (0, 0)


async def test_oversized_body_is_413(tmp_path: Path, database_url: str, db: Database) -> None:
    body, headers = signed(SECRET, "ping", {"zen": "x" * (25 * 1024 * 1024)})
    async with webhook_client(tmp_path, database_url) as client:
        response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 413


async def test_ip_filter_comes_first_and_proxies_are_believed_only_when_trusted(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    body, headers = signed(SECRET, "ping", {"zen": "hi"})
    filtering = {"WEBHOOK_IP_FILTERING_ENABLED": True, "github_webhook_ips": "140.82.112.0/20"}
    async with webhook_client(tmp_path, database_url, client_ip="203.0.113.7", **filtering) as c:
        # Even an unsigned request from outside is a 403 for the address, not the signature.
        denied = await c.post(URL, content=b"{}", headers={"Content-Type": "application/json"})
        spoofed = await c.post(
            URL, content=body, headers={**headers, "X-Forwarded-For": "140.82.112.5"}
        )
    assert denied.status_code == spoofed.status_code == 403
    assert [a["action"] for a in audit_entries(tmp_path)] == ["webhook_ip_denied"] * 2
    assert audit_entries(tmp_path)[0]["ip_address"] == "203.0.113.7"

    async with webhook_client(
        tmp_path, database_url, client_ip="10.0.0.2", trusted_proxies="10.0.0.0/8", **filtering
    ) as c:
        proxied = await c.post(
            URL, content=body, headers={**headers, "X-Forwarded-For": "140.82.112.5"}
        )
    assert proxied.status_code == 202, proxied.text


async def test_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    async with webhook_client(tmp_path, database_url, default_rate_limit="2/minute") as client:
        codes = []
        for _ in range(3):
            body, headers = signed(SECRET, "ping", {"zen": "hi"})
            codes.append(await client.post(URL, content=body, headers=headers))
    assert [r.status_code for r in codes] == [202, 202, 429]
    assert int(codes[2].headers["Retry-After"]) > 0
    assert audit_entries(tmp_path)[-1]["action"] == "rate_limit_exceeded"
    assert await event_and_job_counts(db) == (2, 2)


async def test_database_down_is_503_and_nothing_is_lost(tmp_path: Path) -> None:
    body, headers = signed(SECRET, "ping", {"zen": "hi"})
    async with webhook_client(
        tmp_path, "postgresql+asyncpg://nobody:pw@127.0.0.1:1/none"
    ) as client:
        response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert "pw" not in response.text


async def test_a_stored_delivery_has_the_job_pgqueuer_itself_would_queue(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    """The writer queues event jobs in its own statement; they must be the rows pgqueuer's
    enqueue writes, so its workers, retries and log treat them alike."""
    from pgqueuer.queries import Queries

    from project_orchestrator.db.jobs import HANDLE_EVENT, EventJob
    from project_orchestrator.db.raw import connect

    body, headers = signed(SECRET, "ping", {"zen": "hi"})
    async with webhook_client(tmp_path, database_url) as client:
        accepted = await client.post(URL, content=body, headers=headers)
    assert accepted.status_code == 202
    conn = await connect(database_url)
    try:
        await Queries.from_asyncpg_connection(conn).enqueue(
            entrypoint=HANDLE_EVENT, payload=EventJob(999, "c" * 32).encode(), priority=0
        )
        jobs = await conn.fetch(
            "SELECT priority, entrypoint, status, attempts, dedupe_key, headers, slot,"
            " queue_manager_id, execute_after <= now() AS due, payload FROM pgqueuer ORDER BY id"
        )
        logged = await conn.fetch("SELECT job_id, status, entrypoint FROM pgqueuer_log ORDER BY id")
        event_id = await conn.fetchval("SELECT id FROM inbound_events")
    finally:
        await conn.close()
    ours, theirs = (dict(row) for row in jobs)
    correlation_id = accepted.headers["x-request-id"]
    assert EventJob.decode(ours.pop("payload")) == EventJob(event_id, correlation_id)
    theirs.pop("payload")
    assert ours == theirs
    assert [(r["status"], r["entrypoint"]) for r in logged] == [("queued", HANDLE_EVENT)] * 2


async def test_a_rate_limit_counted_in_redis_is_shared_by_instances(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    await require_redis()
    await clear_of_a_window_edge(5.0)  # four deliveries through two app start-ups
    client_ip = own_address()
    shared = {"default_rate_limit": "2/minute", "rate_limit_storage_uri": REDIS_URI}
    codes = []
    for _ in range(2):  # two instances, one after the other, one count
        async with webhook_client(tmp_path, database_url, client_ip=client_ip, **shared) as c:
            for _ in range(2):
                body, headers = signed(SECRET, "ping", {"zen": "hi"})
                codes.append((await c.post(URL, content=body, headers=headers)).status_code)
    assert codes == [202, 202, 429, 429]


async def test_with_the_rate_limit_store_down_each_instance_counts_alone(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    down = {"default_rate_limit": "1/minute", "rate_limit_storage_uri": "redis://127.0.0.1:9/0"}
    async with webhook_client(tmp_path, database_url, **down) as client:
        codes = []
        for _ in range(2):
            body, headers = signed(SECRET, "ping", {"zen": "hi"})
            codes.append((await client.post(URL, content=body, headers=headers)).status_code)
    # Intake goes on (nothing waits on Redis) and the limit still holds in this instance.
    assert codes == [202, 429]
