"""Journeys where GitHub decides when the pull request is ready: red checks fixed by SCAR a
bounded number of times, checks that finish later, a person merging or closing on GitHub,
and GitHub changing its mind between the merge question and the merge."""

from __future__ import annotations

import json

from sqlalchemy import select

from project_orchestrator.workflow.models import (
    ApprovalGate,
    GateKind,
    GateStatus,
    Phase,
    PhaseStatus,
    RunStatus,
)
from tests.support.fake_github_pulls import ScriptedCheck
from tests.support.github_payloads import (
    check_suite_completed,
    commit_status,
    pull_request_event,
)
from tests.support.journey import REPO, Journey, brainstorm_to_vision_gate

LINT_RED = ScriptedCheck("lint", "failure", "ruff: E501 line too long in app/plan.py:12")
TESTS_GREEN = ScriptedCheck("tests", "success", "41 passed")
PR = 8  # the first number after the project's issue 7, as GitHub counts


async def to_plan_approved(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    await journey.comment("@orchestrator /approve")  # the vision
    await journey.comment("@orchestrator /approve")  # the plan: build, validate, checks


def commands(journey: Journey, name: str) -> list[str]:
    return [c for c in journey.scar_commands() if c.split()[1] == name]


async def pending_gate(journey: Journey) -> ApprovalGate:
    async with journey.db.session_scope() as session:
        gate = (
            await session.execute(
                select(ApprovalGate).where(ApprovalGate.status == GateStatus.PENDING)
            )
        ).scalar_one()
    return gate


def audit_lines(journey: Journey, action: str) -> list[dict[str, object]]:
    lines = journey.settings.audit_log_path.read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["action"] == action]


async def test_red_twice_then_green_merges_after_two_fixes(journey: Journey) -> None:
    journey.github.script_ci(
        REPO,
        [[LINT_RED, TESTS_GREEN], [LINT_RED, TESTS_GREEN], [TESTS_GREEN]],
    )
    await to_plan_approved(journey)
    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert (await pending_gate(journey)).kind is GateKind.MERGE
    assert run.fix_attempts == 2
    builds = commands(journey, "execute-github")
    assert len(builds) == 3
    assert len(commands(journey, "validate")) == 3
    for fix in builds[1:]:
        assert "checks failed on GitHub" in fix
        assert "lint: Failure ruff: E501 line too long in app/plan.py:12" in fix
        assert "feature-" in fix  # the same branch
    checks = await journey.attempts(Phase.CHECKS)
    assert [a.status for a in checks] == [
        PhaseStatus.FAILED,
        PhaseStatus.FAILED,
        PhaseStatus.SUCCEEDED,
    ]
    question = next(c for c in journey.bot_comments() if "Shall I merge it?" in c)
    assert "GitHub says pull request #8 can merge; its 1 check passed" in question
    gate = await pending_gate(journey)
    assert gate.artifact_version == f"sha:{journey.github.head_of(REPO, PR)}"

    await journey.comment("@orchestrator /approve")  # GitHub is asked once more, then merge
    run = await journey.run()
    assert run.status is RunStatus.COMPLETED
    assert commands(journey, "merge-pr") == [f"/command-invoke merge-pr {PR}"]
    assert journey.github.repos[REPO].issues[PR].merged
    assert "Done!" in journey.last_reply()


async def test_checks_red_every_time_end_at_a_decision_after_three_fixes(
    journey: Journey,
) -> None:
    journey.github.script_ci(REPO, [[LINT_RED]])
    await to_plan_approved(journey)
    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.fix_attempts == 3
    assert len(commands(journey, "execute-github")) == 4  # the build and three fixes
    gate = await pending_gate(journey)
    assert gate.kind is GateKind.ERROR_RESOLUTION
    assert gate.summary is not None
    assert gate.summary.startswith("GitHub's checks are still failing after 3 fixes by SCAR.")
    for reading in range(1, 5):
        assert f"Reading {reading}:\n1 check failed on pull request #8: lint." in gate.summary
    asked = [c for c in journey.bot_comments() if "still failing after 3 fixes" in c]
    assert len(asked) == 1
    assert "nothing more will happen until you decide" in asked[0]
    assert commands(journey, "merge-pr") == []

    # The person lets SCAR try once more: one build, and the question again.
    await journey.comment("@orchestrator /approve")
    assert len(commands(journey, "execute-github")) == 5
    assert (await pending_gate(journey)).kind is GateKind.ERROR_RESOLUTION
    assert (await journey.run()).fix_attempts == 3


