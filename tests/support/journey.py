"""A person's journey, end to end: real webhook route, real worker, fakes for the rest.

Comments go through `POST /webhooks/github` signed as GitHub signs them; the worker runs
until the queue is empty; the agent talks to a fake Anthropic through the real SDK; SCAR
is a fake of its HTTP adapter; replies land on a fake GitHub through PyGithub.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from project_orchestrator.agent.turns import TurnRunner
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database
from project_orchestrator.queue.worker import Workload
from project_orchestrator.workflow.models import Phase, WorkflowPhase, WorkflowRun
from tests.conftest import make_settings
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_github import FakeGitHub
from tests.support.fake_scar import FakeScar
from tests.support.github_payloads import issue_comment, signed
from tests.support.webhooks import SECRET, URL, webhook_client
from tests.support.worker import work_until_idle

REPO = "acme/widgets"
ISSUE = 7
OWNER = "ada"
_comment_ids = itertools.count(5000)


def journey_settings(
    tmp_path: Path,
    database_url: str,
    github: FakeGitHub,
    anthropic_url: str,
    scar_url: str,
    **extra: Any,
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "github_webhook_secret": SECRET,
        "github_access_token": "ghp-test-token-123456",
        "github_api_url": github.base_url,
        "anthropic_api_key": "sk-ant-test-key-000000",
        "anthropic_base_url": anthropic_url,
        "scar_base_url": scar_url,
        "scar_timeout_seconds": 10.0,
        "scar_poll_interval_seconds": 0.02,
        # GitHub is polled for the pull request's checks this often (no webhook arrives
        # from the fake by itself).
        "run_checks_poll_seconds": 0.05,
    }
    values.update(extra)
    return make_settings(tmp_path, **values)


@dataclass
class Journey:
    tmp_path: Path
    database_url: str
    db: Database
    settings: Settings
    github: FakeGitHub
    anthropic: FakeAnthropic
    scar: FakeScar
    delivered: list[int] = field(default_factory=list)
    # Changes the worker's workload before each run of it (a test injecting a fault).
    shape_workload: Callable[[Workload], None] | None = None

    def __post_init__(self) -> None:
        # SCAR's builds open pull requests on the same GitHub the orchestrator reads.
        self.scar.pull_requests = self.github

    async def comment(
        self,
        body: str,
        *,
        login: str = OWNER,
        association: str = "OWNER",
        event: str = "issue_comment",
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Deliver a comment through the webhook route, then let the worker do its work."""
        comment_id = next(_comment_ids)
        payload = payload or issue_comment(
            body, login=login, association=association, comment_id=comment_id, repo=REPO
        )
        raw, headers = signed(SECRET, event, payload)
        async with webhook_client(self.tmp_path, self.database_url) as client:
            response = await client.post(URL, content=raw, headers=headers)
        assert response.status_code == 202, response.text
        self.delivered.append(comment_id)
        await self.work()

    async def work(self, limit_seconds: float = 60) -> None:
        await work_until_idle(
            self.settings, self.db, limit_seconds=limit_seconds, shape=self.shape_workload
        )

    def bot_comments(self) -> list[str]:
        return [
            c["body"]
            for c in self.github.comments(REPO, ISSUE)
            if c["user"] == self.github.bot_login
        ]

    def last_reply(self) -> str:
        return self.bot_comments()[-1]

    def board(self) -> str:
        boards = [b for b in self.bot_comments() if ":progress -->" in b]
        assert len(boards) == 1, f"one progress comment per run, got {len(boards)}"
        return boards[0]

    def audit_actions(self) -> list[str]:
        path = self.settings.audit_log_path
        if not path.exists():
            return []
        return [json.loads(line)["action"] for line in path.read_text().splitlines()]

    async def run(self) -> WorkflowRun:
        async with self.db.session_scope() as session:
            return (
                await session.execute(select(WorkflowRun).order_by(WorkflowRun.created_at.desc()))
            ).scalars().first() or _missing()

    async def attempts(self, phase: Phase) -> list[WorkflowPhase]:
        """Every attempt of `phase` (across runs), in attempt order."""
        async with self.db.session_scope() as session:
            rows = await session.execute(
                select(WorkflowPhase)
                .where(WorkflowPhase.phase == phase)
                .order_by(WorkflowPhase.attempt)
            )
            return list(rows.scalars())

    def scar_commands(self) -> list[str]:
        return [m for m in self.scar.invocations if m.startswith("/command-invoke")]


def _missing() -> WorkflowRun:
    raise AssertionError("no workflow run exists")


def note(topic: str, text: str) -> dict[str, Any]:
    return {"topic": topic, "text": text}


def tool_use(name: str, tool_input: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": f"toolu_{next(_comment_ids)}",
        "name": name,
        "input": tool_input or {},
    }


def script_brainstorm(anthropic: FakeAnthropic) -> None:
    """The model's side of a three-message brainstorm that ends asking for approval."""
    anthropic.reply(
        [tool_use("record_brainstorm_note", note("what", "A meal planner"))], "tool_use"
    )
    anthropic.reply_text("Lovely idea! Who is it for, and what bothers them today?")
    anthropic.reply(
        [
            tool_use("record_brainstorm_note", note("who", "Busy parents")),
            tool_use("record_brainstorm_note", note("problem", "Deciding dinner every day")),
        ],
        "tool_use",
    )
    anthropic.reply_text("Got it. What should it do, and how would a parent use it?")
    anthropic.reply(
        [
            tool_use("record_brainstorm_note", note("feature", "A weekly meal plan")),
            tool_use("record_brainstorm_note", note("feature", "A shopping list")),
            tool_use("record_brainstorm_note", note("feature", "Swapping a recipe")),
            tool_use("record_brainstorm_note", note("journey", "Open on Sunday, plan, shop")),
            tool_use("record_brainstorm_note", note("success", "Three planned dinners a week")),
        ],
        "tool_use",
    )
    anthropic.reply([tool_use("generate_vision")], "tool_use")
    anthropic.reply([tool_use("request_approval")], "tool_use")
    anthropic.reply_text("I wrote the vision down. Have a look and tell me what you think!")


BRAINSTORM = (
    "@orchestrator I'd like an app that plans family meals",
    "@orchestrator It's for busy parents who hate deciding dinner every day",
    "@orchestrator A weekly plan, a shopping list, recipe swaps. They plan on Sunday and "
    "shop. It works if they cook three planned dinners a week.",
)


async def brainstorm_to_vision_gate(journey: Journey) -> None:
    """The three-message brainstorm, on the project's issue, up to the vision question."""
    script_brainstorm(journey.anthropic)
    for message in BRAINSTORM:
        await journey.comment(message)


def quick_turn_retries(workload: Workload) -> None:
    """A turn that found the AI down tries again within moments, not seconds."""
    turns = workload.turns
    assert isinstance(turns, TurnRunner)
    turns.first_retry = timedelta(milliseconds=50)
    turns.longest_retry = timedelta(milliseconds=200)
