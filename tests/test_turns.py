"""Agent turns hold nothing while the model thinks: one project's slow answer never keeps
another's waiting, and a worker needs one connection per job, no more."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from project_orchestrator.audit import AuditLog
from project_orchestrator.composition.worker import build_workload
from project_orchestrator.db.engine import Database, create_database, worker_pool_size
from project_orchestrator.queue.worker import run_worker
from tests.conftest import make_settings
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_github import FakeGitHub
from tests.support.faults import eventually
from tests.support.github_payloads import issue_comment, signed
from tests.support.webhooks import SECRET, URL, webhook_client
from tests.support.worker import FAST_RETRIES, wait_until_idle

SLOW, QUICK = "acme/alpha", "acme/beta"
SLOW_MODEL_SECONDS = 5.0


def _bot_comments(github: FakeGitHub, repo: str) -> list[str]:
    return [c["body"] for c in github.comments(repo, 7) if c["user"] == github.bot_login]


async def test_a_slow_answer_for_one_project_never_keeps_another_waiting(
    tmp_path: Path,
    database_url: str,
    db: Database,  # its teardown empties the tables this test fills
    github: FakeGitHub,
    anthropic: tuple[FakeAnthropic, str],
) -> None:
    fake, anthropic_url = anthropic
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        github_webhook_secret=SECRET,
        github_access_token="ghp-test-token-123456",
        github_api_url=github.base_url,
        anthropic_api_key="sk-ant-test-key-000000",
        anthropic_base_url=anthropic_url,
    )
    for repo in (SLOW, QUICK):
        github.add_issue(repo, 7)
    fake.delay_when = lambda body: SLOW_MODEL_SECONDS if "alpha" in str(body["system"]) else 0.0

    # The worker's own pool, sized as `orchestrator worker` sizes it, with no overflow and
    # a short wait: running dry would fail a job instead of passing unseen.
    concurrency = FAST_RETRIES.concurrency
    worker_db = create_database(
        database_url, pool_size=worker_pool_size(concurrency), max_overflow=0
    )
    worker_db.engine.pool._timeout = 3  # type: ignore[attr-defined]
    in_use = {"now": 0, "most": 0}

    def checked_out(*_: Any) -> None:
        in_use["now"] += 1
        in_use["most"] = max(in_use["most"], in_use["now"])

    def checked_in(*_: Any) -> None:
        in_use["now"] -= 1

    event.listen(worker_db.engine.sync_engine, "checkout", checked_out)
    event.listen(worker_db.engine.sync_engine, "checkin", checked_in)

    async def say(repo: str, comment_id: int, text: str) -> float:
        payload = issue_comment(f"@orchestrator {text}", repo=repo, comment_id=comment_id)
        body, headers = signed(SECRET, "issue_comment", payload)
        async with webhook_client(tmp_path, database_url) as client:
            assert (await client.post(URL, content=body, headers=headers)).status_code == 202
        return time.monotonic()

    workload = build_workload(settings, worker_db, AuditLog(settings.audit_log_path))
    stop = asyncio.Event()
    assert settings.database_url is not None
    worker = asyncio.create_task(run_worker(settings.database_url, workload, stop, FAST_RETRIES))
    try:
        started = await say(SLOW, 1, "Tell me everything about meal planning")
        # The slow project's model call is under way.
        await eventually(lambda: any("alpha" in str(r.get("system")) for r in fake.requests))
        asked = await say(QUICK, 2, "Hello!")
        await eventually(lambda: bool(_bot_comments(github, QUICK)), limit=10)
        quick_latency = time.monotonic() - asked
        assert _bot_comments(github, SLOW) == [], "the quick answer came while alpha thought"
        assert quick_latency < 1.0, f"beta waited {quick_latency:.2f} s"
        await wait_until_idle(worker_db, [worker], limit_seconds=30)
        assert len(_bot_comments(github, SLOW)) == 1
        assert time.monotonic() - started >= SLOW_MODEL_SECONDS
    finally:
        stop.set()
        await worker
        await workload.aclose()
        await worker_db.dispose()
    assert in_use["most"] <= worker_pool_size(concurrency), in_use
