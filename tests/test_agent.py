"""The agent turn against a fake Messages API through the real SDK, on a real database."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from asgi_lifespan import LifespanManager
from pgqueuer.errors import RetryRequested
from sqlalchemy import func, select

from project_orchestrator import metrics
from project_orchestrator.agent.breaker import CircuitBreaker
from project_orchestrator.agent.llm import ModelGateway
from project_orchestrator.agent.llm_anthropic import AnthropicBackend
from project_orchestrator.agent.models import (
    AgentTurn,
    ConversationMessage,
    ConversationSummary,
    TurnStatus,
)
from project_orchestrator.agent.protocol import ReplyTo
from project_orchestrator.agent.status import ai_outage
from project_orchestrator.agent.tools import TOOLS
from project_orchestrator.agent.turns import GAVE_UP, STILL_TRYING
from project_orchestrator.channels.models import OutboundMessage
from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.projects.budget import (
    WAITING_FOR_BUDGET,
    Budgets,
    Limits,
    suggested_budget,
)
from project_orchestrator.projects.models import AiUsage, BudgetRequest, Project
from project_orchestrator.projects.service import (
    Actor,
    github_identity,
    lock_project,
)
from project_orchestrator.vision.models import BrainstormNote
from project_orchestrator.workflow.models import RunStatus, WorkflowRun
from tests.conftest import make_settings
from tests.support.agent_setup import Setup
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_http import FakeServer
from tests.support.journey import tool_use

KEY = "sk-ant-test-key-000000"

AnthropicSetup = Setup[FakeAnthropic]


@pytest.fixture
def fake() -> Iterator[tuple[FakeAnthropic, str]]:
    server_fake = FakeAnthropic()
    with FakeServer(server_fake.app) as server:
        yield server_fake, server.url


@pytest.fixture
async def setup(db: Database, fake: tuple[FakeAnthropic, str], tmp_path: Path) -> AnthropicSetup:
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=fake[1], max_retries=0)
    gateway = ModelGateway(
        AnthropicBackend(client), "claude-test", CircuitBreaker(failure_threshold=2)
    )
    return await Setup(db, fake[0], gateway, tmp_path).start()


async def test_the_model_sees_the_project_and_a_cached_stable_prefix(
    setup: AnthropicSetup,
) -> None:
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


async def test_every_message_is_stored_and_tokens_are_counted(setup: AnthropicSetup) -> None:
    before = metrics.ai_tokens_total.labels("output")._value.get()
    setup.fake.reply_text("Nice.")
    await setup.say("A meal planner")
    async with setup.db.session_scope() as session:
        rows = (await session.execute(select(ConversationMessage))).scalars().all()
    assert [(m.role.value, m.content) for m in rows] == [
        ("user", "A meal planner"),
        ("assistant", "Nice."),
    ]
    assert rows[0].author_id == setup.actor_id
    assert rows[1].tokens > 0
    assert (await setup.project()).ai_tokens_used == rows[1].tokens
    assert metrics.ai_tokens_total.labels("output")._value.get() > before


async def test_tools_act_as_the_person_of_the_job_not_as_the_model_says(
    setup: AnthropicSetup,
) -> None:
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
    async with setup.db.session_scope() as session:
        note = (await session.execute(select(BrainstormNote))).scalar_one()
    assert note.author_id == setup.actor_id
    follow_up = setup.fake.requests[1]["messages"]
    result = follow_up[-1]["content"][0]
    assert result["type"] == "tool_result"
    assert "Still missing" in result["content"]


async def test_no_tool_can_approve_a_gate(setup: AnthropicSetup) -> None:
    names = {tool.name for tool in TOOLS}
    assert not any("approve" in n or "reject" in n or "decide" in n for n in names)
    setup.fake.reply([tool_use("approve_gate", {"gate": "any"})], "tool_use")
    setup.fake.reply_text("I can't approve for you: please say /approve.")
    await setup.say("Approve it for me")
    result = setup.fake.requests[1]["messages"][-1]["content"][0]
    assert result["is_error"] is True
    assert "no tool called approve_gate" in result["content"]


async def test_tool_rounds_are_capped(setup: AnthropicSetup) -> None:
    for _ in range(10):
        setup.fake.reply([tool_use("get_project_status")], "tool_use")
    answer = await setup.say("status?")
    assert setup.fake.request_count == setup.agent.tool_rounds
    # The rounds ran out mid-tool-use: the person still gets a plain answer, not silence.
    assert answer == "I have done what I can for now. What would you like next?"


async def test_replies_never_show_code(setup: AnthropicSetup) -> None:
    setup.fake.reply_text("Here you go:\n```python\nprint('hi')\n```\nAll set.")
    answer = await setup.say("show me") or ""
    assert "print" not in answer
    assert "All set." in answer


async def test_long_conversations_are_summarised_and_nothing_is_lost(
    setup: AnthropicSetup,
) -> None:
    setup.agent.history_budget = 200  # tokens: a few messages
    said = [f"Detail number {i}: " + "meal planning matters " * 10 for i in range(6)]
    for text in said:
        setup.fake.reply_text("Got it.")
        await setup.say(text)
    summary_requests = [r for r in setup.fake.requests if not r.get("tools")]
    assert summary_requests, "older turns were summarised"
    assert "Detail number 0" in str(summary_requests[0]["messages"])
    async with setup.db.session_scope() as session:
        summary = (
            (
                await session.execute(
                    select(ConversationSummary).order_by(
                        ConversationSummary.through_message_id.desc()
                    )
                )
            )
            .scalars()
            .first()
        )
        stored = (
            await session.execute(select(func.count()).select_from(ConversationMessage))
        ).scalar_one()
    assert summary is not None
    last = setup.fake.requests[-1]
    assert summary.summary in last["system"][1]["text"]
    assert "Detail number 5" in str(last["messages"])
    assert "Detail number 0" not in str(last["messages"])
    assert stored == 12  # every message kept, whatever the model saw
    # Every call is charged, the summaries' too: one ledger line each.
    async with setup.db.session_scope() as session:
        ledger = (await session.execute(select(AiUsage))).scalars().all()
    assert len(ledger) == len(setup.fake.requests)
    assert (await setup.project()).ai_tokens_used == sum(
        u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_tokens
        for u in ledger
    )


async def test_the_token_cap_stops_the_agent(setup: AnthropicSetup) -> None:
    setup.agent.budgets = Budgets(setup.audit, Limits(per_project=50, per_run=10**9))
    setup.fake.reply_text("x " * 200)
    await setup.say("A long answer please " * 20)
    used = (await setup.project()).ai_tokens_used
    assert used >= 50
    count = setup.fake.request_count
    stopped = await setup.say("And another")
    assert stopped is not None
    assert stopped.startswith(f"This project has used its AI budget ({used:,} of 50 tokens)")
    assert setup.fake.request_count == count


@dataclass
class WhileThinking:
    """The gateway, with something the person does while the model thinks."""

    inner: ModelGateway
    setup: AnthropicSetup
    done: bool = False

    @property
    def breaker(self) -> CircuitBreaker:
        return self.inner.breaker

    @property
    def model(self) -> str:
        return self.inner.model


@dataclass
class SaysMoreWhileThinking(WhileThinking):
    """The person writes again while the model is still answering the first message."""

    said: str | None = None  # what storing it answered at once (None: queued)
    reply_to: ReplyTo = field(default_factory=lambda: ReplyTo.github("acme/meals", 1, "reply:more"))

    async def create(self, **request: Any) -> Any:
        if not self.done:
            self.done = True
            async with self.setup.db.session_scope() as session:
                project = await session.get(Project, self.setup.project_id)
                assert project is not None
                actor = Actor(await github_identity(session, "ada"), Channel.GITHUB)
                # Within budget when it is stored: nothing has been charged yet.
                self.said = await self.setup.agent.respond(
                    session,
                    project,
                    actor,
                    "And one more thing",
                    self.reply_to,
                )
        return await self.inner.create(**request)


async def test_a_message_that_arrived_before_the_cap_was_reached_waits_too(
    setup: AnthropicSetup,
) -> None:
    setup.agent.budgets = Budgets(setup.audit, Limits(per_project=50, per_run=10**9))
    thinking = SaysMoreWhileThinking(setup.gateway, setup)
    setup.agent.gateway = thinking  # type: ignore[assignment]
    setup.fake.reply_text("x " * 200)
    await setup.say("A long answer please " * 20)
    assert thinking.done
    assert thinking.said is None  # the second message was queued, not refused
    # The first answer went over the cap; the second message waits for the owner instead
    # of costing another model call.
    assert setup.fake.request_count == 1
    told = await setup.told("reply:more:budget")
    assert told is not None
    assert told.startswith("This project has used its AI budget")
    async with setup.db.session_scope() as session:
        waiting = (
            await session.execute(select(AgentTurn).order_by(AgentTurn.id.desc()).limit(1))
        ).scalar_one()
    assert waiting.status is TurnStatus.PENDING
    assert waiting.not_before == WAITING_FOR_BUDGET


async def test_in_a_chat_that_wait_comes_with_the_button_that_raises_the_budget(
    setup: AnthropicSetup,
) -> None:
    setup.agent.budgets = Budgets(setup.audit, Limits(per_project=50, per_run=10**9))
    thinking = SaysMoreWhileThinking(setup.gateway, setup)
    thinking.reply_to = ReplyTo.telegram(4242, "tg-reply:more")
    setup.agent.gateway = thinking  # type: ignore[assignment]
    setup.fake.reply_text("x " * 200)
    await setup.say("A long answer please " * 20)
    assert thinking.said is None
    async with setup.db.session_scope() as session:
        told = (
            await session.execute(
                select(OutboundMessage).where(
                    OutboundMessage.idempotency_key == "tg-reply:more:budget"
                )
            )
        ).scalar_one()
        request = (await session.execute(select(BudgetRequest))).scalar_one()
    assert told.body.startswith("This project has used its AI budget")
    assert told.payload is not None
    assert told.payload["chat_id"] == 4242
    assert told.payload["budget"] == {
        "request_id": str(request.id),
        "amount": suggested_budget(request.used_tokens, request.limit_tokens),
    }


async def test_an_unreachable_ai_is_retried_by_itself_and_a_newer_message_supersedes(
    setup: AnthropicSetup,
) -> None:
    setup.fake.down = True
    assert await setup.say("Hello?") is None  # no answer yet: the turn waits to try again
    assert await setup.told("reply:1:still-trying") == STILL_TRYING  # said once
    async with setup.db.session_scope() as session:
        assert await ai_outage(session) is not None
    with contextlib.suppress(RetryRequested):
        await setup.turns.run(setup.project_id, "job-test")  # the queue's retry: still down
    assert await setup.turn_statuses() == [TurnStatus.PENDING]
    assert await setup.told("reply:1:still-trying") == STILL_TRYING
    assert await setup.say("Still there?") is None  # the circuit is open now: no request
    requests = setup.fake.request_count
    assert await setup.turn_statuses() == [TurnStatus.SUPERSEDED, TurnStatus.PENDING]

    setup.fake.down = False
    setup.gateway.breaker.reset_after_seconds = 0
    setup.fake.reply_text("I'm back.")
    await setup.turns.run(setup.project_id, "job-test")  # the newer turn's retry
    assert await setup.told("reply:2") == "I'm back."
    assert await setup.told("reply:1") is None  # the newer answer covered both
    assert setup.fake.request_count == requests + 1
    assert await setup.turn_statuses() == [TurnStatus.SUPERSEDED, TurnStatus.ANSWERED]
    async with setup.db.session_scope() as session:
        assert await ai_outage(session) is None
    said = str(setup.fake.requests[-1]["messages"])
    assert "Hello?" in said  # what was said during the outage reached the model
    assert "Still there?" in said


async def test_an_ai_away_for_the_whole_window_is_said_plainly(setup: AnthropicSetup) -> None:
    setup.turns.retry_window = timedelta(0)
    setup.fake.down = True
    assert await setup.say("Hello?") == GAVE_UP
    assert await setup.turn_statuses() == [TurnStatus.FAILED]


@dataclass
class DecidesWhileThinking(WhileThinking):
    """The person cancels the build while the model is thinking about holding it."""

    async def create(self, **request: Any) -> Any:
        reply = await self.inner.create(**request)
        if not self.done:
            self.done = True
            async with self.setup.db.session_scope() as session:
                project = await lock_project(session, self.setup.project_id)
                owner = Actor(await github_identity(session, "ada"), Channel.GITHUB)
                await self.setup.agent.workflow.cancel(session, project, owner)
        return reply


async def test_a_decision_made_while_the_model_thinks_wins_over_its_tool_call(
    setup: AnthropicSetup,
) -> None:
    async with setup.db.session_scope() as session:
        project = await lock_project(session, setup.project_id)
        owner = Actor(await github_identity(session, "ada"), Channel.GITHUB)
        await setup.agent.workflow.start_run(session, project, owner, "x")
    setup.agent.gateway = DecidesWhileThinking(setup.gateway, setup)  # type: ignore[assignment]
    setup.fake.reply([tool_use("hold_build")], "tool_use")
    setup.fake.reply_text("You had cancelled it meanwhile, so there is nothing to pause.")
    assert "cancelled" in (await setup.say("Please pause the build") or "")
    result = setup.fake.requests[-1]["messages"][-1]["content"][0]
    assert result["is_error"] is True
    assert "the project changed" in result["content"]
    async with setup.db.session_scope() as session:
        statuses = (await session.execute(select(WorkflowRun.status))).scalars().all()
    assert statuses == [RunStatus.CANCELLED]  # the person's decision stands, not the hold


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


async def test_holding_in_words_uses_the_same_service_and_its_rules(
    setup: AnthropicSetup,
) -> None:
    async with setup.db.session_scope() as session:
        project = await lock_project(session, setup.project_id)
        owner = Actor(await github_identity(session, "ada"), Channel.GITHUB)
        run = await setup.agent.workflow.start_run(session, project, owner, "x")
    setup.fake.reply([tool_use("hold_build")], "tool_use")
    setup.fake.reply_text("Paused.")
    assert await setup.say("Please pause everything") == "Paused."
    assert await run_status(setup, run.id) == RunStatus.ON_HOLD
    setup.fake.reply([tool_use("resume_build")], "tool_use")
    setup.fake.reply_text("I can't.")
    await setup.say("resume it", login="mallory")
    result = setup.fake.requests[-1]["messages"][-1]["content"][0]
    assert result["is_error"] is True
    assert "owner" in result["content"]
    assert await run_status(setup, run.id) == RunStatus.ON_HOLD


async def run_status(setup: AnthropicSetup, run_id: uuid.UUID) -> RunStatus:
    async with setup.db.session_scope() as session:
        run = await session.get(WorkflowRun, run_id)
        assert run is not None
        return run.status


async def test_a_message_stored_after_its_turn_was_chosen_is_left_to_its_own_turn(
    setup: AnthropicSetup,
) -> None:
    """Each statement sees what has committed by then: a message stored between choosing
    the turn and reading the history must not be answered twice (there and by its own)."""
    setup.fake.reply_text("Noted.")
    await setup.say("first")
    for text in ("second", "third"):
        async with setup.db.session_scope() as session:
            project = await session.get(Project, setup.project_id)
            assert project is not None
            owner = Actor(await github_identity(session, "ada"), Channel.GITHUB)
            await setup.agent.respond(
                session, project, owner, text, ReplyTo.github("acme/meals", 1, text)
            )
    async with setup.db.session_scope() as session:
        project = await session.get(Project, setup.project_id)
        assert project is not None
        ids = dict(
            (
                await session.execute(select(ConversationMessage.content, ConversationMessage.id))
            ).all()
        )
        history = await setup.agent.history(session, project.id, ids["second"])
    assert [m.content for m in history.messages] == ["first", "Noted.", "second"]
