"""End to end on Telegram: from "hi" to a merged pull request with buttons, and mixed channels."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from sqlalchemy import select

from project_orchestrator.app import create_app
from project_orchestrator.db.engine import Database
from project_orchestrator.projects.models import Identity, Project
from project_orchestrator.workflow.models import ApprovalGate, Phase, RunStatus
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_github import FakeGitHub
from tests.support.fake_scar import FakeScar
from tests.support.fake_telegram import FakeTelegram, callback_update, text_update
from tests.support.journey import (
    BRAINSTORM,
    REPO,
    Journey,
    journey_settings,
    script_brainstorm,
    tool_use,
)

CHAT = 4242
USER = 111
STRANGER = 999
TG_SECRET = "tg-secret-token-123"
_update_ids = itertools.count(1)


class Chat(Journey):
    """The journey, driven from a Telegram chat through `POST /webhooks/telegram`."""

    telegram: FakeTelegram

    async def send(self, text: str, *, user: int = USER) -> None:
        await self._deliver(text_update(next(_update_ids), CHAT, user, text))

    async def tap(self, data: str, message_id: int, *, user: int = USER) -> None:
        await self._deliver(
            callback_update(next(_update_ids), CHAT, user, data, message_id=message_id)
        )

    async def _deliver(self, update: dict[str, Any]) -> None:
        app = create_app(self.settings)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(
                    "/webhooks/telegram",
                    json=update,
                    headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET},
                )
        assert response.status_code == 200, response.text
        await self.work()

    def said(self) -> list[dict[str, Any]]:
        return self.telegram.messages(CHAT)

    def last(self) -> str:
        return str(self.said()[-1]["plain"])

    def question(self) -> dict[str, Any]:
        """The newest message with Approve / Reject buttons."""
        asked = [m for m in self.said() if m.get("reply_markup")]
        assert asked, (
            f"no question with buttons was asked: {[m['plain'][:60] for m in self.said()]}"
        )
        return asked[-1]

    def button(self, message: dict[str, Any], label: str) -> str:
        rows = message["reply_markup"]["inline_keyboard"]
        for row in rows:
            for button in row:
                if label in button["text"]:
                    return str(button["callback_data"])
        raise AssertionError(f"no {label} button")


@pytest.fixture
def chat(
    tmp_path: Path,
    database_url: str,
    db: Database,
    github: FakeGitHub,
    anthropic: tuple[FakeAnthropic, str],
    scar: tuple[FakeScar, str],
    telegram: tuple[FakeTelegram, str],
) -> Chat:
    settings = journey_settings(
        tmp_path,
        database_url,
        github,
        anthropic[1],
        scar[1],
        telegram_bot_token="123456:TEST-token",
        telegram_api_base_url=telegram[1],
        telegram_webhook_secret=TG_SECRET,
        TELEGRAM_MODE="webhook",
        telegram_allowed_user_ids=[USER],
    )
    journey = Chat(tmp_path, database_url, db, settings, github, anthropic[0], scar[0])
    journey.telegram = telegram[0]
    return journey


async def brainstorm_on_telegram(
    chat: Chat, *, repo: str | None = REPO, name: str = "Meal planner"
) -> None:
    """/start, /new, the agent linking `repo` (None: no repository), then the brainstorm."""
    await chat.send("/start")
    assert "/new" in chat.last()
    await chat.send(f"/new {name}")
    if repo is not None:
        chat.anthropic.reply([tool_use("link_github_repo", {"repo": repo})], "tool_use")
        chat.anthropic.reply_text("Linked it. Tell me about the idea!")
        await chat.send(f"The code lives in {repo}")
    script_brainstorm(chat.anthropic)
    for message in BRAINSTORM:
        await chat.send(message.removeprefix("@orchestrator "))


async def test_from_hi_to_a_merged_pull_request_with_buttons(chat: Chat) -> None:
    await brainstorm_on_telegram(chat)
    vision = chat.question()
    assert "is this what you want" in vision["plain"]
    assert "A weekly meal plan" in vision["plain"]
    assert chat.telegram.chat_actions, "typing was shown while the agent thought"

    await chat.tap(chat.button(vision, "Approve"), vision["message_id"])
    assert chat.telegram.callback_answers, "the tap was answered"
    plan = chat.question()
    assert "SCAR has a plan" in plan["plain"]

    await chat.tap(chat.button(plan, "Reject"), plan["message_id"])
    assert "What should change" in chat.last()
    await chat.send("Start with the shopping list only")
    plans = [c for c in chat.scar_commands() if "plan-feature-github" in c]
    assert len(plans) == 2
    assert "shopping list only" in plans[1]

    # A second tap on the first plan's buttons: that question is already decided.
    answers = len(chat.telegram.callback_answers)
    await chat.tap(chat.button(plan, "Approve"), plan["message_id"])
    assert "Already decided" in chat.telegram.callback_answers[answers]["text"]

    new_plan = chat.question()
    await chat.tap(chat.button(new_plan, "Approve"), new_plan["message_id"])
    merge = chat.question()
    assert "Shall I merge it?" in merge["plain"]
    await chat.tap(chat.button(merge, "Approve"), merge["message_id"])
    run = await chat.run()
    assert run.status is RunStatus.COMPLETED
    assert any("Done!" in m["plain"] for m in chat.said())
    progress = [m for m in chat.said() if "Build #1" in m["plain"]]
    assert progress
    assert any(m["edits"] > 0 for m in progress), "progress is edited in place"
    assert len(progress) <= 8, "one progress message per phase, not a flood"


async def test_at_its_budget_the_agent_offers_a_button_that_raises_it(chat: Chat) -> None:
    chat.settings = chat.settings.model_copy(update={"ai_max_tokens_per_project": 50})
    await chat.send("/start")
    await chat.send("/new Meal planner")
    chat.anthropic.reply_text("Lovely! Who is it for?")
    await chat.send("An app that plans family meals")
    assert "Who is it for" in chat.last()
    calls = chat.anthropic.request_count
    chat.anthropic.reply_text("Busy parents it is. What should it do?")
    await chat.send("Busy parents")
    stopped = chat.said()[-1]
    assert "has used its AI budget" in stopped["plain"]
    assert chat.anthropic.request_count == calls
    data = chat.button(stopped, "Raise the budget")
    assert data.startswith("budget:")
    assert len(data.encode()) <= 64  # Telegram's limit for callback data

    await chat.tap(data, stopped["message_id"])
    assert "now" in chat.telegram.callback_answers[-1]["text"]
    assert any("Busy parents it is" in m["plain"] for m in chat.said())
    assert "budget_raised" in chat.audit_actions()

    await chat.tap(data, stopped["message_id"])  # a second tap: already done
    assert "Already raised" in chat.telegram.callback_answers[-1]["text"]
    assert chat.audit_actions().count("budget_raised") == 1


async def test_a_stranger_gets_one_refusal(chat: Chat) -> None:
    await chat.send("/start", user=STRANGER)
    await chat.send("hello?", user=STRANGER)
    refusals = [m for m in chat.said() if "this bot is private" in m["plain"]]
    assert len(refusals) == 1
    assert chat.audit_actions().count("unauthorized_access") == 2


async def test_second_start_never_duplicates_and_the_project_survives(chat: Chat) -> None:
    await chat.send("/start")
    await chat.send("/new Meal planner")
    await chat.send("/start")
    await chat.send("/new meal planner")
    async with chat.db.session_scope() as session:
        projects = (await session.execute(select(Project))).scalars().all()
    assert [p.name for p in projects] == ["Meal planner"]
    assert "(current)" in chat.said()[-2]["plain"] or "already have" in chat.last()
    chat.anthropic.reply_text("Still here, still on the meal planner.")
    await chat.send("Where were we?")  # a fresh app and worker: the choice was stored
    assert "meal planner" in chat.last().lower()
    assert "Name: Meal planner" in chat.anthropic.requests[-1]["system"][1]["text"]


async def test_start_on_telegram_and_approve_the_plan_on_github(chat: Chat) -> None:
    await brainstorm_on_telegram(chat)
    await chat.send("/link ada")
    code = re.search(r"LINK-[A-Z0-9]{8}", chat.last())
    assert code is not None
    await chat.comment(f"@orchestrator /link {code.group(0)}", login="ada")
    assert "Linked!" in chat.last_reply()
    async with chat.db.session_scope() as session:
        people = (await session.execute(select(Identity))).scalars().all()
    assert [(p.telegram_user_id, p.github_login) for p in people] == [(USER, "ada")]

    vision = chat.question()
    await chat.tap(chat.button(vision, "Approve"), vision["message_id"])
    assert (await chat.run()).current_phase is Phase.PLAN
    await chat.comment("@orchestrator /approve", login="ada")  # the plan, from GitHub
    run = await chat.run()
    assert run.current_phase is Phase.MERGE
    assert chat.audit_actions().count("approval_granted") == 2
    merge = chat.question()
    assert "Shall I merge it?" in merge["plain"]  # the next question comes to Telegram too


async def test_a_project_without_a_repository_gets_one_created(chat: Chat) -> None:
    chat.github.add_org("acme")
    chat.settings = chat.settings.model_copy(update={"github_repo_owner": "acme"})
    await brainstorm_on_telegram(chat, repo=None)
    vision = chat.question()
    await chat.tap(chat.button(vision, "Approve"), vision["message_id"])

    assert chat.github.created_repositories() == ["acme/meal-planner"]
    assert chat.github.repo_private("acme/meal-planner")
    assert "[orchestrator:" in (chat.github.repo_description("acme/meal-planner") or "")
    assert chat.github.file("acme/meal-planner", "docs/vision.md") is not None
    told = [m["plain"] for m in chat.said() if "acme/meal-planner" in m["plain"]]
    assert any("I made a private GitHub repository" in t for t in told)
    async with chat.db.session_scope() as session:
        project = (await session.execute(select(Project))).scalar_one()
    assert project.github_repo == "acme/meal-planner"
    clones = [t for t in chat.scar.invocations if t.startswith("/clone")]
    assert len(clones) == 1
    assert clones[0].endswith("/acme/meal-planner")
    assert chat.audit_actions().count("repository_created") == 1
    run = await chat.run()
    assert run.current_phase is Phase.PLAN
    assert run.github_repo == "acme/meal-planner"


async def test_a_taken_name_gets_a_suffix(chat: Chat) -> None:
    chat.github.add_org("acme")
    chat.github.add_repo("acme/meal-planner")  # someone else's
    chat.settings = chat.settings.model_copy(update={"github_repo_owner": "acme"})
    await brainstorm_on_telegram(chat, repo=None)
    vision = chat.question()
    await chat.tap(chat.button(vision, "Approve"), vision["message_id"])
    assert chat.github.created_repositories() == ["acme/meal-planner-2"]
    assert (await chat.run()).github_repo == "acme/meal-planner-2"


async def test_without_a_repository_owner_the_person_is_asked_for_one(chat: Chat) -> None:
    await brainstorm_on_telegram(chat, repo=None)
    vision = chat.question()
    await chat.tap(chat.button(vision, "Approve"), vision["message_id"])
    run = await chat.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.PRIME
    assert any("Tell me which repository to use" in m["plain"] for m in chat.said())
    assert chat.github.created_repositories() == []
    assert chat.scar.invocations == []


async def test_relinking_while_the_vision_question_waits_asks_it_again(chat: Chat) -> None:
    await brainstorm_on_telegram(chat)
    first = chat.question()
    chat.anthropic.reply([tool_use("link_github_repo", {"repo": "acme/meals"})], "tool_use")
    chat.anthropic.reply_text("Linked acme/meals.")
    await chat.send("Please use acme/meals for the code instead")
    async with chat.db.session_scope() as session:
        gates = (await session.execute(select(ApprovalGate))).scalars().all()
    assert sorted(g.status.value for g in gates) == ["pending", "voided"]
    again = chat.question()
    assert again["message_id"] != first["message_id"]
    # The old question's buttons no longer decide anything.
    answers = len(chat.telegram.callback_answers)
    await chat.tap(chat.button(first, "Approve"), first["message_id"])
    assert chat.telegram.callback_answers[answers]["text"]
    assert (await chat.run()).current_phase is Phase.VISION
    await chat.tap(chat.button(again, "Approve"), again["message_id"])
    run = await chat.run()
    assert run.github_repo == "acme/meals"
    assert chat.audit_actions().count("repository_linked") == 2


async def test_the_repository_cannot_change_under_an_approved_build(chat: Chat) -> None:
    await brainstorm_on_telegram(chat)
    vision = chat.question()
    await chat.tap(chat.button(vision, "Approve"), vision["message_id"])
    assert (await chat.run()).current_phase is Phase.PLAN
    chat.anthropic.reply([tool_use("link_github_repo", {"repo": "acme/other"})], "tool_use")
    chat.anthropic.reply_text("I could not switch the repository.")
    await chat.send("Please build it in acme/other instead")
    tool_result = str(chat.anthropic.requests[-1]["messages"][-1])
    assert f"is working on {REPO}" in tool_result
    async with chat.db.session_scope() as session:
        project = (await session.execute(select(Project))).scalar_one()
    assert project.github_repo == REPO
    assert (await chat.run()).github_repo == REPO


async def test_a_github_io_repository_is_built_in_the_folder_scar_made(chat: Chat) -> None:
    site = "acme/site.github.io"
    chat.github.add_repo(site)
    await brainstorm_on_telegram(chat, repo=site, name="Family site")
    for _gate in ("vision", "plan", "merge"):
        question = chat.question()
        await chat.tap(chat.button(question, "Approve"), question["message_id"])
    assert (await chat.run()).status is RunStatus.COMPLETED
    async with chat.db.session_scope() as session:
        project = (await session.execute(select(Project))).scalar_one()
    assert project.scar_codebase == "sitehub.io"  # SCAR's folder, not the repository's name

    await chat.send("/build A page with our holiday photos")
    run = await chat.run()
    assert run.number == 2
    assert run.current_phase is Phase.PLAN
    opened = [t for t in chat.scar.invocations if t.startswith(("/repo", "/clone"))]
    assert opened[0] == "/repo site.github.io pull"
    assert opened[1].startswith("/clone http")
    assert opened[1].endswith(f"/{site}")
    # The second run's conversation opens the folder SCAR made.
    assert opened[2:] == ["/repo sitehub.io pull"]


async def test_page_in_the_chat_sends_a_link_that_opens_the_page(chat: Chat) -> None:
    chat.settings = chat.settings.model_copy(
        update={
            "public_base_url": "https://orch.example.test",
            "page_link_secret": SecretStr("page-link-secret-0123456789"),
        }
    )
    await brainstorm_on_telegram(chat)
    assert "https://orch.example.test/page/" in chat.question()["plain"]
    await chat.send("/page")
    found = re.search(r"https://orch\.example\.test(/page/\S+)", chat.last())
    assert found is not None, chat.last()
    async with LifespanManager(create_app(chat.settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            page = await client.get(found.group(1))
    assert page.status_code == 200
    assert "Meal planner: Vision" in page.text
    assert "Waiting for your decision" in page.text
