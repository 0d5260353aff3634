"""End to end on GitHub: from an idea in a comment to a merged pull request, and back."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY as registry
from sqlalchemy import select

from project_orchestrator.projects.models import AiUsage, Project
from project_orchestrator.scar.models import ScarCommand, ScarCommandStatus
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.workflow.models import Phase, RunStatus
from tests.support.github_payloads import issue_comment
from tests.support.journey import (
    OWNER,
    REPO,
    Journey,
    brainstorm_to_vision_gate,
    quick_turn_retries,
)


async def test_from_an_idea_to_a_merged_pull_request(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    async with journey.db.session_scope() as session:
        project = (await session.execute(select(Project))).scalar_one()
        vision = (await session.execute(select(VisionDocument))).scalar_one()
    assert project.github_repo == REPO
    assert project.ai_tokens_used > 0
    assert "## Key Features" in vision.markdown
    assert "Have a look" in journey.last_reply()
    asked = [c for c in journey.bot_comments() if "is this what you want" in c]
    assert len(asked) == 1
    assert "A weekly meal plan" in asked[0]
    assert (await journey.run()).status is RunStatus.AWAITING_APPROVAL

    await journey.comment("@orchestrator /approve")  # the vision
    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.PLAN
    assert [c.split()[1] for c in journey.scar_commands()] == ["prime", "plan-feature-github"]
    assert any("SCAR has a plan" in c for c in journey.bot_comments())

    await journey.comment("@orchestrator /approve")  # the plan
    run = await journey.run()
    assert run.current_phase is Phase.MERGE
    assert run.pr_url == f"https://github.com/{REPO}/pull/8"  # after issue 7, as on GitHub
    assert run.branch is not None
    assert any("Shall I merge it?" in c for c in journey.bot_comments())

    await journey.comment("@orchestrator /approve")  # the merge
    run = await journey.run()
    assert run.status is RunStatus.COMPLETED
    assert [c.split()[1] for c in journey.scar_commands()] == [
        "prime",
        "plan-feature-github",
        "execute-github",
        "validate",
        "merge-pr",
    ]
    assert journey.scar_commands()[-1] == "/command-invoke merge-pr 8"
    assert "Done!" in journey.last_reply()
    board = journey.board()
    assert board.count("- [x]") == 7
    actions = journey.audit_actions()
    assert actions.count("approval_granted") == 3
    assert actions.count("scar_command_executed") == 5
    assert actions.count("project_created") == 1
    assert "vision_generated" in actions
    async with journey.db.session_scope() as session:
        commands = (await session.execute(select(ScarCommand))).scalars().all()
    assert {c.status for c in commands} == {ScarCommandStatus.SUCCEEDED}
    assert all(c.duration_seconds is not None for c in commands)

    # What it spent: every model call in the ledger, adding up to the project's total.
    async with journey.db.session_scope() as session:
        ledger = (await session.execute(select(AiUsage))).scalars().all()
        project = (await session.execute(select(Project))).scalar_one()
    charged = sum(
        u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_tokens
        for u in ledger
    )
    assert charged == project.ai_tokens_used > 0
    assert {u.model for u in ledger} == {journey.settings.anthropic_model}
    assert any(u.run_id == run.id for u in ledger)
    assert "Spent so far: " in board
    assert "AI tokens (" in board
    assert "SCAR worked" in board
    await journey.comment("@orchestrator /status")
    status = journey.last_reply()
    assert "This build so far: " in status
    assert f"The project in all: {project.ai_tokens_used:,} AI tokens" in status


async def test_a_rejected_plan_is_planned_again_with_the_feedback(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    await journey.comment("@orchestrator /approve")
    await journey.comment("@orchestrator /reject Start with the shopping list only")
    plans = [c for c in journey.scar_commands() if "plan-feature-github" in c]
    assert len(plans) == 2
    assert "Start with the shopping list only" in plans[1]
    plan_questions = [c for c in journey.bot_comments() if "SCAR has a plan" in c]
    assert len(plan_questions) == 2
    assert "rejected" not in journey.audit_actions()
    assert journey.audit_actions().count("approval_rejected") == 1


async def test_failed_validation_asks_what_to_do_and_fixing_builds_again(
    journey: Journey,
) -> None:
    journey.scar.script("validate", "2 tests failed ❌: the shopping list is empty")
    await brainstorm_to_vision_gate(journey)
    await journey.comment("@orchestrator /approve")
    await journey.comment("@orchestrator /approve")
    run = await journey.run()
    assert run.current_phase is Phase.VALIDATE
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert any(
        "Something went wrong" in c and "2 tests failed" in c for c in journey.bot_comments()
    )
    journey.scar.script("validate", "All checks passed ✅")
    await journey.comment("@orchestrator /approve")  # fix it
    executes = [c for c in journey.scar_commands() if "execute-github" in c]
    assert len(executes) == 2
    assert "2 tests failed" in executes[1]
    assert (await journey.run()).current_phase is Phase.MERGE


async def test_a_scar_timeout_fails_the_phase_with_a_clear_message(journey: Journey) -> None:
    journey.scar.hang("prime")
    journey.settings = journey.settings.model_copy(update={"scar_timeout_seconds": 0.5})
    await brainstorm_to_vision_gate(journey)
    await journey.comment("@orchestrator /approve")
    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.PRIME
    assert any("did not finish prime" in c for c in journey.bot_comments())
    async with journey.db.session_scope() as session:
        command = (await session.execute(select(ScarCommand))).scalar_one()
    assert command.status is ScarCommandStatus.TIMED_OUT


async def test_when_the_ai_is_down_the_person_is_told_and_answered_without_asking_again(
    journey: Journey,
) -> None:
    journey.shape_workload = quick_turn_retries
    journey.anthropic.down = True
    journey.anthropic.reply_text("Welcome back! Tell me more about the meal planner.")

    async def ai_comes_back() -> None:
        for _ in range(400):  # the person has been told, within 20 s
            if any("no need to send it again" in c for c in journey.bot_comments()):
                break
            await asyncio.sleep(0.05)
        journey.anthropic.down = False

    recovering = asyncio.create_task(ai_comes_back())
    await journey.comment("@orchestrator I'd like an app that plans family meals")
    await recovering
    still_trying, answer = journey.bot_comments()
    assert "no need to send it again" in still_trying
    assert "Welcome back" in answer  # by itself: the person sent nothing more
    said = str(journey.anthropic.requests[-1]["messages"])
    assert "plans family meals" in said


async def test_an_outsider_cannot_approve(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    await journey.comment("@orchestrator /approve", login="mallory", association="NONE")
    await journey.comment(
        "@orchestrator /approve", login="bob", association="COLLABORATOR"
    )  # a collaborator, but not the project's owner or approver
    assert (await journey.run()).status is RunStatus.AWAITING_APPROVAL
    assert journey.scar_commands() == []
    replies = journey.bot_comments()
    assert any("only take instructions" in c for c in replies)
    assert any("Only the project's owner" in c for c in replies)
    assert journey.audit_actions().count("unauthorized_access") == 2


async def test_an_edited_comment_is_not_a_new_instruction(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    edited = issue_comment("@orchestrator /approve", login=OWNER, action="edited", repo=REPO)
    replies = len(journey.bot_comments())
    await journey.comment("", payload=edited)
    assert (await journey.run()).status is RunStatus.AWAITING_APPROVAL
    assert len(journey.bot_comments()) == replies
    assert journey.scar_commands() == []


async def test_github_failing_a_reply_five_times_leaves_one_project_and_one_audit_line(
    journey: Journey,
) -> None:
    counted = (
        registry.get_sample_value("orchestrator_conversations_total", {"channel": "github"}) or 0.0
    )
    journey.github.fail_next(5, status=500)
    await journey.comment("@orchestrator I'd like an app that plans family meals")
    async with journey.db.session_scope() as session:
        projects = (await session.execute(select(Project))).scalars().all()
    assert len(projects) == 1
    actions = journey.audit_actions()
    assert actions.count("project_created") == 1  # the attempts that rolled back said nothing
    after = registry.get_sample_value("orchestrator_conversations_total", {"channel": "github"})
    assert after == counted + 1
    assert len(journey.bot_comments()) == 1
