"""Applying the workflow's transitions to runs, phases and gates.

Every change to a project's runs starts by locking the project row, so a decision, a
SCAR result and a /cancel arriving together are applied one after the other, whichever
worker holds them. Services only flush; the job or request that called them commits,
together with any step job they queued.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.audit import AuditAction
from project_orchestrator.db.enqueue import enqueue_step_job
from project_orchestrator.db.jobs import StepJob
from project_orchestrator.errors import ConflictError, NotFoundError
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import Actor, lock_project, may_decide
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.vision.render import NOT_DECIDED, SECTION_WHAT
from project_orchestrator.vision.render import sections as vision_sections
from project_orchestrator.workflow import machine
from project_orchestrator.workflow.base import NOTHING_RUNNING, NotAllowed, WorkflowBase, now
from project_orchestrator.workflow.measures import end_phase, gate_decided
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


@dataclass(frozen=True)
class Decision:
    gate: ApprovalGate
    run: WorkflowRun
    approved: bool


def first_version_request(vision: VisionDocument) -> str:
    """The first build's request, in the person's words: what the vision says it is."""
    what = vision_sections(vision.markdown).get(SECTION_WHAT, "")
    what = " ".join(what.split())
    if not what or what == NOT_DECIDED:
        return "The first version, as the approved vision describes it"
    return f"The first version: {what}"[:4000]


@dataclass
class Workflow(WorkflowBase):
    # --- starting -------------------------------------------------------------------

    async def request_build(
        self, session: AsyncSession, project: Project, actor: Actor, feature: str
    ) -> tuple[WorkflowRun, bool]:
        """Start a run for `feature`; while the first run is still agreeing on the vision,
        `feature` becomes that run's request instead. Returns the run and whether it is new.
        """
        await lock_project(session, project.id)
        current = await self.active_run(session, project.id)
        words = " ".join(feature.split())
        if (
            current is not None
            and words
            and current.kind is RunKind.INITIAL
            and current.current_phase is Phase.VISION
        ):
            if not await may_decide(session, project, actor.identity.id):
                raise NotAllowed("Only the project's owner or its approvers can change the build.")
            current.feature_request = words[:4000]
            await session.flush()
            return current, False
        return await self.start_run(session, project, actor, feature), True

    async def start_run(
        self, session: AsyncSession, project: Project, actor: Actor, feature: str
    ) -> WorkflowRun:
        """A run for `feature`; the project's first run begins with its vision."""
        feature = " ".join(feature.split())
        if not feature:
            raise ConflictError("Tell me what to build, for example `/build a page to sign up`.")
        await lock_project(session, project.id)
        current = await self.active_run(session, project.id)
        if current is not None:
            raise ConflictError(
                f"Run #{current.number} is still in progress ({current.feature_request}). "
                "Finish it, or `/cancel` it, before starting another."
            )
        kind = (
            RunKind.FEATURE if await self.vision_approved(session, project.id) else RunKind.INITIAL
        )
        number = (
            await session.execute(
                select(func.coalesce(func.max(WorkflowRun.number), 0)).where(
                    WorkflowRun.project_id == project.id
                )
            )
        ).scalar_one() + 1
        run = WorkflowRun(
            project_id=project.id,
            number=number,
            kind=kind,
            feature_request=feature[:4000],
            status=RunStatus.RUNNING,
            started_by_id=actor.identity.id,
        )
        session.add(run)
        await session.flush()
        self.audit.record(
            AuditAction.WORKFLOW_STARTED,
            user_id=actor.audit_id,
            project_id=project.id,
            details={"run": number, "kind": kind.value, "feature": run.feature_request},
        )
        await self.start_phase(session, run, machine.first_phase(kind), feedback=None)
        return run

    # --- gates ----------------------------------------------------------------------

    async def open_vision_gate(
        self, session: AsyncSession, project: Project, actor: Actor, vision: VisionDocument
    ) -> ApprovalGate:
        """Ask for approval of this version of the vision (starting the first run if needed)."""
        await lock_project(session, project.id)
        run = await self.active_run(session, project.id)
        if run is None:
            # Nobody said `/build`: the request is the person's own words from the vision.
            run = await self.start_run(session, project, actor, first_version_request(vision))
        if run.current_phase is not Phase.VISION or run.status is RunStatus.ON_HOLD:
            raise ConflictError("The vision was already approved for this run.")
        version = keys.vision_version(vision.content_hash)
        pending = await self.pending_gate(session, run.id)
        if pending is not None and pending.artifact_version == version:
            return pending
        if pending is not None:
            pending.status = GateStatus.VOIDED
            await session.flush()
        phase = await self.latest_attempt(session, run.id, Phase.VISION)
        return await self._open_gate(
            session,
            run,
            GateKind.VISION,
            version,
            phase_id=phase.id if phase else None,
            summary=f"Vision version {vision.version}",
            user_id=actor.audit_id,
        )

    async def decide(
        self,
        session: AsyncSession,
        project: Project,
        actor: Actor,
        *,
        approve: bool,
        feedback: str | None = None,
    ) -> Decision:
        """Approve or reject the pending gate, as its owner or an allowed approver only."""
        await self._lock_as_decider(
            session,
            project,
            actor,
            "approve" if approve else "reject",
            "Only the project's owner or its approvers can decide this step.",
        )
        run = await self.active_run(session, project.id)
        if run is None:
            raise NotFoundError(NOTHING_RUNNING)
        if run.status is RunStatus.ON_HOLD:
            raise ConflictError("This build is on hold. Say `/resume` first, then decide.")
        gate = await self.pending_gate(session, run.id)
        if gate is None:
            raise NotFoundError("Nothing is waiting for your decision right now.")
        if not approve and not (feedback or "").strip():
            raise ConflictError("Tell me what to change: `/reject <what should be different>`.")
        if gate.kind is GateKind.VISION and not await self._vision_current(session, run, gate):
            gate.status = GateStatus.VOIDED
            await session.flush()
            raise ConflictError(
                "The vision changed after I asked, so that approval would be for an old "
                "version. Let me show you the new one first."
            )
        gate.status = GateStatus.APPROVED if approve else GateStatus.REJECTED
        gate.decided_by_id = actor.identity.id
        gate.decided_at = now()
        gate_decided(gate, gate.decided_at)
        gate.decided_via = actor.channel
        gate.feedback = (feedback or "").strip()[:4000] or None
        await session.flush()
        self.audit.record(
            AuditAction.APPROVAL_GRANTED if approve else AuditAction.APPROVAL_REJECTED,
            user_id=actor.audit_id,
            project_id=project.id,
            details={
                "run": run.number,
                "gate": gate.kind.value,
                "artifact": gate.artifact_version,
                "feedback": gate.feedback,
                "via": actor.channel.value,
            },
        )
        if approve:
            await self._after_approval(session, run, gate)
        else:
            await self._after_rejection(session, run, gate)
        return Decision(gate=gate, run=run, approved=approve)

    async def _vision_current(
        self, session: AsyncSession, run: WorkflowRun, gate: ApprovalGate
    ) -> bool:
        latest = (
            await session.execute(
                select(VisionDocument.content_hash)
                .where(VisionDocument.project_id == run.project_id)
                .order_by(VisionDocument.version.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        return latest is not None and gate.artifact_version == keys.vision_version(latest)

    async def _after_approval(
        self, session: AsyncSession, run: WorkflowRun, gate: ApprovalGate
    ) -> None:
        failed: Phase | None = None
        feedback: str | None = None
        if gate.kind is GateKind.ERROR_RESOLUTION:
            failed_attempt = await session.get(WorkflowPhase, gate.phase_id)
            failed = failed_attempt.phase if failed_attempt else run.current_phase
            feedback = failed_attempt.error if failed_attempt else None
            if failed_attempt is not None and failed_attempt.phase is Phase.CHECKS:
                feedback = machine.fix_request(feedback or "")[:4000]
        elif gate.phase_id is not None:
            gated = await session.get(WorkflowPhase, gate.phase_id)
            if gated is not None and gated.phase is Phase.VISION:
                end_phase(gated, PhaseStatus.SUCCEEDED)
        if gate.kind is GateKind.MERGE:
            # The merge phase already exists; approval lets its command run.
            merge = await self.latest_attempt(session, run.id, Phase.MERGE)
            if merge is not None and merge.status is PhaseStatus.PENDING:
                run.status = RunStatus.RUNNING
                await session.flush()
                await enqueue_step_job(session, StepJob(str(merge.id)))
                return
        step = machine.after_approval(gate.kind, failed)
        await self.start_phase(session, run, step.phase, feedback=feedback)

    async def _after_rejection(
        self, session: AsyncSession, run: WorkflowRun, gate: ApprovalGate
    ) -> None:
        outcome = machine.after_rejection(gate.kind)
        if isinstance(outcome, machine.StartPhase):
            if gate.kind is GateKind.MERGE:
                merge = await self.latest_attempt(session, run.id, Phase.MERGE)
                if merge is not None and merge.status is PhaseStatus.PENDING:
                    merge.status = PhaseStatus.SKIPPED
            await self.start_phase(session, run, outcome.phase, feedback=gate.feedback)
        elif isinstance(outcome, machine.HoldRun):
            run.held_from = RunStatus.RUNNING
            run.status = RunStatus.ON_HOLD
        else:
            vision = await self.latest_attempt(session, run.id, Phase.VISION)
            if vision is not None:
                vision.feedback = gate.feedback
            run.status = RunStatus.RUNNING
        await session.flush()

    # --- phases finishing -----------------------------------------------------------

    async def phase_succeeded(
        self, session: AsyncSession, run: WorkflowRun, attempt: WorkflowPhase, output: str
    ) -> None:
        end_phase(attempt, PhaseStatus.SUCCEEDED)
        attempt.output = output
        await session.flush()
        if run.status is RunStatus.RUNNING:
            await self._advance(session, run, attempt)

    async def phase_failed(
        self, session: AsyncSession, run: WorkflowRun, attempt: WorkflowPhase, error: str
    ) -> None:
        end_phase(attempt, PhaseStatus.FAILED)
        attempt.error = error[:4000]
        await session.flush()
        if run.status is RunStatus.RUNNING:
            await self.open_error_gate(session, run, attempt)

    async def _advance(
        self, session: AsyncSession, run: WorkflowRun, attempt: WorkflowPhase
    ) -> None:
        step = machine.after_success(attempt.phase)
        if isinstance(step, machine.StartPhase):
            await self.start_phase(session, run, step.phase, feedback=None)
        elif isinstance(step, machine.OpenGate):
            await self._open_gate_after(session, run, attempt, step.kind)
        else:
            run.status = RunStatus.COMPLETED
            run.current_phase = Phase.MERGE
            run.finished_at = now()
            await session.flush()

    async def _open_gate_after(
        self, session: AsyncSession, run: WorkflowRun, attempt: WorkflowPhase, kind: GateKind
    ) -> None:
        if kind is GateKind.PLAN:
            await self._open_gate(
                session,
                run,
                kind,
                machine.artifact_version("plan", attempt.output or ""),
                phase_id=attempt.id,
                summary=attempt.output or "",
                user_id=None,
            )
            return
        if kind is GateKind.MERGE:
            merge = WorkflowPhase(
                run_id=run.id,
                phase=Phase.MERGE,
                attempt=await self._next_attempt_number(session, run.id, Phase.MERGE),
            )
            session.add(merge)
            run.current_phase = Phase.MERGE
            await session.flush()
            await self._open_gate(
                session,
                run,
                kind,
                self.merge_artifact(run),
                phase_id=merge.id,
                summary=attempt.output or "",
                user_id=None,
            )
            return
        raise ValueError(f"no gate of kind {kind} follows a phase")

    # --- hold, resume, cancel -------------------------------------------------------

    async def hold(self, session: AsyncSession, project: Project, actor: Actor) -> WorkflowRun:
        run = await self._run_to_change(session, project, actor, "hold")
        if not machine.can_hold(run.status):
            raise ConflictError("This build is already on hold. Say `/resume` to continue.")
        run.held_from = run.status
        run.status = RunStatus.ON_HOLD
        await session.flush()
        self._audit_run(AuditAction.WORKFLOW_HELD, actor, run)
        return run

    async def resume(self, session: AsyncSession, project: Project, actor: Actor) -> WorkflowRun:
        """Continue where the run stopped, including work that finished while it was held."""
        run = await self._run_to_change(session, project, actor, "resume")
        if run.status is not RunStatus.ON_HOLD:
            raise ConflictError("This build is not on hold.")
        # Back to running; reconcile finds the gate (if one still waits) or the next step.
        run.status = RunStatus.RUNNING
        run.held_from = None
        await session.flush()
        self._audit_run(AuditAction.WORKFLOW_RESUMED, actor, run)
        await self.reconcile(session, run)
        return run

    async def reconcile(self, session: AsyncSession, run: WorkflowRun) -> None:
        """Make sure a running run has something under way: a queued step or a gate."""
        if run.status is not RunStatus.RUNNING or run.current_phase is None:
            return
        if await self.pending_gate(session, run.id) is not None:
            run.status = RunStatus.AWAITING_APPROVAL
            await session.flush()
            return
        attempt = await self.latest_attempt(session, run.id, run.current_phase)
        if attempt is None:
            return
        if attempt.status is PhaseStatus.SUCCEEDED:
            await self._advance(session, run, attempt)
        elif attempt.status is PhaseStatus.FAILED and await self._voided_by_new_code(
            session, attempt
        ):
            # New code was pushed while the run was held: the question about the old
            # code's checks was voided, and the new code is validated instead.
            await self.start_phase(session, run, Phase.VALIDATE, feedback=None)
        elif attempt.status is PhaseStatus.FAILED:
            await self.open_error_gate(session, run, attempt)
        elif attempt.status is PhaseStatus.SKIPPED and attempt.phase is Phase.MERGE:
            # Its approval was voided by new code while the run was held: validate again.
            await self.start_phase(session, run, Phase.VALIDATE, feedback=None)
        elif attempt.status in (PhaseStatus.PENDING, PhaseStatus.RUNNING) and (
            attempt.phase in machine.AUTOMATIC_PHASES or attempt.phase is Phase.MERGE
        ):
            await enqueue_step_job(session, StepJob(str(attempt.id)))

    async def _voided_by_new_code(self, session: AsyncSession, attempt: WorkflowPhase) -> bool:
        """A failed checks attempt whose question was voided (`pull_request_moved`)."""
        if attempt.phase is not Phase.CHECKS:
            return False
        latest = (
            await session.execute(
                select(ApprovalGate.status)
                .where(ApprovalGate.phase_id == attempt.id)
                .order_by(ApprovalGate.created_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        return latest is GateStatus.VOIDED

    async def cancel(self, session: AsyncSession, project: Project, actor: Actor) -> WorkflowRun:
        run = await self._run_to_change(session, project, actor, "cancel")
        await self.end_run(session, run, RunStatus.CANCELLED)
        self._audit_run(AuditAction.WORKFLOW_CANCELLED, actor, run)
        return run

    # --- artifacts changing ---------------------------------------------------------

    async def repository_changing(self, session: AsyncSession, project: Project) -> None:
        """Before the project's repository changes. A gate approves a repository too: once a
        run works on one, changing it is refused until the run ends; a vision question
        still waiting is voided and asked again, so the answer covers the new repository."""
        await lock_project(session, project.id)
        run = await self.active_run(session, project.id)
        if run is None:
            return
        if run.github_repo is not None or run.current_phase is not Phase.VISION:
            working_on = run.github_repo or project.github_repo or "its repository"
            raise ConflictError(
                f"Build #{run.number} is working on {working_on}, and its approvals were "
                "for that repository. Finish it, or `/cancel` it, before linking another."
            )
        gate = await self.pending_gate(session, run.id)
        if gate is None:
            return
        gate.status = GateStatus.VOIDED
        await session.flush()
        await self._open_gate(
            session,
            run,
            gate.kind,
            gate.artifact_version,
            phase_id=gate.phase_id,
            summary=gate.summary or "",
            user_id=None,
        )
