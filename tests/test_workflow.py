"""The workflow state machine, every transition applied to real rows in PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.audit import AuditLog
from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.errors import ConflictError, NotFoundError
from project_orchestrator.projects.models import Identity, MemberRole, Project, ProjectMember
from project_orchestrator.projects.service import Actor, create_project, github_identity
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.vision.render import brief_for_coding_agent
from project_orchestrator.workflow.base import NotAllowed
from project_orchestrator.workflow.machine import plan_request, scar_step
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
from project_orchestrator.workflow.readiness import MergeReadiness
from project_orchestrator.workflow.service import Workflow


class World:
    def __init__(self, session: AsyncSession, audit_path: Path) -> None:
        self.session = session
        self.audit_path = audit_path
        self.workflow = Workflow(AuditLog(audit_path))
        self.project: Project
        self.owner: Actor
        self.run: WorkflowRun

    async def setup(self) -> World:
        self.owner = Actor(await github_identity(self.session, "ada"), Channel.GITHUB)
        self.project = await create_project(
            self.session,
            self.workflow.audit,
            name="Widgets",
            owner=self.owner,
            github_repo="acme/widgets",
            github_issue_number=7,
        )
        return self

    async def vision(self, body: str = "# Widgets: Vision") -> VisionDocument:
        latest = (
            (
                await self.session.execute(
                    select(VisionDocument).where(VisionDocument.project_id == self.project.id)
                )
            )
            .scalars()
            .all()
        )
        document = VisionDocument(
            project_id=self.project.id,
            version=len(latest) + 1,
            markdown=body,
            content_hash=hashlib.sha256(body.encode()).hexdigest(),
        )
        self.session.add(document)
        await self.session.flush()
        return document

    async def attempts(self, phase: Phase) -> list[WorkflowPhase]:
        rows = await self.session.execute(
            select(WorkflowPhase)
            .where(WorkflowPhase.run_id == self.run.id, WorkflowPhase.phase == phase)
            .order_by(WorkflowPhase.attempt)
        )
        return list(rows.scalars())

    async def latest(self, phase: Phase) -> WorkflowPhase:
        return (await self.attempts(phase))[-1]

    async def gate(self) -> ApprovalGate | None:
        return await self.workflow.pending_gate(self.session, self.run.id)

    async def step_jobs(self) -> list[str]:
        rows = await self.session.execute(
            text("SELECT payload FROM pgqueuer WHERE entrypoint = 'run_step' ORDER BY id")
        )
        return [json.loads(bytes(r[0]))["phase_id"] for r in rows]

    async def succeed(self, phase: Phase, output: str = "ok") -> None:
        await self.workflow.phase_succeeded(
            self.session, self.run, await self.latest(phase), output
        )

    async def approve(self, actor: Actor | None = None) -> None:
        await self.workflow.decide(self.session, self.project, actor or self.owner, approve=True)

    async def reject(self, feedback: str) -> None:
        await self.workflow.decide(
            self.session, self.project, self.owner, approve=False, feedback=feedback
        )

    def audit_actions(self) -> list[str]:
        lines = self.audit_path.read_text().splitlines()
        return [json.loads(line)["action"] for line in lines]

    async def to_merge_gate(self) -> None:
        """Vision approved, primed, plan approved, built, validated: the merge gate waits."""
        self.run = await self.workflow.start_run(self.session, self.project, self.owner, "a")
        await self.workflow.open_vision_gate(
            self.session, self.project, self.owner, await self.vision()
        )
        await self.approve()
        await self.succeed(Phase.PRIME)
        await self.succeed(Phase.PLAN, "the plan")
        await self.approve()
        self.run.pr_number = 3
        await self.succeed(Phase.EXECUTE)
        await self.succeed(Phase.VALIDATE, "All checks passed ✅")
        await self.succeed(Phase.CHECKS, "GitHub says pull request #3 can merge")


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> AsyncIterator[World]:
    async with db.sessionmaker() as session:
        yield await World(session, tmp_path / "audit.log").setup()
        await session.rollback()


async def test_the_first_run_starts_with_the_vision_and_only_one_runs_at_a_time(
    world: World,
) -> None:
    world.run = await world.workflow.start_run(world.session, world.project, world.owner, "a shop")
    assert world.run.kind is RunKind.INITIAL
    assert world.run.current_phase is Phase.VISION
    assert (await world.latest(Phase.VISION)).status is PhaseStatus.RUNNING
    assert await world.step_jobs() == []  # brainstorming is a conversation, not a job
    with pytest.raises(ConflictError, match="still in progress"):
        await world.workflow.start_run(world.session, world.project, world.owner, "more")
    assert "workflow_started" in world.audit_actions()


async def test_the_whole_happy_path_through_every_phase(world: World) -> None:
    await world.to_merge_gate()
    gate = await world.gate()
    assert gate is not None
    assert gate.kind is GateKind.MERGE
    assert world.run.status is RunStatus.AWAITING_APPROVAL
    await world.approve()
    merge = await world.latest(Phase.MERGE)
    assert str(merge.id) in await world.step_jobs()
    await world.succeed(Phase.MERGE, "Merged PR #3")
    assert world.run.status is RunStatus.COMPLETED
    assert world.run.finished_at is not None
    decided = (
        (
            await world.session.execute(
                select(ApprovalGate).where(ApprovalGate.status == GateStatus.APPROVED)
            )
        )
        .scalars()
        .all()
    )
    assert [g.kind for g in decided] == [GateKind.VISION, GateKind.PLAN, GateKind.MERGE]
    assert all(g.decided_by_id == world.owner.identity.id for g in decided)
    assert all(g.decided_via is Channel.GITHUB and g.decided_at for g in decided)
    actions = world.audit_actions()
    assert actions.count("approval_requested") == 3
    assert actions.count("approval_granted") == 3


async def test_approving_the_vision_queues_prime(world: World) -> None:
    gate = await world.workflow.open_vision_gate(
        world.session, world.project, world.owner, await world.vision()
    )
    world.run = await world.session.get(WorkflowRun, gate.run_id)  # type: ignore[assignment]
    assert gate.artifact_version.startswith("vision:")
    await world.approve()
    prime = await world.latest(Phase.PRIME)
    assert prime.status is PhaseStatus.PENDING
    assert await world.step_jobs() == [str(prime.id)]
    assert (await world.latest(Phase.VISION)).status is PhaseStatus.SUCCEEDED


async def test_a_rejected_plan_is_planned_again_with_the_feedback(world: World) -> None:
    world.run = await world.workflow.start_run(world.session, world.project, world.owner, "x")
    await world.workflow.open_vision_gate(
        world.session, world.project, world.owner, await world.vision()
    )
    await world.approve()
    await world.succeed(Phase.PRIME)
    await world.succeed(Phase.PLAN, "plan one")
    with pytest.raises(ConflictError, match="what to change"):
        await world.reject("")
    await world.reject("Use email, not phone numbers")
    plans = await world.attempts(Phase.PLAN)
    assert [p.attempt for p in plans] == [1, 2]
    assert plans[1].feedback == "Use email, not phone numbers"
    assert plans[1].status is PhaseStatus.PENDING
    assert str(plans[1].id) in await world.step_jobs()
    assert "approval_rejected" in world.audit_actions()


async def test_a_rejected_vision_keeps_brainstorming(world: World) -> None:
    gate = await world.workflow.open_vision_gate(
        world.session, world.project, world.owner, await world.vision()
    )
    world.run = await world.session.get(WorkflowRun, gate.run_id)  # type: ignore[assignment]
    await world.reject("It is for teachers, not students")
    assert world.run.status is RunStatus.RUNNING
    vision = await world.latest(Phase.VISION)
    assert vision.status is PhaseStatus.RUNNING
    assert vision.feedback == "It is for teachers, not students"
    assert await world.gate() is None


async def test_failed_validation_opens_an_error_gate_and_fixing_rebuilds(world: World) -> None:
    await world.to_merge_gate()
    # Start again from a failing validation: a fresh project state is simpler to read.
    merge_gate = await world.gate()
    assert merge_gate is not None
    await world.reject("The button is the wrong colour")
    execute = await world.latest(Phase.EXECUTE)
    assert execute.attempt == 2
    assert execute.feedback == "The button is the wrong colour"
    await world.succeed(Phase.EXECUTE)
    validate = await world.latest(Phase.VALIDATE)
    await world.workflow.phase_failed(world.session, world.run, validate, "2 tests failed")
    gate = await world.gate()
    assert gate is not None
    assert gate.kind is GateKind.ERROR_RESOLUTION
    assert gate.artifact_version == f"phase:{validate.id}"
    await world.approve()
    execute = await world.latest(Phase.EXECUTE)
    assert execute.attempt == 3
    assert execute.feedback == "2 tests failed"


async def test_rejecting_the_fix_pauses_the_run(world: World) -> None:
    world.run = await world.workflow.start_run(world.session, world.project, world.owner, "x")
    await world.workflow.open_vision_gate(
        world.session, world.project, world.owner, await world.vision()
    )
    await world.approve()
    prime = await world.latest(Phase.PRIME)
    await world.workflow.phase_failed(world.session, world.run, prime, "SCAR timed out")
    await world.reject("Not now")
    assert world.run.status is RunStatus.ON_HOLD
    await world.workflow.resume(world.session, world.project, world.owner)
    gate = await world.gate()
    assert gate is not None  # the failure is still there: the question is asked again
    assert gate.kind is GateKind.ERROR_RESOLUTION
    await world.approve()
    assert (await world.latest(Phase.PRIME)).attempt == 2


async def test_hold_keeps_finished_work_and_resume_continues_from_it(world: World) -> None:
    world.run = await world.workflow.start_run(world.session, world.project, world.owner, "x")
    await world.workflow.open_vision_gate(
        world.session, world.project, world.owner, await world.vision()
    )
    await world.approve()
    await world.workflow.hold(world.session, world.project, world.owner)
    assert world.run.status is RunStatus.ON_HOLD
    assert world.run.held_from is RunStatus.RUNNING
    with pytest.raises(ConflictError, match="already on hold"):
        await world.workflow.hold(world.session, world.project, world.owner)
    await world.succeed(Phase.PRIME)  # SCAR finished while the run was held
    assert await world.attempts(Phase.PLAN) == []
    await world.workflow.resume(world.session, world.project, world.owner)
    plan = await world.latest(Phase.PLAN)
    assert plan.status is PhaseStatus.PENDING
    assert str(plan.id) in await world.step_jobs()
    actions = world.audit_actions()
    assert "workflow_held" in actions
    assert "workflow_resumed" in actions


async def test_decisions_wait_while_the_run_is_held(world: World) -> None:
    await world.to_merge_gate()
    await world.workflow.hold(world.session, world.project, world.owner)
    with pytest.raises(ConflictError, match="on hold"):
        await world.approve()
    await world.workflow.resume(world.session, world.project, world.owner)
    assert world.run.status is RunStatus.AWAITING_APPROVAL
    await world.approve()
    assert world.run.status is RunStatus.RUNNING


async def test_cancel_ends_the_run_and_expires_its_question(world: World) -> None:
    await world.to_merge_gate()
    gate = await world.gate()
    assert gate is not None
    await world.workflow.cancel(world.session, world.project, world.owner)
    assert world.run.status is RunStatus.CANCELLED
    assert gate.status is GateStatus.EXPIRED
    assert (await world.latest(Phase.MERGE)).status is PhaseStatus.CANCELLED
    with pytest.raises(NotFoundError):
        await world.workflow.cancel(world.session, world.project, world.owner)
    assert "workflow_cancelled" in world.audit_actions()
    # A finished command arriving after the cancel changes nothing.
    await world.succeed(Phase.MERGE)
    assert world.run.status is RunStatus.CANCELLED


async def test_only_the_owner_or_an_approver_decides(world: World) -> None:
    await world.to_merge_gate()
    outsider = Actor(await github_identity(world.session, "mallory"), Channel.GITHUB)
    with pytest.raises(NotAllowed):
        await world.approve(outsider)
    with pytest.raises(NotAllowed):
        await world.workflow.cancel(world.session, world.project, outsider)
    assert world.audit_actions().count("unauthorized_access") == 2
    assert (await world.gate()) is not None
    approver = Actor(await github_identity(world.session, "grace"), Channel.GITHUB)
    world.session.add(
        ProjectMember(
            project_id=world.project.id, identity_id=approver.identity.id, role=MemberRole.APPROVER
        )
    )
    await world.session.flush()
    await world.approve(approver)
    assert world.run.status is RunStatus.RUNNING


async def test_a_changed_vision_voids_the_old_approval(world: World) -> None:
    first = await world.vision("# v1")
    gate = await world.workflow.open_vision_gate(world.session, world.project, world.owner, first)
    world.run = await world.session.get(WorkflowRun, gate.run_id)  # type: ignore[assignment]
    await world.vision("# v2")  # the notes changed and a new version was written
    with pytest.raises(ConflictError, match="changed"):
        await world.approve()
    assert gate.status is GateStatus.VOIDED
    same = await world.workflow.open_vision_gate(
        world.session, world.project, world.owner, await world.vision("# v3")
    )
    again = await world.workflow.open_vision_gate(
        world.session,
        world.project,
        world.owner,
        (
            await world.session.execute(select(VisionDocument).where(VisionDocument.version == 3))
        ).scalar_one(),
    )
    assert same.id == again.id  # asking twice about one version is one question


async def test_a_new_pull_request_head_voids_the_merge_gate_and_validates_again(
    world: World,
) -> None:
    await world.to_merge_gate()
    gate = await world.gate()
    assert gate is not None
    readiness = MergeReadiness(world.workflow)
    assert await readiness.pull_request_moved(world.session, world.project, 99, "b" * 40) == []
    voided = await readiness.pull_request_moved(world.session, world.project, 3, "c" * 40)
    assert [g.id for g in voided] == [gate.id]
    assert gate.status is GateStatus.VOIDED
    assert world.run.pr_head_sha == "c" * 40
    validate = await world.latest(Phase.VALIDATE)
    assert validate.attempt == 2
    assert validate.status is PhaseStatus.PENDING
    await world.succeed(Phase.VALIDATE, "All checks passed ✅")
    assert await world.gate() is None  # GitHub is asked about the new head first
    world.run.pr_head_sha = "c" * 40  # what the checks phase read
    await world.succeed(Phase.CHECKS, "GitHub says pull request #3 can merge")
    new_gate = await world.gate()
    assert new_gate is not None
    assert new_gate.artifact_version == "sha:" + "c" * 40


async def test_a_later_run_is_a_feature_run_that_starts_with_prime(world: World) -> None:
    await world.to_merge_gate()
    await world.approve()
    await world.succeed(Phase.MERGE)
    run = await world.workflow.start_run(world.session, world.project, world.owner, "dark mode")
    assert run.kind is RunKind.FEATURE
    assert run.number == 2
    assert run.current_phase is Phase.PRIME


async def test_identities_are_one_per_login_whatever_the_case(world: World) -> None:
    again = await github_identity(world.session, "ADA")
    assert again.id == world.owner.identity.id
    count = (
        (await world.session.execute(select(Identity).where(Identity.github_login.is_not(None))))
        .scalars()
        .all()
    )
    assert len(count) == 1
    assert isinstance(world.project.id, uuid.UUID)


def test_the_plan_request_carries_the_persons_words_the_vision_and_the_feedback() -> None:
    vision = (
        "# Meals: Vision\n\n## What It Is\n\nA weekly meal planner.\n\n## Who It's For\n\n"
        "Busy parents.\n\n## Problem\n\nNot decided yet.\n\n## Key Features\n\n"
        "- A weekly plan\n- A shopping list\n\n## User Journey\n\nOpen, plan, shop.\n\n"
        "## Out of Scope\n\n- Payments\n"
    )
    brief = brief_for_coding_agent(vision)
    assert brief == (
        "What it is: A weekly meal planner. Who it is for: Busy parents. "
        "Key features: A weekly plan; A shopping list. User journey: Open, plan, shop. "
        "Out of scope (do not build): Payments."
    )
    request = plan_request("A shopping list page", brief, "Start smaller")
    assert request.startswith("A shopping list page. Build it as the approved vision")
    assert "docs/vision.md" in request
    assert request.endswith("Feedback on the last plan, to take into account: Start smaller")
    step = scar_step(
        Phase.PLAN,
        feature='Say "hi"',
        feedback=None,
        plan_output=None,
        branch="b",
        pr_number=None,
        vision_brief=brief,
    )
    assert step.command == "plan-feature-github"
    assert step.args.startswith("\"Say 'hi'. Build it")  # one quoted argument for SCAR
    assert step.args.count('"') == 2
