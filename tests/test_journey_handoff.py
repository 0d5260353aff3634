"""The SCAR handoff, end to end on GitHub against a fake SCAR that behaves like the real one:
SCAR reads the approved vision before it plans, builds the person's words, loads a
template's commands, and survives its own restarts and its AI failing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from project_orchestrator.projects.models import Project
from project_orchestrator.scar.models import ScarCommand
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.workflow.models import ApprovalGate, GateStatus, Phase, RunStatus
from tests.support.fake_github import FakeGitHub
from tests.support.fake_http import FakeServer
from tests.support.fake_scar import FakeScar
from tests.support.journey import (
    REPO,
    Journey,
    brainstorm_to_vision_gate,
    tool_use,
)


@pytest.fixture
def real_scar(github: FakeGitHub) -> Iterator[tuple[FakeScar, str]]:
    """SCAR whose clones and pulls see what the fake GitHub holds."""
    fake = FakeScar(files_source=github.files)
    with FakeServer(fake.app) as server:
        yield fake, server.url


@pytest.fixture
def journey_scar(real_scar: tuple[FakeScar, str]) -> tuple[FakeScar, str]:
    return real_scar


@pytest.fixture
def journey_overrides() -> dict[str, Any]:
    return {"scar_ai_retry_backoff_seconds": 0.01}


async def approve_to_plan_gate(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    await journey.comment("@orchestrator /approve")  # the vision


async def test_scar_reads_the_approved_vision_before_it_plans(journey: Journey) -> None:
    await approve_to_plan_gate(journey)
    async with journey.db.session_scope() as session:
        vision = (await session.execute(select(VisionDocument))).scalar_one()
        project = (await session.execute(select(Project))).scalar_one()
    # The vision is in the repository, committed before SCAR cloned it.
    assert journey.github.file(REPO, "docs/vision.md") == vision.markdown
    prime, plan = journey.scar.ai_runs[:2]
    assert prime.command == "prime"
    assert prime.files.get("docs/vision.md") == vision.markdown
    # The plan command carries the person's words and the vision's essentials too.
    assert plan.command == "plan-feature-github"
    assert plan.args_text.startswith('"The first version: A meal planner.')
    for said in ("Busy parents", "A weekly meal plan", "A shopping list", "Open on Sunday"):
        assert said in plan.args_text
    assert plan.session_commands == ("prime",)  # one conversation: prime's reading counts
    assert project.scar_codebase == "widgets"
    run = await journey.run()
    assert run.github_repo == REPO
    assert run.current_phase is Phase.PLAN


async def test_build_words_reach_scar_and_update_the_first_run(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    await journey.comment("@orchestrator /build Only the shopping list, for now")
    assert "will be" in journey.last_reply()
    assert "Only the shopping list" in journey.last_reply()
    run = await journey.run()
    assert run.feature_request == "Only the shopping list, for now"
    assert run.number == 1
    await journey.comment("@orchestrator /approve")
    plan = next(r for r in journey.scar.ai_runs if r.command == "plan-feature-github")
    assert plan.args_text.startswith('"Only the shopping list, for now.')


async def test_a_template_repository_gets_its_commands_and_the_build_merges(
    journey: Journey,
) -> None:
    journey.scar.remote(REPO, layout="template")
    await approve_to_plan_gate(journey)
    await journey.comment("@orchestrator /approve")  # the plan
    await journey.comment("@orchestrator /approve")  # the merge
    assert (await journey.run()).status is RunStatus.COMPLETED
    assert journey.scar.invocations.count("/load-commands .agents/commands") == 1
    opened = [t for t in journey.scar.invocations if t.startswith(("/repo", "/clone"))]
    assert opened[0] == "/repo widgets pull"
    assert opened[1].startswith("/clone http")
    assert opened[1].endswith(f"/{REPO}")
    assert len(opened) == 2
    execute = next(r for r in journey.scar.ai_runs if r.command == "execute-github")
    plan = next(r for r in journey.scar.ai_runs if r.command == "plan-feature-github")
    # execute-github works on the branch SCAR's plan made, with the plan file it wrote.
    assert execute.args[1].startswith("feature-")
    assert execute.args[0].startswith(".agents/plans/")
    async with journey.db.session_scope() as session:
        stored = (
            await session.execute(
                select(ScarCommand.output).where(ScarCommand.command == "plan-feature-github")
            )
        ).scalar_one()
    assert f"**Feature Branch:** `{execute.args[1]}`" in (stored or "")
    assert plan.command == "plan-feature-github"


async def test_a_repository_without_scars_commands_asks_what_to_do(journey: Journey) -> None:
    journey.scar.remote(REPO, layout="none")
    await approve_to_plan_gate(journey)
    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.PRIME
    assert any("has no 'prime' command" in c for c in journey.bot_comments())


async def test_scar_restarting_mid_command_is_resumed(journey: Journey) -> None:
    journey.scar.restart_when("plan-feature-github")
    await approve_to_plan_gate(journey)
    run = await journey.run()
    assert run.current_phase is Phase.PLAN
    assert run.status is RunStatus.AWAITING_APPROVAL
    plans = [t for t in journey.scar.invocations if "plan-feature-github" in t]
    assert len(plans) == 2  # lost in the restart, sent again
    assert not any("without saying anything" in c for c in journey.bot_comments())
    assert any("SCAR has a plan" in c for c in journey.bot_comments())
    assert journey.scar.mode == "batch"


async def test_a_transient_claude_failure_is_retried_and_the_person_sees_nothing(
    journey: Journey,
) -> None:
    journey.scar.claude_failures(1)
    await approve_to_plan_gate(journey)
    run = await journey.run()
    assert run.current_phase is Phase.PLAN
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert not any("Something went wrong" in c for c in journey.bot_comments())
    assert [t.split()[1] for t in journey.scar_commands()] == [
        "prime",
        "prime",
        "plan-feature-github",
    ]


async def test_a_project_that_lives_on_an_issue_keeps_its_repository(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    journey.anthropic.reply([tool_use("link_github_repo", {"repo": "acme/meals"})], "tool_use")
    journey.anthropic.reply_text("It stays in acme/widgets.")
    await journey.comment("@orchestrator build it in acme/meals")
    tool_result = str(journey.anthropic.requests[-1]["messages"][-1])
    assert "lives on issue #7 of acme/widgets" in tool_result
    async with journey.db.session_scope() as session:
        project = (await session.execute(select(Project))).scalar_one()
    assert project.github_repo == REPO
    assert "repository_linked" not in journey.audit_actions()
    async with journey.db.session_scope() as session:
        gates = (await session.execute(select(ApprovalGate))).scalars().all()
    assert [g.status for g in gates] == [GateStatus.PENDING]  # the question stands as asked
