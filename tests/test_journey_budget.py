"""Journeys that reach an AI budget: the agent stops, the message waits, only the owner's
`/budget` raises it (audited), and the waiting message is then answered."""

from __future__ import annotations

import json

from sqlalchemy import select

from project_orchestrator.projects.models import BudgetRequest, BudgetScope, Project
from tests.support.journey import BRAINSTORM, Journey, brainstorm_to_vision_gate, script_brainstorm


def audit_lines(journey: Journey, action: str) -> list[dict[str, object]]:
    lines = journey.settings.audit_log_path.read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["action"] == action]


async def requests(journey: Journey) -> list[BudgetRequest]:
    async with journey.db.session_scope() as session:
        return list((await session.execute(select(BudgetRequest))).scalars())


async def used(journey: Journey) -> int:
    async with journey.db.session_scope() as session:
        return (await session.execute(select(Project.ai_tokens_used))).scalar_one()


async def test_the_project_budget_stops_the_agent_and_the_owner_raises_it(
    journey: Journey,
) -> None:
    journey.settings = journey.settings.model_copy(update={"ai_max_tokens_per_project": 50})
    script_brainstorm(journey.anthropic)
    await journey.comment(BRAINSTORM[0])
    assert "Who is it for" in journey.last_reply()
    spent = await used(journey)
    assert spent > 50
    calls = journey.anthropic.request_count

    await journey.comment(BRAINSTORM[1])  # over budget: stopped, kept
    stopped = journey.last_reply()
    assert stopped.startswith(f"This project has used its AI budget ({spent:,} of 50 tokens)")
    assert "`/budget" in stopped
    assert journey.anthropic.request_count == calls
    [request] = await requests(journey)
    assert (request.scope, request.limit_tokens, request.raised_to) == (
        BudgetScope.PROJECT,
        50,
        None,
    )
    await journey.comment("@orchestrator and one more thing")  # still one request
    assert len(await requests(journey)) == 1

    await journey.comment("@orchestrator /budget 1000000", login="bob", association="MEMBER")
    assert "Only the project's owner" in journey.last_reply()
    assert audit_lines(journey, "unauthorized_access")[-1]["details"] == {"attempted": "budget"}
    await journey.comment("@orchestrator /budget 10")
    assert "not more than the" in journey.last_reply()
    await journey.comment("@orchestrator /budget lots")
    assert "for example `/budget 3000000`" in journey.last_reply()
    assert audit_lines(journey, "budget_raised") == []

    await journey.comment("@orchestrator /budget 1m")
    assert any(
        "The AI budget of the project is now 1,000,000 tokens" in c for c in journey.bot_comments()
    )
    [raised] = audit_lines(journey, "budget_raised")
    assert raised["user_id"] == "github:ada"
    assert raised["details"] == {
        "scope": "project",
        "run": None,
        "from": 50,
        "to": 1_000_000,
        "via": "github",
    }
    # The messages that waited are answered (the newest answer covers both), once.
    assert journey.anthropic.request_count > calls
    assert "What should it do" in journey.last_reply()
    [request] = await requests(journey)
    assert request.raised_to == 1_000_000
    assert request.decided_at is not None


async def test_a_build_budget_stops_the_agent_within_that_build(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    journey.settings = journey.settings.model_copy(update={"ai_max_tokens_per_run": 1})
    calls = journey.anthropic.request_count
    journey.anthropic.reply_text("Happy to change the name.")
    await journey.comment("@orchestrator Can we call it Dinner Planner?")
    assert journey.last_reply().startswith("This build has used its AI budget")
    assert journey.anthropic.request_count == calls
    [request] = await requests(journey)
    assert request.scope is BudgetScope.RUN
    assert request.run_id == (await journey.run()).id

    await journey.comment("@orchestrator /budget 5m")
    assert any(
        "The AI budget of build #1 is now 5,000,000 tokens" in c for c in journey.bot_comments()
    )
    assert (await journey.run()).ai_token_limit == 5_000_000
    assert journey.last_reply().startswith("Happy to change the name.")
    [raised] = audit_lines(journey, "budget_raised")
    assert raised["details"]["scope"] == "run"  # type: ignore[index]
    assert raised["details"]["run"] == 1  # type: ignore[index]