async def test_checks_that_finish_later_wake_the_run_by_webhook(journey: Journey) -> None:
    # No poll comes within the test: only the webhook can move the run on.
    journey.settings = journey.settings.model_copy(update={"run_checks_poll_seconds": 3600})
    journey.github.script_ci(REPO, [[ScriptedCheck("tests", "success", reads=10**6)]])
    await to_plan_approved(journey)
    run = await journey.run()
    assert run.status is RunStatus.RUNNING
    assert run.current_phase is Phase.CHECKS
    head = journey.github.head_of(REPO, PR)
    journey.github.add_status(REPO, head, "ci/build", "pending", "Building")
    await journey.comment("", event="check_suite", payload=check_suite_completed("f" * 40))
    await journey.comment("", event="status", payload=commit_status(head, "ci/build", "pending"))
    board = journey.board()
    assert "GitHub: the pull request can merge and its checks pass: working on it" in board

    # A reading woken by a webhook about other code, or a check starting, changes nothing;
    # this one found both checks still running.
    reads = len(journey.github.pull_reads)
    journey.github.add_check_run(REPO, head, "tests", "success", "41 passed")
    journey.github.add_status(REPO, head, "ci/build", "success", "Built")
    await journey.comment("", event="status", payload=commit_status(head, "ci/build", "success"))
    assert len(journey.github.pull_reads) == reads + 1
    assert (await pending_gate(journey)).kind is GateKind.MERGE
    assert any("its 2 checks passed" in c for c in journey.bot_comments())


async def test_the_board_says_what_github_is_waiting_for(journey: Journey) -> None:
    journey.settings = journey.settings.model_copy(update={"run_checks_poll_seconds": 3600})
    journey.github.script_ci(REPO, [[ScriptedCheck("tests", "success", reads=10**6)]])
    await to_plan_approved(journey)
    assert (await journey.run()).current_phase is Phase.CHECKS
    await journey.work()
    assert "Waiting for 1 check to finish: tests." in journey.board()


async def test_a_person_merging_on_github_completes_the_run(journey: Journey) -> None:
    await to_plan_approved(journey)
    assert (await pending_gate(journey)).kind is GateKind.MERGE
    head = journey.github.head_of(REPO, PR)
    assert journey.github.merge_pull(REPO, PR)
    closed = pull_request_event("closed", PR, head_sha=head, merged=True, login="grace")
    await journey.comment("", event="pull_request", payload=closed)
    run = await journey.run()
    assert run.status is RunStatus.COMPLETED
    assert run.finished_at is not None
    assert commands(journey, "merge-pr") == []
    async with journey.db.session_scope() as session:
        gate = (
            await session.execute(select(ApprovalGate).where(ApprovalGate.kind == GateKind.MERGE))
        ).scalar_one()
    assert gate.status is GateStatus.EXPIRED
    [line] = audit_lines(journey, "workflow_completed")
    assert line["user_id"] == "github:grace"
    assert line["details"] == {"run": 1, "pull_request": PR, "merged": True, "via": "github"}
    assert "Done!" in journey.last_reply()

    # GitHub sends the same delivery again, or a late one: nothing happens twice.
    await journey.comment("", event="pull_request", payload=closed)
    assert len(audit_lines(journey, "workflow_completed")) == 1


