"""The job of a checks phase: ask GitHub whether the pull request can merge, then act.

GitHub is read with nothing held; the verdict is applied in one short transaction under
the project's lock, re-checking that the attempt still waits (a /cancel, a push or a
human merge may have come meanwhile). While the checks run, the phase is woken by the
`check_suite`, `check_run` and `status` webhooks, and polled in case one never comes:
one chain of polls per attempt, each queued in the transaction that read the last.

The same reading guards the merge: right before `merge-pr` runs, GitHub is asked again,
and if it no longer says the approved head can merge, the merge does not run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.channels.base import Notifier, ProjectAddress
from project_orchestrator.db.engine import Database
from project_orchestrator.db.enqueue import enqueue_checks_poll
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.service import lock_project
from project_orchestrator.repos.host import RepositoryError
from project_orchestrator.repos.pulls import PullRequests, Readiness, Verdict, verdict
from project_orchestrator.scar.models import ScarCommand
from project_orchestrator.scar.protocol import ScarError, ScarInvocation
from project_orchestrator.workflow.base import now
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
from project_orchestrator.workflow.notices import announce
from project_orchestrator.workflow.readiness import MergeReadiness

log = get_logger(__name__)

NOT_ASKED = (
    "GitHub was not asked whether the pull request can merge: no GitHub access token is "
    "configured, so SCAR's own checks decide."
)
NO_PULL_REQUEST = (
    "There is no pull request to check: SCAR did not say which one it opened. Approve to "
    "have SCAR build it again."
)
# While GitHub works out mergeability (it starts when first asked), ask again soon.
COMPUTING_DELAY = timedelta(seconds=5)


@dataclass(frozen=True)
class _Target:
    run_id: uuid.UUID
    repo: str | None
    pr_number: int | None


@dataclass
class ChecksStep:
    db: Database
    readiness: MergeReadiness
    notifier: Notifier
    pulls: PullRequests | None
    poll_interval: timedelta = timedelta(seconds=60)

    async def run(self, phase_id: uuid.UUID, *, poll: int, wake: bool, last_attempt: bool) -> None:
        async with self.db.session_scope() as session:
            target = await self._target(session, phase_id, {Phase.CHECKS})
        if target is None:
            return
        found = await self._read(target, last_attempt=last_attempt)
        async with self.db.session_scope() as session:
            attempt, run = await self._locked(session, phase_id)
            if attempt is None or run is None:
                return
            if attempt.status not in (PhaseStatus.PENDING, PhaseStatus.RUNNING):
                return  # decided meanwhile (a /cancel, a push, another reading)
            if run.status is not RunStatus.RUNNING:
                return  # held: /resume reads GitHub again
            if attempt.status is PhaseStatus.PENDING:
                attempt.status = PhaseStatus.RUNNING
                attempt.started_at = now()
            head = found[1]
            if head is not None and run.pr_head_sha != head:
                run.pr_head_sha = head  # the gate offered next covers this head, no other
            await self.readiness.apply(session, run, attempt, found[0])
            log.info("checks.read", readiness=found[0].readiness.value, poll=poll, wake=wake)
            if found[0].readiness is Readiness.PENDING and not wake:
                delay = min(COMPUTING_DELAY, self.poll_interval)
                await enqueue_checks_poll(
                    session,
                    str(phase_id),
                    poll + 1,
                    delay if found[0].computing else self.poll_interval,
                )
            await announce(session, self.notifier, run.id)

    async def merge_still_ready(self, phase_id: uuid.UUID, *, last_attempt: bool) -> bool:
        """Right before the merge: does GitHub still say the approved head can merge?
        If not, the merge is set aside, the checks are read again and the person told."""
        if self.pulls is None:
            return True
        async with self.db.session_scope() as session:
            target = await self._target(session, phase_id, {Phase.MERGE})
            if target is None or await _merge_sent(session, phase_id):
                return True  # nothing to guard, or SCAR has the command already: let it finish
        found, head = await self._read(target, last_attempt=last_attempt)
        async with self.db.session_scope() as session:
            merge, run = await self._locked(session, phase_id)
            if merge is None or run is None or merge.status is not PhaseStatus.PENDING:
                return True
            approved = await _approved_head(session, run)
            if found.readiness is Readiness.READY and head is not None and approved == head:
                return True
            if found.readiness in (Readiness.MERGED, Readiness.CLOSED):
                merged = found.readiness is Readiness.MERGED
                await self.readiness.end_on_github(session, run, merged=merged, by=None)
            else:
                await self._hold_back(session, run, merge, found, head)
            await announce(session, self.notifier, run.id)
            return False

    async def merge_not_done(self, invocation: ScarInvocation, said: str) -> ScarError | None:
        """After `merge-pr` answered: an error unless GitHub says the pull request merged.
        GitHub unreadable: SCAR's word stands (the run would otherwise stop on our side)."""
        if self.pulls is None or not invocation.args.isdigit():
            return None
        number = int(invocation.args)
        try:
            reading = await self.pulls.read_pull_request(invocation.repo, number)
        except RepositoryError as exc:
            log.warning("checks.merge_unconfirmed", error=str(exc))
            return None
        if reading.merged:
            return None
        return ScarError(
            f"it answered, but GitHub says pull request #{number} is not merged. "
            f"SCAR said: {' '.join(said.split())[:500]}"
        )

    async def _hold_back(
        self,
        session: AsyncSession,
        run: WorkflowRun,
        merge: WorkflowPhase,
        found: Verdict,
        head: str | None,
    ) -> None:
        end_phase(merge, PhaseStatus.SKIPPED)
        if head is not None:
            run.pr_head_sha = head
        why = found.reason
        if found.readiness is Readiness.READY:
            why = "New code arrived on the pull request after you approved."
        project = await lock_project(session, run.project_id)
        await self.notifier.send(
            session,
            ProjectAddress.of(project),
            keys.merge_held_back(merge.id),
            f"I did not merge: GitHub's answer changed since you approved. {why} "
            "I am checking the pull request again and will ask you once it can merge.",
        )
        await self.readiness.workflow.start_phase(session, run, Phase.CHECKS, feedback=None)

    # --- reading GitHub -----------------------------------------------------------------

    async def _read(self, target: _Target, *, last_attempt: bool) -> tuple[Verdict, str | None]:
        if self.pulls is None:
            return Verdict(Readiness.READY, NOT_ASKED), None
        if target.repo is None or target.pr_number is None:
            return Verdict(Readiness.BLOCKED, NO_PULL_REQUEST), None
        try:
            reading = await self.pulls.read_pull_request(target.repo, target.pr_number)
        except RepositoryError as exc:
            if exc.transient and not last_attempt:
                raise  # GitHub down or slow: the queue tries again with backoff
            log.warning("checks.unreadable", status=exc.github_status, error=str(exc))
            return (
                Verdict(
                    Readiness.BLOCKED,
                    f"I could not read pull request #{target.pr_number} on GitHub: {exc}",
                ),
                None,
            )
        return verdict(reading), reading.head_sha

    # --- rows -----------------------------------------------------------------------------

    @staticmethod
    async def _target(
        session: AsyncSession, phase_id: uuid.UUID, phases: set[Phase]
    ) -> _Target | None:
        attempt = await session.get(WorkflowPhase, phase_id)
        if attempt is None or attempt.phase not in phases:
            return None
        if attempt.status not in (PhaseStatus.PENDING, PhaseStatus.RUNNING):
            return None
        run = await session.get(WorkflowRun, attempt.run_id)
        if run is None or run.status is not RunStatus.RUNNING:
            return None
        return _Target(run.id, run.github_repo, run.pr_number)

    @staticmethod
    async def _locked(
        session: AsyncSession, phase_id: uuid.UUID
    ) -> tuple[WorkflowPhase | None, WorkflowRun | None]:
        attempt = await session.get(WorkflowPhase, phase_id)
        if attempt is None:
            return None, None
        run = await session.get(WorkflowRun, attempt.run_id)
        if run is None:
            return attempt, None
        await lock_project(session, run.project_id)
        await session.refresh(run)
        await session.refresh(attempt)
        return attempt, run


async def _merge_sent(session: AsyncSession, phase_id: uuid.UUID) -> bool:
    sent = select(ScarCommand.id).where(
        ScarCommand.idempotency_key == keys.phase_command(phase_id),
        ScarCommand.sent_at.is_not(None),
    )
    return bool((await session.execute(select(exists(sent)))).scalar())


async def _approved_head(session: AsyncSession, run: WorkflowRun) -> str | None:
    """The pull request head the latest approved merge gate covered."""
    gate = (
        await session.execute(
            select(ApprovalGate)
            .where(
                ApprovalGate.run_id == run.id,
                ApprovalGate.kind == GateKind.MERGE,
                ApprovalGate.status == GateStatus.APPROVED,
            )
            .order_by(ApprovalGate.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if gate is None or not gate.artifact_version.startswith("sha:"):
        return None
    return gate.artifact_version.removeprefix("sha:")
