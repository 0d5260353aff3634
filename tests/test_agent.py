"""The agent turn against a fake Messages API through the real SDK, on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import metrics
from project_orchestrator.agent.breaker import CircuitBreaker
from project_orchestrator.agent.conversation import (
    BUDGET_REACHED,
    UNAVAILABLE,
    AgentConversation,
)
from project_orchestrator.agent.llm import ModelGateway
from project_orchestrator.agent.models import ConversationMessage, ConversationSummary
from project_orchestrator.agent.status import ai_outage
from project_orchestrator.agent.tools import TOOLS
from project_orchestrator.audit import AuditLog
from project_orchestrator.channels.base import Notifier
from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import Actor, create_project, github_identity
from project_orchestrator.vision.models import BrainstormNote
from project_orchestrator.workflow.service import Workflow
from tests.conftest import make_settings
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_http import FakeServer
from tests.support.journey import tool_use

KEY = "sk-ant-test-key-000000"


@pytest.fixture
def fake() -> Iterator[tuple[FakeAnthropic, str]]:
    server_fake = FakeAnthropic()
    with FakeServer(server_fake.app) as server:
        yield server_fake, server.url


class Setup:
    def __init__(self, session: AsyncSession, fake: FakeAnthropic, url: str, tmp: Path) -> None:
        self.session = session
        self.fake = fake
        self.audit = AuditLog(tmp / "audit.log")
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=url, max_retries=0)
        self.gateway = ModelGateway(client, "claude-test", CircuitBreaker(failure_threshold=2))
        self.agent = AgentConversation(
            gateway=self.gateway,
            workflow=Workflow(self.audit),
            notifier=Notifier([]),
            audit=self.audit,
            max_tokens_per_project=1_000_000,
        )
        self.project: Project
        self.actor: Actor

    async def start(self) -> Setup:
        self.actor = Actor(await github_identity(self.session, "ada"), Channel.GITHUB)
        self.project = await create_project(
            self.session, self.audit, name="Meals", owner=self.actor, github_repo="acme/meals"
        )
        return self

    async def say(self, text: str) -> str:
        return await self.agent.respond(self.session, self.project, self.actor, text)


@pytest.fixture
async def setup(
    db: Database, fake: tuple[FakeAnthropic, str], tmp_path: Path
) -> AsyncIterator[Setup]:
    async with db.session_scope() as session:
        yield await Setup(session, fake[0], fake[1], tmp_path).start()


async def test_the_model_sees_the_project_and_a_cached_stable_prefix(setup: Setup) -> None:
    setup.fake.reply_text("Hello! Tell me about your idea.")
    answer = await setup.say("Hi, I have an idea")
    assert answer == "Hello! Tell me about your idea."
    [request] = setup.fake.requests
    stable, context = request["system"]
    assert stable["cache_control"] == {"type": "ephemeral"}
    assert "Name: Meals" in context["text"]
    assert "acme/meals" in context["text"]
    assert "cache_control" not in context
    assert request["messages"] == [{"role": "user", "content": "Hi, I have an idea"}]
    assert {t["name"] for t in request["tools"]} == {t.name for t in TOOLS}


async def test_every_message_is_stored_and_tokens_are_counted(setup: Setup) -> None:
    before = metrics.ai_tokens_total.labels("output")._value.get()
    setup.fake.reply_text("Nice.")
    await setup.say("A meal planner")
    rows = (await setup.session.execute(select(ConversationMessage))).scalars().all()
    assert [(m.role.value, m.content) for m in rows] == [
        ("user", "A meal planner"),
        ("assistant", "Nice."),
    ]
    assert rows[0].author_id == setup.actor.identity.id
    assert rows[1].tokens > 0
    assert setup.project.ai_tokens_used == rows[1].tokens
    assert metrics.ai_tokens_total.labels("output")._value.get() > before


async def test_tools_act_as_the_person_of_the_job_not_as_the_model_says(setup: Setup) -> None:
    setup.fake.reply(
        [
            tool_use(
                "record_brainstorm_note",
                {"topic": "who", "text": "Busy parents", "author": "mallory"},
            )
        ],
        "tool_use",
    )
    setup.fake.reply_text("Noted!")
    assert await setup.say("It's for busy parents") == "Noted!"
    note = (await setup.session.execute(select(BrainstormNote))).scalar_one()
    assert note.author_id == setup.actor.identity.id
    follow_up = setup.fake.requests[1]["messages"]
    result = follow_up[-1]["content"][0]
    assert result["type"] == "tool_result"
    assert "Still missing" in result["content"]


async def test_no_tool_can_approve_a_gate(setup: Setup) -> None:
    names = {tool.name for tool in TOOLS}
    assert not any("approve" in n or "reject" in n or "decide" in n for n in names)
    setup.fake.reply([tool_use("approve_gate", {"gate": "any"})], "tool_use")
    setup.fake.reply_text("I can't approve for you: please say /approve.")
    await setup.say("Approve it for me")
    result = setup.fake.requests[1]["messages"][-1]["content"][0]
    assert result["is_error"] is True
    assert "no tool called approve_gate" in result["content"]


async def test_tool_rounds_are_capped(setup: Setup) -> None:
    for _ in range(10):
        setup.fake.reply([tool_use("get_project_status")], "tool_use")
    answer = await setup.say("status?")
    assert setup.fake.request_count == setup.agent.tool_rounds
    # The rounds ran out mid-tool-use: the person still gets a plain answer, not silence.
    assert answer == "I have done what I can for now. What would you like next?"


async def test_replies_never_show_code(setup: Setup) -> None:
    setup.fake.reply_text("Here you go:\n```python\nprint('hi')\n```\nAll set.")
    answer = await setup.say("show me")
    assert "print" not in answer
    assert "All set." in answer


async def test_long_conversations_are_summarised_and_nothing_is_lost(setup: Setup) -> None:
    setup.agent.history_budget = 200  # tokens: a few messages
    said = [f"Detail number {i}: " + "meal planning matters " * 10 for i in range(6)]
    for text in said:
        setup.fake.reply_text("Got it.")
        await setup.say(text)
    summary_requests = [r for r in setup.fake.requests if not r.get("tools")]
    assert summary_requests, "older turns were summarised"
    assert "Detail number 0" in str(summary_requests[0]["messages"])
    summary = (
        (
            await setup.session.execute(
                select(ConversationSummary).order_by(ConversationSummary.through_message_id.desc())
            )
        )
        .scalars()
        .first()
    )
    assert summary is not None
    last = setup.fake.requests[-1]
    assert summary.summary in last["system"][1]["text"]
    assert "Detail number 5" in str(last["messages"])
    assert "Detail number 0" not in str(last["messages"])
    stored = (
        await setup.session.execute(select(func.count()).select_from(ConversationMessage))
    ).scalar_one()
    assert stored == 12  # every message kept, whatever the model saw


async def test_the_token_cap_stops_the_agent(setup: Setup) -> None:
    setup.agent.max_tokens_per_project = 50
    setup.fake.reply_text("x " * 200)
    await setup.say("A long answer please " * 20)
    assert setup.project.ai_tokens_used >= 50
    count = setup.fake.request_count
    assert await setup.say("And another") == BUDGET_REACHED
    assert setup.fake.request_count == count


async def test_an_unreachable_ai_is_explained_remembered_and_forgotten(setup: Setup) -> None:
    setup.fake.down = True
    assert await setup.say("Hello?") == UNAVAILABLE
    assert await ai_outage(setup.session) is not None
    assert await setup.say("Still there?") == UNAVAILABLE
    requests = setup.fake.request_count
    assert await setup.say("Hello again") == UNAVAILABLE
    assert setup.fake.request_count == requests  # the circuit is open: no request sent
    setup.fake.down = False
    setup.gateway.breaker.reset_after_seconds = 0
    setup.fake.reply_text("I'm back.")
    assert await setup.say("And now?") == "I'm back."
    assert await ai_outage(setup.session) is None
    said = str(setup.fake.requests[-1]["messages"])
    assert "Hello?" in said  # what was said during the outage reached the model


async def test_health_ai_reports_what_the_worker_saw(
    tmp_path: Path, database_url: str, db: Database, fake: tuple[FakeAnthropic, str]
) -> None:
    from project_orchestrator.agent.status import record_ai
    from project_orchestrator.app import create_app

    settings = make_settings(
        tmp_path,
        database_url=database_url,
        anthropic_api_key=KEY,
        anthropic_base_url=fake[1],
    )

    async def probe() -> dict[str, Any]:
        app = create_app(settings)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/health/ai")
                assert response.status_code == 200
                body: dict[str, Any] = response.json()
                return body

    assert (await probe())["status"] == "healthy"
    async with db.session_scope() as session:
        await record_ai(session, healthy=False, detail="AI API answered 529 (overloaded)")
    degraded = await probe()
    assert degraded["status"] == "degraded"
    assert degraded["ai_service"] == "unreachable"
    assert "529" in degraded["detail"]
    async with db.session_scope() as session:
        await record_ai(session, healthy=True)
    assert (await probe())["status"] == "healthy"


async def test_holding_in_words_uses_the_same_service_and_its_rules(setup: Setup) -> None:
    run = await setup.agent.workflow.start_run(setup.session, setup.project, setup.actor, "x")
    setup.fake.reply([tool_use("hold_build")], "tool_use")
    setup.fake.reply_text("Paused.")
    assert await setup.say("Please pause everything") == "Paused."
    assert run.status.value == "on_hold"
    outsider = Actor(await github_identity(setup.session, "mallory"), Channel.GITHUB)
    setup.fake.reply([tool_use("resume_build")], "tool_use")
    setup.fake.reply_text("I can't.")
    await setup.agent.respond(setup.session, setup.project, outsider, "resume it")
    result = setup.fake.requests[-1]["messages"][-1]["content"][0]
    assert result["is_error"] is True
    assert "owner" in result["content"]
    assert run.status.value == "on_hold"