async def test_a_person_closing_the_pull_request_cancels_the_run(journey: Journey) -> None:
    await to_plan_approved(journey)
    journey.github.set_pull(REPO, PR, state="closed")
    closed = pull_request_event("closed", PR, head_sha=journey.github.head_of(REPO, PR))
    await journey.comment("", event="pull_request", payload=closed)
    run = await journey.run()
    assert run.status is RunStatus.CANCELLED
    assert "closed on GitHub without merging, so I stopped build #1" in journey.last_reply()
    [line] = audit_lines(journey, "workflow_cancelled")
    assert line["details"] == {"run": 1, "pull_request": PR, "merged": False, "via": "github"}


async def test_approving_the_merge_asks_github_again_and_does_not_merge_when_it_changed(
    journey: Journey,
) -> None:
    await to_plan_approved(journey)
    assert (await pending_gate(journey)).kind is GateKind.MERGE
    journey.github.set_pull(REPO, PR, conflicts=True)  # main moved on meanwhile
    await journey.comment("@orchestrator /approve")
    assert commands(journey, "merge-pr") == []
    assert not journey.github.repos[REPO].issues[PR].merged
    assert any("I did not merge: GitHub's answer changed" in c for c in journey.bot_comments())
    merges = await journey.attempts(Phase.MERGE)
    assert [m.status for m in merges] == [PhaseStatus.SKIPPED]
    gate = await pending_gate(journey)
    assert gate.kind is GateKind.ERROR_RESOLUTION
    assert "has conflicts" in (gate.summary or "")

    # The person resolves the conflicts on GitHub and pushes: the question is voided and
    # the new code validated and read again.
    journey.github.set_pull(REPO, PR, conflicts=False, head_sha="c" * 40)
    moved = pull_request_event("synchronize", PR, head_sha="c" * 40)
    await journey.comment("", event="pull_request", payload=moved)
    gate = await pending_gate(journey)
    assert gate.kind is GateKind.MERGE
    assert gate.artifact_version == f"sha:{'c' * 40}"
    await journey.comment("@orchestrator /approve")
    assert (await journey.run()).status is RunStatus.COMPLETED
    assert journey.github.repos[REPO].issues[PR].merged


async def test_a_merge_scar_reports_but_github_did_not_make_stops_the_build(
    journey: Journey,
) -> None:
    await to_plan_approved(journey)
    journey.github.merges_refused = True  # GitHub refuses at the very moment of merging
    await journey.comment("@orchestrator /approve")
    assert commands(journey, "merge-pr") == [f"/command-invoke merge-pr {PR}"]
    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    gate = await pending_gate(journey)
    assert gate.kind is GateKind.ERROR_RESOLUTION
    assert (gate.summary or "").startswith(
        "SCAR stopped while merging: it answered, but GitHub says pull request #8 is not merged."
    )
    assert "I did not merge PR #8" in (gate.summary or "")
    assert not any("Done!" in c for c in journey.bot_comments())


async def test_new_code_pushed_while_on_hold_is_validated_on_resume(journey: Journey) -> None:
    journey.github.script_ci(REPO, [[LINT_RED]])
    await to_plan_approved(journey)
    assert (await pending_gate(journey)).kind is GateKind.ERROR_RESOLUTION
    validations = len(commands(journey, "validate"))
    await journey.comment("@orchestrator /hold")

    # A person fixes the lint on the branch themselves while the build is held.
    journey.github.script_ci(REPO, [[TESTS_GREEN]])
    branch = (await journey.run()).branch
    assert branch is not None
    assert journey.github.open_or_push(REPO, branch, user="grace") == PR
    moved = pull_request_event("synchronize", PR, head_sha=journey.github.head_of(REPO, PR))
    await journey.comment("", event="pull_request", payload=moved)
    assert (await journey.run()).status is RunStatus.ON_HOLD

    await journey.comment("@orchestrator /resume")
    # The old question about the old code is not asked again: the new code is validated
    # and read from GitHub, and the merge question follows.
    assert len(commands(journey, "validate")) == validations + 1
    gate = await pending_gate(journey)
    assert gate.kind is GateKind.MERGE
    assert gate.artifact_version == f"sha:{journey.github.head_of(REPO, PR)}"
    asked = [c for c in journey.bot_comments() if "still failing after 3 fixes" in c]
    assert len(asked) == 1
