"""A database restart does not leave the worker dead: it comes back and handles work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from project_orchestrator.audit import AuditLog
from project_orchestrator.composition.worker import build_workload
from project_orchestrator.db.engine import create_database
from project_orchestrator.queue.worker import run_worker_supervised
from tests.conftest import make_settings
from tests.support.fake_github import FakeGitHub
from tests.support.github_payloads import issue_comment, signed
from tests.support.postgres import RestartablePostgres
from tests.support.webhooks import SECRET, URL, webhook_client
from tests.support.worker import FAST_RETRIES

pytestmark = pytest.mark.slow


async def test_worker_survives_a_database_restart(
    tmp_path: Path, private_postgres: RestartablePostgres, github: FakeGitHub
) -> None:
    url = private_postgres.url
    settings = make_settings(
        tmp_path,
        database_url=url,
        github_access_token="ghp-test-token-123456",
        github_api_url=github.base_url,
    )
    db = create_database(url, pool_size=2, max_overflow=2)
    stop = asyncio.Event()
    processor = build_workload(settings, db, AuditLog(settings.audit_log_path))
    worker = asyncio.create_task(run_worker_supervised(url, processor, stop, FAST_RETRIES))
    try:
        await asyncio.sleep(1)
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.sleep(1)
        await asyncio.to_thread(private_postgres.start)

        body, headers = signed(SECRET, "issue_comment", issue_comment("@orchestrator /help"))
        async with webhook_client(tmp_path, url) as client:
            assert (await client.post(URL, content=body, headers=headers)).status_code == 202
        async with asyncio.timeout(45):
            while not github.comments("acme/widgets", 7):
                assert not worker.done(), "the supervised worker must not end by itself"
                await asyncio.sleep(0.2)
    finally:
        stop.set()
        await worker
        await db.dispose()
    assert len(github.comments("acme/widgets", 7)) == 1
