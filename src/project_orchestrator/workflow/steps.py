"""The job that runs one phase attempt's SCAR command and moves the run on.

Three steps, so no transaction stays open while SCAR works (minutes, sometimes an hour):
prepare (lock, check the run still wants this, store the command), run SCAR, finish
(lock, store the output, apply the transition, queue the next step). A job that runs
again finds the command stored under the same key and the same conversation, so SCAR
is never asked twice; a job that finds the work done only re-announces it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys, metrics
from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.channels.base import Notifier
from project_orchestrator.db.engine import Database
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import lock_project
from project_orchestrator.repos.host import RepositoryError
from project_orchestrator.scar.models import ScarCommand, ScarCommandStatus, ScarTransport
from project_orchestrator.scar.parsing import parse_artifacts
from project_orchestrator.scar.protocol import (
    ScarClient,
    ScarError,
    ScarInvocation,
    ScarOutput,
    ScarTimedOut,
    ScarUnavailable,
)
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.vision.render import brief_for_coding_agent
from project_orchestrator.workflow import machine
from project_orchestrator.workflow.checks_step import ChecksStep
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
from project_orchestrator.workflow.notices import announce, explain_scar_failure
from project_orchestrator.workflow.repository import NO_OWNER_CONFIGURED, RunRepositories
from project_orchestrator.workflow.scar_addressing import (
    conversation_id,
    conversation_started,
)
from project_orchestrator.workflow.service import Workflow

log = get_logger(__name__)


class GateNotPassed(RuntimeError):
    """A code-changing command without the approval that covers it: a bug, never run."""


@dataclass(frozen=True)
class _Prepared:
    run_id: uuid.UUID
    command_id: uuid.UUID
    invocation: ScarInvocation
    # The approved vision (markdown, version) to commit to the repository first.
    vision: tuple[str, int] | None = None


@dataclass(frozen=True)
class _NeedsRepository:
    """The project has no repository and one may be created for it."""

    project_id: uuid.UUID
    project_name: str


@dataclass
class StepRunner:
    db: Database
    workflow: Workflow
    scar: ScarClient
    notifier: Notifier
    audit: AuditLog
    transport: ScarTransport
    github_web_url: str = "https://github.com"
    repositories: RunRepositories | None = None
    checks: ChecksStep | None = None

    async def run(
        self, phase_id: uuid.UUID, *, last_attempt: bool, poll: int = 0, wake: bool = False
    ) -> None:
        phase = await self._phase_of(phase_id)
        if phase is Phase.CHECKS:
            if self.checks is not None:
                await self.checks.run(phase_id, poll=poll, wake=wake, last_attempt=last_attempt)
            return
        if phase is Phase.MERGE and self.checks is not None:
            # GitHub is asked once more right before the merge; it may have changed its mind.
            ready = await self.checks.merge_still_ready(phase_id, last_attempt=last_attempt)
            if not ready:
                return
        await self._run_scar(phase_id, last_attempt=last_attempt)

    async def _run_scar(self, phase_id: uuid.UUID, *, last_attempt: bool) -> None:
        prepared = await self._prepare(phase_id)
        if isinstance(prepared, _NeedsRepository):
            if not await self._create_repository(phase_id, prepared, last_attempt=last_attempt):
                return
            prepared = await self._prepare(phase_id)
        if not isinstance(prepared, _Prepared):
            return
        if prepared.vision is not None:
            await self._publish_vision(prepared, last_attempt=last_attempt)
        started = time.monotonic()
        command_id = prepared.command_id

        async def mark_sent() -> None:
            await self._mark_sent(command_id)

        try:
            output: ScarOutput | None = await self.scar.run(prepared.invocation, on_send=mark_sent)
            error: ScarError | None = None
        except ScarUnavailable as exc:
            if not last_attempt:
                log.warning("scar.unavailable_retrying", phase_id=str(phase_id))
                raise  # the queue retries with backoff; the same conversation resumes
            output, error = None, exc
        except ScarError as exc:
            output, error = None, exc
        metrics.scar_command_duration_seconds.labels(prepared.invocation.command).observe(
            time.monotonic() - started
        )
        if output is not None and prepared.invocation.command == "merge-pr" and self.checks:
            # SCAR answers in prose; GitHub says whether the pull request really merged.
            error = await self.checks.merge_not_done(prepared.invocation, output.text)
            output = None if error is not None else output
        await self._finish(phase_id, prepared, output, error)

    # --- prepare --------------------------------------------------------------------

    async def _phase_of(self, phase_id: uuid.UUID) -> Phase | None:
        async with self.db.session_scope() as session:
            found = select(WorkflowPhase.phase).where(WorkflowPhase.id == phase_id)
            return (await session.execute(found)).scalar_one_or_none()

    async def _prepare(self, phase_id: uuid.UUID) -> _Prepared | _NeedsRepository | None:
        async with self.db.session_scope() as session:
            prepared = await self._prepare_in(session, phase_id)
            if not isinstance(prepared, _NeedsRepository):
                await self._announce(session, phase_id)
            return prepared

    async def _prepare_in(
        self, session: AsyncSession, phase_id: uuid.UUID
    ) -> _Prepared | _NeedsRepository | None:
        attempt = await session.get(WorkflowPhase, phase_id)
        if attempt is None:
            return None
        run = await session.get(WorkflowRun, attempt.run_id)
        if run is None:
            return None
        project = await lock_project(session, run.project_id)
        await session.refresh(run)
        await session.refresh(attempt)
        if attempt.status is PhaseStatus.PENDING and run.status is not RunStatus.RUNNING:
            return None  # held or ended before it began; /resume queues it again
        if attempt.status not in (PhaseStatus.PENDING, PhaseStatus.RUNNING):
            return None
        if not project.github_repo and self._may_create_repositories:
            return _NeedsRepository(project.id, project.name)
        try:
            repo = self._pin_repository(run, project)
            vision = await self.workflow.approved_vision(session, project.id)
            step = await self._step_for(session, run, attempt, vision)
            await self._check_covered(session, run, step)
        except ValueError as exc:
            await self.workflow.phase_failed(session, run, attempt, str(exc))
            return None
        command = await self._command_for(session, project, run, attempt, step)
        attempt.status = PhaseStatus.RUNNING
        attempt.started_at = attempt.started_at or datetime.now(UTC)
        if attempt.phase is Phase.EXECUTE and run.branch is None:
            run.branch = await self._branch_for(session, run)
        await session.flush()
        return _Prepared(
            run_id=run.id,
            command_id=command.id,
            invocation=ScarInvocation(
                conversation_id=command.conversation_id or conversation_id(run),
                repo=repo,
                repo_url=f"{self.github_web_url}/{repo}",
                command=step.command,
                args=step.args,
                command_key=f"po-{attempt.id}",
                codebase=project.scar_codebase,
                open_repository=not await conversation_started(session, run, command),
                sent_before=command.sent_at is not None,
            ),
            vision=(
                (vision.markdown, vision.version)
                if vision is not None and attempt.phase is Phase.PRIME
                else None
            ),
        )

    @property
    def _may_create_repositories(self) -> bool:
        return self.repositories is not None and self.repositories.owner is not None

    @staticmethod
    def _pin_repository(run: WorkflowRun, project: Project) -> str:
        """The repository the run's gates covered; a step never runs against another."""
        if not project.github_repo:
            raise ValueError(NO_OWNER_CONFIGURED)
        if run.github_repo is None:
            run.github_repo = project.github_repo
        elif run.github_repo.lower() != project.github_repo.lower():
            raise ValueError(
                f"This build was approved for the repository {run.github_repo}, but the "
                f"project now points at {project.github_repo}. Cancel this build and start "
                "a new one to build in the new repository."
            )
        return run.github_repo

    async def _branch_for(self, session: AsyncSession, run: WorkflowRun) -> str:
        """The branch SCAR's plan made (its template commits the plan there), else ours."""
        plan = await self.workflow.latest_attempt(session, run.id, Phase.PLAN)
        found = parse_artifacts(plan.output or "").branch if plan is not None else None
        return found or machine.branch_name(run.feature_request, run.number)

    async def _step_for(
        self,
        session: AsyncSession,
        run: WorkflowRun,
        attempt: WorkflowPhase,
        vision: VisionDocument | None,
    ) -> machine.ScarStep:
        plan = await self.workflow.latest_attempt(session, run.id, Phase.PLAN)
        return machine.scar_step(
            attempt.phase,
            feature=run.feature_request,
            feedback=attempt.feedback,
            plan_output=plan.output if plan is not None else None,
            branch=run.branch or await self._branch_for(session, run),
            pr_number=run.pr_number,
            vision_brief=brief_for_coding_agent(vision.markdown) if vision else None,
        )

    async def _check_covered(
        self, session: AsyncSession, run: WorkflowRun, step: machine.ScarStep
    ) -> None:
        """Code changes only after the approval that covers them, checked here in code."""
        if step.command not in machine.CODE_CHANGING_COMMANDS:
            return
        needed = GateKind.PLAN if step.command == "execute-github" else GateKind.MERGE
        latest = (
            await session.execute(
                select(ApprovalGate)
                .where(ApprovalGate.run_id == run.id, ApprovalGate.kind == needed)
                .order_by(ApprovalGate.created_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if latest is None or latest.status is not GateStatus.APPROVED:
            raise GateNotPassed(f"{step.command} without an approved {needed.value} gate")

    async def _command_for(
        self,
        session: AsyncSession,
        project: Project,
        run: WorkflowRun,
        attempt: WorkflowPhase,
        step: machine.ScarStep,
    ) -> ScarCommand:
        key = keys.phase_command(attempt.id)
        command = (
            await session.execute(select(ScarCommand).where(ScarCommand.idempotency_key == key))
        ).scalar_one_or_none()
        if command is None:
            command = ScarCommand(
                project_id=project.id,
                run_id=run.id,
                phase_id=attempt.id,
                idempotency_key=key,
                transport=self.transport,
                command=step.command,
                args=step.args,
                conversation_id=conversation_id(run),
                status=ScarCommandStatus.RUNNING,
                started_at=datetime.now(UTC),
            )
            session.add(command)
            await session.flush()
            log.info("scar.command_started", command=step.command, phase=attempt.phase.value)
        return command

    # --- finish ---------------------------------------------------------------------

    async def _finish(
        self,
        phase_id: uuid.UUID,
        prepared: _Prepared,
        output: ScarOutput | None,
        error: ScarError | None,
    ) -> None:
        async with self.db.session_scope() as session:
            await self._finish_in(session, phase_id, prepared, output, error)
            await self._announce(session, phase_id)

    async def _finish_in(
        self,
        session: AsyncSession,
        phase_id: uuid.UUID,
        prepared: _Prepared,
        output: ScarOutput | None,
        error: ScarError | None,
    ) -> None:
        run = await session.get(WorkflowRun, prepared.run_id)
        if run is None:
            return  # the project was deleted meanwhile
        project = await lock_project(session, run.project_id)
        await session.refresh(run)
        attempt = await session.get(WorkflowPhase, phase_id, populate_existing=True)
        command = await session.get(ScarCommand, prepared.command_id, populate_existing=True)
        if attempt is None or command is None:
            return
        if command.status is not ScarCommandStatus.RUNNING:
            return  # another run of this job finished it
        if output is not None and output.codebase and output.codebase != project.scar_codebase:
            project.scar_codebase = output.codebase  # SCAR's folder, for the next run
        self._record(command, output, error)
        if attempt.status is not PhaseStatus.RUNNING:
            return  # cancelled while SCAR worked: keep the output, change nothing
        if error is not None:
            why = explain_scar_failure(attempt, error)
            await self.workflow.phase_failed(session, run, attempt, why)
            return
        text = output.text if output is not None else ""
        problem = self._apply_artifacts(run, attempt, command)
        if problem is None and attempt.phase is Phase.VALIDATE and machine.validation_failed(text):
            problem = f"The checks did not pass:\n\n{text}"
        if problem is not None:
            await self.workflow.phase_failed(session, run, attempt, problem)
        else:
            await self.workflow.phase_succeeded(session, run, attempt, text)

    def _record(
        self, command: ScarCommand, output: ScarOutput | None, error: ScarError | None
    ) -> None:
        finished = datetime.now(UTC)
        command.finished_at = finished
        started = command.started_at or finished
        command.duration_seconds = max(0.0, (finished - started).total_seconds())
        if error is None and output is not None:
            command.status = ScarCommandStatus.SUCCEEDED
            command.output = output.text
            found = parse_artifacts(output.text)
            command.branch, command.pr_url, command.pr_number = (
                found.branch,
                found.pr_url,
                found.pr_number,
            )
        else:
            timed_out = isinstance(error, ScarTimedOut)
            command.status = ScarCommandStatus.TIMED_OUT if timed_out else ScarCommandStatus.FAILED
            command.error = str(error)[:4000]
        self.audit.record(
            AuditAction.SCAR_COMMAND_EXECUTED,
            result=AuditResult.SUCCESS if error is None else AuditResult.FAILURE,
            project_id=command.project_id,
            details={
                "command": command.command,
                "status": command.status.value,
                "duration_seconds": round(command.duration_seconds, 3),
                "transport": command.transport.value,
                "pr_url": command.pr_url,
                "branch": command.branch,
            },
        )

    @staticmethod
    def _apply_artifacts(
        run: WorkflowRun, attempt: WorkflowPhase, command: ScarCommand
    ) -> str | None:
        if attempt.phase is not Phase.EXECUTE:
            return None
        if command.branch:
            run.branch = command.branch
        if command.pr_url:
            if command.pr_number != run.pr_number:
                run.pr_head_sha = None  # a different pull request: its head is unknown yet
            run.pr_url, run.pr_number = command.pr_url, command.pr_number
        if run.pr_number is None:
            return (
                "SCAR finished building but did not say which pull request it opened, so "
                "there is nothing to check or merge yet."
            )
        return None

    # --- the repository ---------------------------------------------------------------

    async def _create_repository(
        self, phase_id: uuid.UUID, needed: _NeedsRepository, *, last_attempt: bool
    ) -> bool:
        """Give the project a repository; False (the phase failed, said why) if GitHub
        would not."""
        if self.repositories is None:
            return False
        try:
            await self.repositories.create_for(needed.project_id, needed.project_name)
        except RepositoryError as exc:
            if exc.transient and not last_attempt:
                raise  # GitHub down or slow: the queue tries again with backoff
            log.warning("repository.create_failed", project_id=str(needed.project_id))
            await self._fail(phase_id, f"I could not create a repository for the project: {exc}")
            return False
        return True

    async def _publish_vision(self, prepared: _Prepared, *, last_attempt: bool) -> None:
        """The approved vision into the repository, where SCAR reads it before planning."""
        if self.repositories is None or prepared.vision is None:
            return
        markdown, version = prepared.vision
        try:
            await self.repositories.publish_vision(prepared.invocation.repo, markdown, version)
        except RepositoryError as exc:
            if not last_attempt:
                raise  # the queue tries again with backoff
            # The plan command carries the vision too, so the build need not stop here.
            log.warning("repository.vision_not_published", error=str(exc))

    async def _mark_sent(self, command_id: uuid.UUID) -> None:
        async with self.db.session_scope() as session:
            await session.execute(
                update(ScarCommand).where(ScarCommand.id == command_id).values(sent_at=func.now())
            )

    async def give_up(self, phase_id: uuid.UUID, error: BaseException) -> None:
        """Out of retries on our side: fail the phase visibly instead of retrying forever."""
        await self._fail(
            phase_id,
            "Something went wrong on our side and I stopped this step rather than guess. "
            "The operators can see the details in the logs.",
            command_error=type(error).__name__,
        )

    async def _fail(
        self, phase_id: uuid.UUID, reason: str, *, command_error: str | None = None
    ) -> None:
        """Fail the phase attempt, if it is still under way, and say so."""
        async with self.db.session_scope() as session:
            attempt = await session.get(WorkflowPhase, phase_id)
            if attempt is None:
                return
            run = await session.get(WorkflowRun, attempt.run_id)
            if run is None:
                return
            await lock_project(session, run.project_id)
            await session.refresh(run)
            await session.refresh(attempt)
            if attempt.status not in (PhaseStatus.PENDING, PhaseStatus.RUNNING):
                return
            if command_error is not None:
                await session.execute(
                    update(ScarCommand)
                    .where(
                        ScarCommand.idempotency_key == keys.phase_command(attempt.id),
                        ScarCommand.status == ScarCommandStatus.RUNNING,
                    )
                    .values(
                        status=ScarCommandStatus.FAILED,
                        error=command_error,
                        finished_at=datetime.now(UTC),
                    )
                )
            await self.workflow.phase_failed(session, run, attempt, reason)
            await announce(session, self.notifier, run.id)

    # --- telling --------------------------------------------------------------------

    async def _announce(self, session: AsyncSession, phase_id: uuid.UUID) -> None:
        """Bring the run's progress up to date, in the outbox of the change it reports."""
        attempt = await session.get(WorkflowPhase, phase_id)
        if attempt is not None:
            await announce(session, self.notifier, attempt.run_id)
