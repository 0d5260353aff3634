"""The summary report against a scripted history: every figure exactly as scripted."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.projects.models import AiUsage, Identity, Project
from project_orchestrator.workflow.models import (
    ApprovalGate,
    GateKind,
    GateStatus,
    Phase,
    PhaseStatus,
    RunKind,
    RunStatus,
    WorkflowPhase,
    WorkflowRun,
)
from project_orchestrator.workflow.report import human_duration, parse_period
from tests.conftest import make_settings


@pytest.fixture
async def client(
    tmp_path: Path, database_url: str, db: Database
) -> AsyncIterator[httpx.AsyncClient]:
    from project_orchestrator.app import create_app

    app = create_app(make_settings(tmp_path, database_url=database_url, api_key=KEY))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


KEY = "api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class History:
    """Rows with the times a test chooses, relative to one moment."""

    def __init__(self, session: AsyncSession, now: datetime) -> None:
        self.session = session
        self.now = now
        self.owner = Identity(github_login="ada")
        session.add(self.owner)

    def ago(self, delta: timedelta) -> datetime:
        return self.now - delta

    async def project(self, name: str, created: timedelta) -> Project:
        project = Project(name=name, owner_id=self.owner.id, created_at=self.ago(created))
        self.session.add(project)
        await self.session.flush()
        return project

    async def run(
        self,
        project: Project,
        *,
        created: timedelta,
        status: RunStatus,
        finished: timedelta | None = None,
    ) -> WorkflowRun:
        run = WorkflowRun(
            project_id=project.id,
            number=1,
            kind=RunKind.INITIAL,
            feature_request="x",
            status=status,
            current_phase=Phase.MERGE,
            created_at=self.ago(created),
            finished_at=self.ago(finished) if finished is not None else None,
        )
        self.session.add(run)
        await self.session.flush()
        return run

    async def gate(
        self,
        run: WorkflowRun,
        kind: GateKind,
        *,
        opened: timedelta,
        waited: timedelta | None,
        status: GateStatus = GateStatus.APPROVED,
    ) -> None:
        decided = status in (GateStatus.APPROVED, GateStatus.REJECTED)
        gate = ApprovalGate(
            run_id=run.id,
            kind=kind,
            status=status,
            artifact_version=f"{kind.value}:{uuid.uuid4()}",
            created_at=self.ago(opened),
            decided_at=self.ago(opened) + waited if decided and waited else None,
            decided_by_id=self.owner.id if decided else None,
            decided_via=Channel.GITHUB if decided else None,
        )
        self.session.add(gate)

    async def phase(
        self,
        run: WorkflowRun,
        phase: Phase,
        attempt: int,
        *,
        created: timedelta,
        status: PhaseStatus = PhaseStatus.SUCCEEDED,
    ) -> None:
        self.session.add(
            WorkflowPhase(
                run_id=run.id,
                phase=phase,
                attempt=attempt,
                status=status,
                created_at=self.ago(created),
                started_at=self.ago(created),
                finished_at=self.ago(created) + HOUR,
            )
        )

    async def usage(
        self,
        project: Project,
        model: str,
        input_tokens: int,
        output_tokens: int,
        created: timedelta,
        *,
        cache_read: int = 0,
    ) -> None:
        self.session.add(
            AiUsage(
                project_id=project.id,
                model=model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read,
                created_at=self.ago(created),
            )
        )


async def script(db: Database) -> None:
    now = datetime.now(UTC)
    async with db.session_scope() as session:
        h = History(session, now)
        await session.flush()
        shop = await h.project("Shop", created=3 * DAY)
        blog = await h.project("Blog", created=10 * DAY)  # before the week: not new
        wiki = await h.project("Wiki", created=1 * DAY)
        # Shop: started and merged within the week, 5 hours from idea to merge.
        shop_run = await h.run(
            shop, created=3 * DAY, status=RunStatus.COMPLETED, finished=3 * DAY - 5 * HOUR
        )
        # Blog: started before the week, merged in it: completed, not started, 7 days.
        blog_run = await h.run(blog, created=9 * DAY, status=RunStatus.COMPLETED, finished=2 * DAY)
        # Wiki: started and cancelled in the week.
        wiki_run = await h.run(
            wiki, created=1 * DAY, status=RunStatus.CANCELLED, finished=20 * HOUR
        )
        await h.gate(shop_run, GateKind.VISION, opened=3 * DAY, waited=HOUR)
        await h.gate(shop_run, GateKind.PLAN, opened=3 * DAY - HOUR, waited=timedelta(minutes=10))
        await h.gate(
            shop_run,
            GateKind.PLAN,
            opened=3 * DAY - 2 * HOUR,
            waited=timedelta(minutes=20),
            status=GateStatus.REJECTED,
        )
        await h.gate(shop_run, GateKind.MERGE, opened=3 * DAY - 4 * HOUR, waited=2 * HOUR)
        await h.gate(blog_run, GateKind.MERGE, opened=2 * DAY + HOUR, waited=timedelta(minutes=30))
        # Decided before the week, still waiting, or voided: none counts.
        await h.gate(blog_run, GateKind.PLAN, opened=8 * DAY, waited=HOUR)
        await h.gate(wiki_run, GateKind.VISION, opened=HOUR, waited=None, status=GateStatus.EXPIRED)
        await h.gate(blog_run, GateKind.VISION, opened=DAY, waited=None, status=GateStatus.VOIDED)
        # A rebuild in the week (a fix attempt) and one before it.
        await h.phase(shop_run, Phase.EXECUTE, 1, created=3 * DAY - 3 * HOUR)
        await h.phase(shop_run, Phase.EXECUTE, 2, created=3 * DAY - 3 * HOUR + timedelta(minutes=5))
        await h.phase(blog_run, Phase.EXECUTE, 2, created=8 * DAY)
        # Failures: a validation in the week; a prime before it.
        await h.phase(
            shop_run, Phase.VALIDATE, 1, created=3 * DAY - 3 * HOUR, status=PhaseStatus.FAILED
        )
        await h.phase(blog_run, Phase.PRIME, 1, created=9 * DAY, status=PhaseStatus.FAILED)
        # AI: $3 and $15 per million for Sonnet, $1 and $5 for Haiku, a tenth of the input
        # price for a cache read; Opus 4.1 before the week.
        await h.usage(shop, "claude-sonnet-4-6", 60, 40, created=2 * DAY)
        await h.usage(wiki, "claude-haiku-4-5", 150, 50, created=HOUR, cache_read=50)
        await h.usage(blog, "claude-opus-4-1", 999, 0, created=8 * DAY)


EXPECTED = {
    "projects_total": 3,
    "projects_new": 2,
    "runs_started": 2,
    "runs_completed": 2,
    "runs_cancelled": 1,
    "runs_failed": 0,
    "median_idea_to_merge_seconds": (5 * 3600 + 7 * 86400) / 2,
    "fix_attempts": 1,
    "ai_tokens": 350,
    # (60 * 3 + 40 * 15 + 150 * 1 + 50 * 5 + 50 * 0.1) / 1e6
    "ai_cost_usd": 0.001185,
    "ai_unpriced_models": [],
    "gate_waits": [
        {"kind": "vision", "decisions": 1, "median_seconds": 3600.0},
        {"kind": "plan", "decisions": 2, "median_seconds": 900.0},
        {"kind": "merge", "decisions": 2, "median_seconds": 4500.0},
    ],
    "failures_by_phase": {"validate": 1},
}


def figures(body: dict[str, object]) -> dict[str, object]:
    shown = {k: v for k, v in body.items() if k not in ("since", "until")}
    waits = shown["gate_waits"]
    assert isinstance(waits, list)
    order = ["vision", "plan", "merge", "error_resolution"]
    shown["gate_waits"] = sorted(waits, key=lambda w: order.index(w["kind"]))
    return shown


async def test_the_api_summary_matches_the_scripted_week(
    client: httpx.AsyncClient, db: Database
) -> None:
    await script(db)
    headers = AUTH
    response = await client.get("/api/v1/reports/summary", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert figures(body) == EXPECTED
    since, until = datetime.fromisoformat(body["since"]), datetime.fromisoformat(body["until"])
    assert until - since == 7 * DAY

    # A longer window takes in what came before the week.
    month = (await client.get("/api/v1/reports/summary?since=30d", headers=headers)).json()
    assert month["runs_started"] == 3
    assert month["fix_attempts"] == 2
    assert month["ai_tokens"] == 1349
    assert month["ai_cost_usd"] == pytest.approx(0.001185 + 999 * 15 / 1e6)
    assert month["failures_by_phase"] == {"prime": 1, "validate": 1}

    markdown = await client.get("/api/v1/reports/summary?since=1w&format=markdown", headers=headers)
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    text = markdown.text
    assert "- Builds merged: 2" in text
    assert "- Median time from idea to merged pull request: 3 days 14 hours" in text
    assert "- merge: 1 hour 15 minutes over 2 decisions" in text
    assert "- validate: 1" in text
    assert "- AI tokens: 350, under $0.01" in text


@pytest.mark.parametrize("since", ["7", "seven days", "0d", "99999w", "-1d", "7d;drop"])
async def test_a_period_that_is_not_one_is_a_clear_422(
    client: httpx.AsyncClient, since: str
) -> None:
    headers = AUTH
    response = await client.get("/api/v1/reports/summary", params={"since": since}, headers=headers)
    assert response.status_code == 422, response.text
    assert "period" in response.text or "range" in response.text


async def test_the_report_needs_the_api_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/reports/summary")).status_code == 401


async def orchestrator(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The real command, as an operator runs it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "project_orchestrator",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_cli_report_prints_the_same_figures(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    await script(db)
    env = {"DATABASE_URL": database_url, "AUDIT_LOG_PATH": str(tmp_path / "audit.log")}
    code, out, err = await orchestrator(env, "report", "--since", "7d", "--format", "json")
    assert code == 0, err
    assert figures(json.loads(out)) == EXPECTED
    code, out, err = await orchestrator(env, "report")
    assert code == 0, err
    assert out.startswith("## Builds from ")
    assert "- Builds started: 2" in out
    code, out, err = await orchestrator(env, "report", "--since", "a week")
    assert code == 2
    assert "not a period" in err
    code, out, err = await orchestrator(env, "report", "--format", "html")
    assert code == 2
    assert "markdown or json" in err


def test_periods_and_durations_read_as_people_write_them() -> None:
    assert parse_period("30m") == timedelta(minutes=30)
    assert parse_period("2W") == timedelta(weeks=2)
    with pytest.raises(ValueError, match="not a period"):
        parse_period("1y")
    assert human_duration(None) == "none finished"
    assert human_duration(40) == "40 seconds"
    assert human_duration(3 * 86400 + 4 * 3600 + 59) == "3 days 4 hours"
    assert human_duration(3600) == "1 hour"
