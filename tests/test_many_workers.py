"""Several workers on one queue: every event handled once, duplicates never queued."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from sqlalchemy import text

from project_orchestrator.audit import AuditLog
from project_orchestrator.composition.worker import build_workload
from project_orchestrator.db.engine import Database
from project_orchestrator.queue.worker import run_worker
from tests.conftest import make_settings
from tests.support.fake_github import FakeGitHub
from tests.support.github_payloads import issue_comment, signed
from tests.support.webhooks import SECRET, URL, webhook_client
from tests.support.worker import FAST_RETRIES, wait_until_idle

REPOS = ["acme/one", "acme/two", "acme/three", "acme/four"]


async def test_two_workers_share_a_stream_with_duplicate_deliveries(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    for repo in REPOS:
        github.add_issue(repo, 1)
    rng = random.Random(7)
    deliveries = []
    for n in range(40):
        repo = REPOS[n % len(REPOS)]
        payload = issue_comment("@orchestrator /help", repo=repo, issue_number=1, comment_id=n)
        deliveries.append(signed(SECRET, "issue_comment", payload, delivery=f"delivery-{n}"))
    # One in ten is delivered twice, as GitHub does when an acknowledgement is lost.
    stream = deliveries + rng.sample(deliveries, 4)
    rng.shuffle(stream)
    async with webhook_client(tmp_path, database_url) as client:
        codes = [
            (await client.post(URL, content=body, headers=headers)).status_code
            for body, headers in stream
        ]
    assert codes.count(202) == 40
    assert codes.count(200) == 4

    settings = make_settings(
        tmp_path,
        database_url=database_url,
        github_access_token="ghp-test-token-123456",
        github_api_url=github.base_url,
    )
    audit = AuditLog(settings.audit_log_path)
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(
            run_worker(database_url, build_workload(settings, db, audit), stop, FAST_RETRIES)
        )
        for _ in range(2)
    ]
    try:
        await wait_until_idle(db, workers, limit_seconds=60)
    finally:
        stop.set()
        await asyncio.gather(*workers)

    async with db.engine.connect() as conn:
        statuses = (
            await conn.execute(text("SELECT status, count(*) FROM inbound_events GROUP BY 1"))
        ).all()
    assert dict(statuses) == {"handled": 40}
    for repo in REPOS:
        assert len(github.comments(repo, 1)) == 10
    assert github.created_comment_count() == 40
