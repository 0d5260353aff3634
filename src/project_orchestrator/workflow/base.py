"""What every workflow change starts from: reading a project's runs, phases and gates,
locking the project for a change only its owner or approvers may make, and starting a
phase attempt or opening a gate (which every transition ends in)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.db.enqueue import enqueue_step_job
from project_orchestrator.db.jobs import StepJob
from project_orchestrator.errors import ForbiddenError, NotFoundError
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import Actor, lock_project, may_decide
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.workflow import machine
from project_orchestrator.workflow.measures import end_phase
from project_orchestrator.workflow.models import (
    ACTIVE_RUN_STATUSES,
    ApprovalGate,
    GateKind,
    GateStatus,
    Phase,
    PhaseStatus,
    RunStatus,
    WorkflowPhase,
    WorkflowRun,
)


def now() -> datetime:
    return datetime.now(UTC)


NOTHING_RUNNING = "Nothing is being built right now. Start with `/build <what you want>`."


class NotAllowed(ForbiddenError):
    pass


@dataclass
class WorkflowBase:
    audit: AuditLog

    # --- reading --------------------------------------------------------------------

    async def active_run(self, session: AsyncSession, project_id: uuid.UUID) -> WorkflowRun | None:
        return (
            await session.execute(
                select(WorkflowRun).where(
                    WorkflowRun.project_id == project_id,
                    WorkflowRun.status.in_(ACTIVE_RUN_STATUSES),
                )
            )
        ).scalar_one_or_none()

    async def pending_gate(self, session: AsyncSession, run_id: uuid.UUID) -> ApprovalGate | None:
        return (
            await session.execute(
                select(ApprovalGate).where(
                    ApprovalGate.run_id == run_id, ApprovalGate.status == GateStatus.PENDING
                )
            )
        ).scalar_one_or_none()

    async def latest_attempt(
        self, session: AsyncSession, run_id: uuid.UUID, phase: Phase
    ) -> WorkflowPhase | None:
        return (
            await session.execute(
                select(WorkflowPhase)
                .where(WorkflowPhase.run_id == run_id, WorkflowPhase.phase == phase)
                .order_by(WorkflowPhase.attempt.desc())
                .limit(1)
            )
        ).scalar_one_or_none()

    async def vision_approved(self, session: AsyncSession, project_id: uuid.UUID) -> bool:
        found = await session.execute(
            select(ApprovalGate.id)
            .join(WorkflowRun, WorkflowRun.id == ApprovalGate.run_id)
            .where(
                WorkflowRun.project_id == project_id,
                ApprovalGate.kind == GateKind.VISION,
                ApprovalGate.status == GateStatus.APPROVED,
            )
            .limit(1)
        )
        return found.scalar_one_or_none() is not None

    async def approved_vision(
        self, session: AsyncSession, project_id: uuid.UUID
    ) -> VisionDocument | None:
        """The newest version of the vision that its owner approved."""
        approved = (
            select(ApprovalGate.artifact_version)
            .join(WorkflowRun, WorkflowRun.id == ApprovalGate.run_id)
            .where(
                WorkflowRun.project_id == project_id,
                ApprovalGate.kind == GateKind.VISION,
                ApprovalGate.status == GateStatus.APPROVED,
            )
        )
        return (
            await session.execute(
                select(VisionDocument)
                .where(
                    VisionDocument.project_id == project_id,
                    ("vision:" + VisionDocument.content_hash).in_(approved),
                )
                .order_by(VisionDocument.version.desc())
                .limit(1)
            )
        ).scalar_one_or_none()

    async def _run_to_change(
        self, session: AsyncSession, project: Project, actor: Actor, what: str
    ) -> WorkflowRun:
        await self._lock_as_decider(
            session,
            project,
            actor,
            what,
            f"Only the project's owner or its approvers can {what} a build.",
        )
        run = await self.active_run(session, project.id)
        if run is None:
            raise NotFoundError(NOTHING_RUNNING)
        return run

    async def _lock_as_decider(
        self, session: AsyncSession, project: Project, actor: Actor, what: str, refusal: str
    ) -> None:
        """Lock the project for a change only its owner or approvers may make."""
        await lock_project(session, project.id)
        if not await may_decide(session, project, actor.identity.id):
            self.audit.record(
                AuditAction.UNAUTHORIZED_ACCESS,
                result=AuditResult.DENIED,
                user_id=actor.audit_id,
                project_id=project.id,
                details={"attempted": what},
            )
            raise NotAllowed(refusal)

    # --- phases and gates -------------------------------------------------------------

    async def start_phase(
        self, session: AsyncSession, run: WorkflowRun, phase: Phase, *, feedback: str | None
    ) -> WorkflowPhase:
        previous = await self.latest_attempt(session, run.id, phase)
        attempt = WorkflowPhase(
            run_id=run.id,
            phase=phase,
            attempt=1 if previous is None else previous.attempt + 1,
            feedback=feedback,
            status=PhaseStatus.RUNNING if phase is Phase.VISION else PhaseStatus.PENDING,
            started_at=now() if phase is Phase.VISION else None,
        )
        session.add(attempt)
        run.current_phase = phase
        run.status = RunStatus.RUNNING
        await session.flush()
        if phase in machine.AUTOMATIC_PHASES or phase is Phase.MERGE:
            await enqueue_step_job(session, StepJob(str(attempt.id)))
        return attempt

    async def _open_gate(
        self,
        session: AsyncSession,
        run: WorkflowRun,
        kind: GateKind,
        version: str,
        *,
        phase_id: uuid.UUID | None,
        summary: str,
        user_id: str | None,
    ) -> ApprovalGate:
        gate = ApprovalGate(
            run_id=run.id,
            phase_id=phase_id,
            kind=kind,
            artifact_version=version[:128],
            summary=summary[:4000],
        )
        session.add(gate)
        run.status = RunStatus.AWAITING_APPROVAL
        await session.flush()
        self.audit.record(
            AuditAction.APPROVAL_REQUESTED,
            user_id=user_id,
            project_id=run.project_id,
            details={"run": run.number, "gate": kind.value, "artifact": gate.artifact_version},
        )
        return gate

    async def open_error_gate(
        self,
        session: AsyncSession,
        run: WorkflowRun,
        attempt: WorkflowPhase,
        *,
        summary: str | None = None,
    ) -> ApprovalGate:
        """Ask the person what to do about the failed attempt (`summary`: its story, when
        more than the attempt's own error)."""
        return await self._open_gate(
            session,
            run,
            GateKind.ERROR_RESOLUTION,
            keys.failed_phase_version(attempt.id),
            phase_id=attempt.id,
            summary=summary or attempt.error or "The step failed.",
            user_id=None,
        )

    @staticmethod
    def merge_artifact(run: WorkflowRun) -> str:
        if run.pr_head_sha:
            return keys.pr_head_version(run.pr_head_sha)
        return keys.pr_version(run.pr_number, run.branch)

    async def _next_attempt_number(
        self, session: AsyncSession, run_id: uuid.UUID, phase: Phase
    ) -> int:
        previous = await self.latest_attempt(session, run_id, phase)
        return 1 if previous is None else previous.attempt + 1

    async def end_run(self, session: AsyncSession, run: WorkflowRun, status: RunStatus) -> None:
        """End the run (cancelled, or completed outside the merge step): its question
        expires and whatever was under way stops."""
        run.status = status
        run.held_from = None
        run.finished_at = now()
        gate = await self.pending_gate(session, run.id)
        if gate is not None:
            gate.status = GateStatus.EXPIRED
        unfinished = await session.execute(
            select(WorkflowPhase).where(
                WorkflowPhase.run_id == run.id,
                WorkflowPhase.status.in_((PhaseStatus.PENDING, PhaseStatus.RUNNING)),
            )
        )
        for attempt in unfinished.scalars():
            end_phase(attempt, PhaseStatus.CANCELLED)
        await session.flush()

    def _audit_run(self, action: AuditAction, actor: Actor, run: WorkflowRun) -> None:
        self.audit.record(
            action,
            user_id=actor.audit_id,
            project_id=run.project_id,
            details={"run": run.number, "phase": run.current_phase, "via": actor.channel.value},
        )
