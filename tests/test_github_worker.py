"""GitHub events through the real route, the real worker and PyGithub against a fake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from project_orchestrator.channels.delivery import MAX_DELIVERY_ATTEMPTS
from project_orchestrator.channels.models import OutboundMessage, OutboundStatus
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database
from project_orchestrator.events.cli import replay
from project_orchestrator.ingress.github import handlers as github_handlers
from project_orchestrator.projects.models import Identity, Project
from project_orchestrator.workflow.models import (
    ApprovalGate,
    GateKind,
    GateStatus,
    RunKind,
    WorkflowRun,
)
from tests.conftest import make_settings
from tests.support.fake_github import FakeGitHub
from tests.support.github_payloads import issue_comment, repository, signed
from tests.support.logs import RecordingLogger
from tests.support.webhooks import SECRET, URL, webhook_client
from tests.support.worker import work_until_idle

REPO = "acme/widgets"


def _settings(tmp_path: Path, database_url: str, github: FakeGitHub, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "github_webhook_secret": SECRET,
        "github_access_token": "ghp-test-token-123456",
        "github_api_url": github.base_url,
    }
    values.update(extra)
    return make_settings(tmp_path, **values)


async def _deliver(
    tmp_path: Path, database_url: str, event: str, payload: dict[str, Any]
) -> httpx.Response:
    body, headers = signed(SECRET, event, payload)
    async with webhook_client(tmp_path, database_url) as client:
        return await client.post(URL, content=body, headers=headers)


async def _statuses(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT status FROM inbound_events ORDER BY id"))
        return [r[0] for r in rows]


async def test_help_is_answered_once_even_when_replayed(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    settings = _settings(tmp_path, database_url, github)
    accepted = await _deliver(
        tmp_path, database_url, "issue_comment", issue_comment("@orchestrator /help")
    )
    assert accepted.status_code == 202
    await work_until_idle(settings, db)

    [reply] = github.comments(REPO, 7)
    assert "/status" in reply["body"]
    assert "<!-- orchestrator:" in reply["body"]
    assert await _statuses(db) == ["handled"]

    async with db.engine.connect() as conn:
        event_id = (await conn.execute(text("SELECT id FROM inbound_events"))).scalar_one()
    await replay(database_url, event_id)
    await work_until_idle(settings, db)
    assert len(github.comments(REPO, 7)) == 1
    assert await _statuses(db) == ["handled"]


async def _project(db: Database, name: str, repo: str) -> Project:
    async with db.session_scope() as session:
        owner = Identity(github_login=f"owner-of-{name.lower().replace(' ', '-')}")
        session.add(owner)
        await session.flush()
        project = Project(name=name, owner_id=owner.id, github_repo=repo)
        session.add(project)
        await session.flush()
        return project


async def test_status_names_the_project(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    await _project(db, "Widget Shop", "Acme/Widgets")
    # A similarly named repository must not match: lookups are exact.
    await _project(db, "Other", "acme/widgets-old")
    await _deliver(tmp_path, database_url, "issue_comment", issue_comment("@orchestrator /status"))
    await work_until_idle(_settings(tmp_path, database_url, github), db)
    [reply] = github.comments(REPO, 7)
    assert "Widget Shop" in reply["body"]
    assert "Other" not in reply["body"]


async def test_outsiders_get_one_polite_refusal(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    for comment_id in (1, 2):
        payload = issue_comment(
            "@orchestrator /approve", login="mallory", association="NONE", comment_id=comment_id
        )
        await _deliver(tmp_path, database_url, "issue_comment", payload)
    await work_until_idle(_settings(tmp_path, database_url, github), db)

    [refusal] = github.comments(REPO, 7)
    assert "mallory" in refusal["body"]
    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    denied = [a for a in audit if a["action"] == "unauthorized_access"]
    assert len(denied) == 2
    assert denied[0]["user_id"] == "github:mallory"
    assert denied[0]["result"] == "denied"


async def test_allowed_users_and_collaborators_are_answered(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    payload = issue_comment("@orchestrator /help", login="friend", association="NONE")
    await _deliver(tmp_path, database_url, "issue_comment", payload)
    await work_until_idle(
        _settings(tmp_path, database_url, github, github_allowed_users="Friend"), db
    )
    [reply] = github.comments(REPO, 7)
    assert "Sorry" not in reply["body"]


@pytest.mark.parametrize(
    "payload",
    [
        issue_comment("no mention at all"),
        issue_comment("hey @orchestratorx /help"),
        issue_comment("@orchestrator /help", login="orchestrator"),
        issue_comment("@orchestrator /help", login="dependabot[bot]", bot=True),
        {**issue_comment("@orchestrator /help"), "action": "deleted"},
    ],
    ids=["no-mention", "longer-handle", "own-comment", "other-bot", "deleted"],
)
async def test_nothing_to_answer_is_ignored(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub, payload: dict[str, Any]
) -> None:
    await _deliver(tmp_path, database_url, "issue_comment", payload)
    await work_until_idle(_settings(tmp_path, database_url, github), db)
    assert github.comments(REPO, 7) == []
    assert await _statuses(db) == ["ignored"]


async def test_a_comment_that_does_not_mention_the_bot_is_ignored_with_the_reason_logged(
    tmp_path: Path,
    database_url: str,
    db: Database,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = RecordingLogger()
    monkeypatch.setattr(github_handlers, "log", logs)
    mentioning_the_account = issue_comment("@orc-bot please build a shop", repo=REPO)
    await _deliver(tmp_path, database_url, "issue_comment", mentioning_the_account)
    await work_until_idle(_settings(tmp_path, database_url, github), db)
    assert github.comments(REPO, 7) == []
    assert await _statuses(db) == ["ignored"]
    [(level, _, fields)] = [r for r in logs.records if r[1] == "github.comment_ignored"]
    assert level == "info"
    assert fields["reason"] == "does not mention @orchestrator (GITHUB_BOT_MENTION)"


async def test_unhandled_event_kinds_are_stored_and_ignored(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    await _deliver(
        tmp_path, database_url, "star", {"action": "created", "repository": repository()}
    )
    await _deliver(tmp_path, database_url, "ping", {"zen": "Keep it simple.", "hook_id": 1})
    await work_until_idle(_settings(tmp_path, database_url, github), db)
    assert await _statuses(db) == ["ignored", "handled"]


async def test_rate_limited_replies_wait_and_post_once(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    github.rate_limit_next(1)
    await _deliver(tmp_path, database_url, "issue_comment", issue_comment("@orchestrator /help"))
    await work_until_idle(_settings(tmp_path, database_url, github), db)
    assert len(github.comments(REPO, 7)) == 1
    assert await _statuses(db) == ["handled"]


async def test_a_reply_that_cannot_be_posted_ends_failed_and_the_event_stays_handled(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    await _deliver(tmp_path, database_url, "issue_comment", issue_comment("@orchestrator /help"))
    # Without a token nothing can be posted: every delivery attempt fails.
    await work_until_idle(_settings(tmp_path, database_url, github, github_access_token=None), db)
    assert await _statuses(db) == ["handled"]  # what the comment asked for was done
    async with db.session_scope() as session:
        reply = (await session.execute(select(OutboundMessage))).scalar_one()
    assert reply.status is OutboundStatus.FAILED
    assert reply.attempts == MAX_DELIVERY_ATTEMPTS
    assert reply.last_error == "GitHubNotConfigured"
    assert github.comments(REPO, 7) == []


async def test_a_new_pr_head_voids_the_pending_merge_approval(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    project = await _project(db, "Widgets", REPO)
    async with db.session_scope() as session:
        run = WorkflowRun(
            project_id=project.id, number=1, kind=RunKind.INITIAL, feature_request="x", pr_number=12
        )
        session.add(run)
        await session.flush()
        session.add(ApprovalGate(run_id=run.id, kind=GateKind.MERGE, artifact_version="sha:aaa"))
    payload = {
        "action": "synchronize",
        "number": 12,
        "pull_request": {"number": 12, "head": {"sha": "bbb", "ref": "feature"}},
        "repository": repository(REPO),
        "sender": {"login": "alice", "type": "User"},
    }
    await _deliver(tmp_path, database_url, "pull_request", payload)
    await work_until_idle(_settings(tmp_path, database_url, github), db)
    async with db.session_scope() as session:
        gate = (await session.execute(select(ApprovalGate))).scalar_one()
        run_after = (await session.execute(select(WorkflowRun))).scalar_one()
    assert gate.status is GateStatus.VOIDED
    assert run_after.pr_head_sha == "bbb"


async def test_job_logs_carry_the_deliverys_correlation_id(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    import io

    from project_orchestrator.logging import configure_logging

    accepted = await _deliver(
        tmp_path, database_url, "issue_comment", issue_comment("@orchestrator /help")
    )
    stream = io.StringIO()
    configure_logging(level="INFO", json_output=True, stream=stream)
    try:
        await work_until_idle(_settings(tmp_path, database_url, github), db)
    finally:
        configure_logging(level="INFO", json_output=False)
    records = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    handled = [r for r in records if r.get("event") == "event.handled"]
    posted = [r for r in records if r.get("event") == "github.comment_posted"]
    assert handled
    assert posted
    assert {r["correlation_id"] for r in handled + posted} == {accepted.headers["x-request-id"]}


async def test_a_new_issue_that_mentions_the_bot_is_answered(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    payload = {
        "action": "opened",
        "issue": {
            "number": 7,
            "title": "Idea",
            "body": "@orchestrator /status",
            "user": {"login": "alice", "type": "User"},
            "author_association": "OWNER",
        },
        "repository": repository(REPO),
        "sender": {"login": "alice", "type": "User"},
    }
    await _deliver(tmp_path, database_url, "issues", payload)
    await work_until_idle(_settings(tmp_path, database_url, github), db)
    [reply] = github.comments(REPO, 7)
    assert "no project for this repository" in reply["body"]
    assert await _statuses(db) == ["handled"]


async def test_queue_metrics_follow_the_work(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    for n in range(3):
        payload = issue_comment("@orchestrator /help", comment_id=n)
        await _deliver(tmp_path, database_url, "issue_comment", payload)
    async with webhook_client(tmp_path, database_url) as client:
        before = (await client.get("/metrics")).text
    assert "job_queue_depth 3.0" in before
    await work_until_idle(_settings(tmp_path, database_url, github), db)
    async with webhook_client(tmp_path, database_url) as client:
        after = (await client.get("/metrics")).text
    assert "job_queue_depth 0.0" in after
    assert 'jobs_total{job="handle_event",outcome="handled"}' in after
