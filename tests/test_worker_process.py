"""The worker as a process: killed mid-job it loses nothing and posts nothing twice;
asked to stop, it finishes what it holds and exits 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from project_orchestrator.db.engine import Database
from tests.support.cli import COMMAND, clean_environment
from tests.support.fake_github import FakeGitHub
from tests.support.fake_http import unused_tcp_url
from tests.support.github_payloads import issue_comment, signed
from tests.support.webhooks import SECRET, URL, webhook_client

pytestmark = pytest.mark.slow
REPO = "acme/widgets"


def _start_worker(
    tmp_path: Path, database_url: str, github: FakeGitHub, **extra: str
) -> subprocess.Popen[str]:
    env = {
        **extra,
        "DATABASE_URL": database_url,
        "GITHUB_ACCESS_TOKEN": "ghp-test-token-123456",
        "GITHUB_API_URL": github.base_url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "AUDIT_LOG_PATH": str(tmp_path / "audit.log"),
        "WORKER_HEARTBEAT_TIMEOUT_SECONDS": "2",
        "WORKER_DRAIN_TIMEOUT_SECONDS": "20",
        "TELEGRAM_MODE": "off",
    }
    return subprocess.Popen(
        [*COMMAND, "worker"],
        env=clean_environment(**env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def _event_status(db: Database) -> str:
    async with db.engine.connect() as conn:
        return str((await conn.execute(text("SELECT status FROM inbound_events"))).scalar_one())


async def _wait_for(predicate: Callable[[], Any], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def _deliver_help(tmp_path: Path, database_url: str) -> None:
    body, headers = signed(SECRET, "issue_comment", issue_comment("@orchestrator /help"))
    async with webhook_client(tmp_path, database_url) as client:
        assert (await client.post(URL, content=body, headers=headers)).status_code == 202


async def _reply_status(db: Database) -> str:
    async with db.engine.connect() as conn:
        found = await conn.execute(text("SELECT status::text FROM outbound_messages"))
        return str(found.scalar_one())


async def test_killed_mid_job_the_comment_is_posted_exactly_once(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    await _deliver_help(tmp_path, database_url)
    github.post_delay_seconds = 30  # GitHub has the comment; the worker never hears back
    first = _start_worker(tmp_path, database_url, github)
    try:
        await _wait_for(lambda: len(github.comments(REPO, 7)) == 1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
    # The event was handled and committed; the reply's delivery was cut short.
    assert await _event_status(db) == "handled"
    assert await _reply_status(db) == "pending"

    github.post_delay_seconds = 0
    second = _start_worker(tmp_path, database_url, github)
    try:
        # Its heartbeat stopped, so the delivery job is picked up again once it goes
        # stale; it finds the comment by its marker instead of posting it again.
        async def sent() -> bool:
            return await _reply_status(db) == "sent"

        await _wait_for(sent)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert len(github.comments(REPO, 7)) == 1


async def test_sigterm_finishes_the_job_in_hand_then_exits_zero(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    await _deliver_help(tmp_path, database_url)
    github.post_delay_seconds = 2
    worker = _start_worker(tmp_path, database_url, github)
    try:
        await _wait_for(lambda: len(github.comments(REPO, 7)) == 1)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    finally:
        worker.kill()
    output = worker.stdout.read() if worker.stdout else ""
    assert code == 0, output
    assert await _event_status(db) == "handled"
    assert len(github.comments(REPO, 7)) == 1
    assert "worker.draining" in output


async def test_a_worker_serves_its_own_metrics(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    port = int(unused_tcp_url().rsplit(":", 1)[1])
    await _deliver_help(tmp_path, database_url)
    worker = _start_worker(tmp_path, database_url, github, WORKER_METRICS_PORT=str(port))
    try:
        await _wait_for(lambda: len(github.comments(REPO, 7)) == 1)
        async with httpx.AsyncClient() as client:
            scraped = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    # What only a worker counts is visible to Prometheus.
    assert 'jobs_total{job="handle_event",outcome="handled"} 1.0' in scraped
