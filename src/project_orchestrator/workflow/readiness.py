"""What GitHub's verdict on the pull request does to a run.

The checks phase waits until GitHub says the pull request can merge. Then the merge gate
is offered for exactly that head; checks that failed send SCAR to fix them, by itself up
to RUN_MAX_FIX_ATTEMPTS times, and then the person decides with every failure listed;
anything else that blocks the merge (conflicts, a draft) is the person's to decide at
once. A pull request merged or closed by a person on GitHub ends the run. Like the rest
of the workflow, these only flush: the job or event that called them commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.audit import AuditAction
from project_orchestrator.channels.base import Notifier, ProjectAddress
from project_orchestrator.db.enqueue import enqueue_checks_wake
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import lock_project
from project_orchestrator.repos.pulls import Readiness, Verdict
from project_orchestrator.workflow import machine
from project_orchestrator.workflow.measures import end_phase
from project_orchestrator.workflow.models import (
    ApprovalGate,
    GateKind,
    GateStatus,
    Phase,
    PhaseStatus,
    RunStatus,
    WorkflowPhase,
    WorkflowRun,
)
from project_orchestrator.workflow.service import Workflow

SUMMARY_LIMIT = 3800
_UNFINISHED = (PhaseStatus.PENDING, PhaseStatus.RUNNING)


@dataclass
class MergeReadiness:
    workflow: Workflow
    max_fix_attempts: int = 3

    async def apply(
        self, session: AsyncSession, run: WorkflowRun, attempt: WorkflowPhase, verdict: Verdict
    ) -> None:
        """Apply one reading of GitHub to a checks attempt still under way (project locked)."""
        match verdict.readiness:
            case Readiness.READY:
                await self.workflow.phase_succeeded(session, run, attempt, verdict.reason)
            case Readiness.PENDING:
                if attempt.output != verdict.reason:
                    # Only a change is written: a wait with nothing new stays "no progress".
                    attempt.output = verdict.reason
                    await session.flush()
            case Readiness.FAILING:
                await self._checks_failed(session, run, attempt, verdict.failure_report())
            case Readiness.BLOCKED:
                await self.workflow.phase_failed(session, run, attempt, verdict.reason)
            case Readiness.MERGED | Readiness.CLOSED:
                await self.end_on_github(
                    session, run, merged=verdict.readiness is Readiness.MERGED, by=None
                )

    async def _checks_failed(
        self, session: AsyncSession, run: WorkflowRun, attempt: WorkflowPhase, report: str
    ) -> None:
        end_phase(attempt, PhaseStatus.FAILED)
        attempt.error = report[:4000]
        await session.flush()
        if run.fix_attempts < self.max_fix_attempts:
            run.fix_attempts += 1
            await self.workflow.start_phase(
                session, run, Phase.EXECUTE, feedback=machine.fix_request(report)[:4000]
            )
            return
        failures = (
            await session.execute(
                select(WorkflowPhase.error)
                .where(
                    WorkflowPhase.run_id == run.id,
                    WorkflowPhase.phase == Phase.CHECKS,
                    WorkflowPhase.status == PhaseStatus.FAILED,
                )
                .order_by(WorkflowPhase.attempt)
            )
        ).scalars()
        listed = "\n\n".join(
            f"Reading {n}:\n{error}" for n, error in enumerate(failures, start=1) if error
        )
        fixes = run.fix_attempts
        summary = (
            f"GitHub's checks are still failing after {fixes} "
            f"{'fix' if fixes == 1 else 'fixes'} by SCAR. What failed each time:\n\n{listed}"
        )
        await self.workflow.open_error_gate(session, run, attempt, summary=summary[:SUMMARY_LIMIT])

    async def end_on_github(
        self, session: AsyncSession, run: WorkflowRun, *, merged: bool, by: str | None
    ) -> None:
        """A person merged (the run is done) or closed (it is cancelled) the pull request."""
        ended = RunStatus.COMPLETED if merged else RunStatus.CANCELLED
        await self.workflow.end_run(session, run, ended)
        self.workflow.audit.record(
            AuditAction.WORKFLOW_COMPLETED if merged else AuditAction.WORKFLOW_CANCELLED,
            user_id=keys.github_user(by) if by else None,
            project_id=run.project_id,
            details={
                "run": run.number,
                "pull_request": run.pr_number,
                "merged": merged,
                "via": "github",
            },
        )

    async def pull_request_ended(
        self,
        session: AsyncSession,
        project: Project,
        notifier: Notifier,
        *,
        number: int,
        merged: bool,
        by: str | None,
    ) -> WorkflowRun | None:
        """The `pull_request` `closed` webhook: end the run whose pull request it is, unless
        our own merge is what closed it (the merge step completes the run then)."""
        await lock_project(session, project.id)
        run = await self.workflow.active_run(session, project.id)
        if run is None or run.pr_number != number:
            return None
        if merged and run.current_phase is Phase.MERGE:
            merge = await self.workflow.latest_attempt(session, run.id, Phase.MERGE)
            if merge is not None and merge.status is PhaseStatus.RUNNING:
                return None
        await self.end_on_github(session, run, merged=merged, by=by)
        if not merged:
            await notifier.send(
                session,
                ProjectAddress.of(project),
                keys.run_ended_on_github(run.id),
                f"Pull request #{number} was closed on GitHub without merging, so I stopped "
                f"build #{run.number}. Tell me what you would like next, or `/build` it again.",
            )
        return run

    async def pull_request_moved(
        self, session: AsyncSession, project: Project, pr_number: int, head_sha: str | None
    ) -> list[ApprovalGate]:
        """New code on the pull request. A merge approval, or a question about the old
        code's checks, no longer covers it: voided, and the new code is validated again.
        A run waiting on the checks reads GitHub again (for the new head)."""
        await lock_project(session, project.id)
        run = await self.workflow.active_run(session, project.id)
        if run is None or run.pr_number != pr_number or head_sha is None:
            return []
        if run.pr_head_sha == head_sha:
            return []
        run.pr_head_sha = head_sha
        await session.flush()
        gate = await self.workflow.pending_gate(session, run.id)
        if gate is None:
            await self._wake_checks(session, run)
            return []
        if not await self._about_the_code(session, gate):
            return []
        gate.status = GateStatus.VOIDED
        merge = await self.workflow.latest_attempt(session, run.id, Phase.MERGE)
        if merge is not None and merge.status is PhaseStatus.PENDING:
            merge.status = PhaseStatus.SKIPPED
        await session.flush()
        if run.status is RunStatus.AWAITING_APPROVAL:
            await self.workflow.start_phase(session, run, Phase.VALIDATE, feedback=None)
        return [gate]

    async def _about_the_code(self, session: AsyncSession, gate: ApprovalGate) -> bool:
        """A merge gate, or an error gate about the pull request's checks or mergeability."""
        if gate.kind is GateKind.MERGE:
            return True
        if gate.kind is not GateKind.ERROR_RESOLUTION or gate.phase_id is None:
            return False
        failed = await session.get(WorkflowPhase, gate.phase_id)
        return failed is not None and failed.phase is Phase.CHECKS

    async def check_finished(self, session: AsyncSession, project: Project, head_sha: str) -> bool:
        """A check or status on `head_sha` changed: a run waiting on it reads GitHub now."""
        run = await self.workflow.active_run(session, project.id)
        if run is None or run.current_phase is not Phase.CHECKS:
            return False
        if run.pr_head_sha is not None and run.pr_head_sha != head_sha:
            return False  # about older code
        return await self._wake_checks(session, run)

    async def _wake_checks(self, session: AsyncSession, run: WorkflowRun) -> bool:
        if run.status is not RunStatus.RUNNING or run.current_phase is not Phase.CHECKS:
            return False
        attempt = await self.workflow.latest_attempt(session, run.id, Phase.CHECKS)
        if attempt is None or attempt.status not in _UNFINISHED:
            return False
        await enqueue_checks_wake(session, str(attempt.id))
        return True
