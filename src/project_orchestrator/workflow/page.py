"""What a project's read-only page shows, read in one short transaction: the vision as it
stands, each build as a timeline of its phases and decisions, the questions waiting, the
pull request and what the AI cost so far.

Plain data, in the person's words; `api.page` renders it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.projects.models import Identity, Project
from project_orchestrator.projects.spending import project_costs
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.vision.service import latest_vision
from project_orchestrator.workflow.machine import PHASE_ORDER
from project_orchestrator.workflow.models import (
    ApprovalGate,
    GateKind,
    GateStatus,
    PhaseStatus,
    RunStatus,
    WorkflowPhase,
    WorkflowRun,
)
from project_orchestrator.workflow.notices import PHASE_NAMES, PHASE_STATE, RUN_STATE, gate_name

# The newest builds; older ones are in the chat and the audit log.
RUNS_SHOWN = 20
# Apart by less than this, two steps were one transaction's (see `_ended_phase`).
_SAME_STEP = timedelta(seconds=1)

# How a build's badge is drawn: still going, done, or stopped short.
Tone = Literal["waiting", "ok", "stopped"]
_TONES: dict[RunStatus, Tone] = {
    RunStatus.COMPLETED: "ok",
    RunStatus.CANCELLED: "stopped",
    RunStatus.FAILED: "stopped",
}
# A phase's end, in the progress message's words; running and pending are not ends.
_ENDED = frozenset(
    {PhaseStatus.SUCCEEDED, PhaseStatus.FAILED, PhaseStatus.SKIPPED, PhaseStatus.CANCELLED}
)


@dataclass(frozen=True)
class Moment:
    """One line of a build's timeline."""

    at: datetime
    kind: str  # started | phase | waited | decided | finished: how it is drawn
    text: str


@dataclass(frozen=True)
class Question:
    run_number: int
    what: str
    asked_at: datetime


@dataclass(frozen=True)
class BuildView:
    number: int
    feature_request: str
    status: str
    tone: Tone
    pr_url: str | None
    cost: str
    timeline: list[Moment]


@dataclass(frozen=True)
class VisionView:
    markdown: str
    version: int
    written_at: datetime
    approved_at: datetime | None


@dataclass(frozen=True)
class ProjectPage:
    name: str
    repo: str | None
    repo_url: str | None
    vision: VisionView | None
    pending: list[Question]
    builds: list[BuildView]
    cost: str
    read_at: datetime


async def read_page(
    session: AsyncSession, project_id: uuid.UUID, *, github_web_url: str, now: datetime
) -> ProjectPage | None:
    project = await session.get(Project, project_id)
    if project is None:
        return None
    runs = list(
        (
            await session.execute(
                select(WorkflowRun)
                .where(WorkflowRun.project_id == project_id)
                .order_by(WorkflowRun.number.desc())
                .limit(RUNS_SHOWN)
            )
        ).scalars()
    )
    run_ids = [run.id for run in runs]
    attempts = list(
        (
            await session.execute(select(WorkflowPhase).where(WorkflowPhase.run_id.in_(run_ids)))
        ).scalars()
    )
    gates = list(
        (
            await session.execute(
                select(ApprovalGate)
                .where(ApprovalGate.run_id.in_(run_ids))
                .order_by(ApprovalGate.created_at)
            )
        ).scalars()
    )
    deciders = {g.decided_by_id for g in gates if g.decided_by_id is not None}
    names = await _names(session, deciders)
    total, by_run = await project_costs(session, project_id)
    document = await latest_vision(session, project_id)
    numbers = {run.id: run.number for run in runs}
    return ProjectPage(
        name=project.name,
        repo=project.github_repo,
        repo_url=f"{github_web_url}/{project.github_repo}" if project.github_repo else None,
        vision=_vision(document, gates) if document is not None else None,
        pending=[
            Question(numbers[g.run_id], gate_name(g.kind), g.created_at)
            for g in gates
            if g.status is GateStatus.PENDING
        ],
        builds=[
            BuildView(
                number=run.number,
                feature_request=run.feature_request,
                status=RUN_STATE[run.status],
                tone=_TONES.get(run.status, "waiting"),
                pr_url=run.pr_url,
                cost=by_run[run.id].words() if run.id in by_run else "no AI used yet",
                timeline=_timeline(
                    run,
                    [a for a in attempts if a.run_id == run.id],
                    [g for g in gates if g.run_id == run.id],
                    names,
                ),
            )
            for run in runs
        ],
        cost=total.words(),
        read_at=now,
    )


async def _names(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.execute(select(Identity).where(Identity.id.in_(ids)))
    return {identity.id: _name_of(identity) for identity in rows.scalars()}


def _name_of(identity: Identity) -> str:
    if identity.display_name:
        return identity.display_name
    if identity.github_login:
        return f"@{identity.github_login}"
    return "someone on Telegram"


def _vision(document: VisionDocument, gates: list[ApprovalGate]) -> VisionView:
    approved = [
        g.decided_at
        for g in gates
        if g.kind is GateKind.VISION
        and g.status is GateStatus.APPROVED
        and g.artifact_version == f"vision:{document.content_hash}"
        and g.decided_at is not None
    ]
    return VisionView(
        markdown=document.markdown,
        version=document.version,
        written_at=document.created_at,
        approved_at=max(approved, default=None),
    )


def _timeline(
    run: WorkflowRun,
    attempts: list[WorkflowPhase],
    gates: list[ApprovalGate],
    names: dict[uuid.UUID, str],
) -> list[Moment]:
    """The build's story: each phase in the order they started, with the decisions it
    waited for.

    Not sorted by time alone: a row's `created_at` is its transaction's start by
    PostgreSQL's clock and `started_at`/`finished_at` the service's, so within one
    transaction a later step can read a few microseconds earlier. A decision that ended
    its phase (the vision's) comes before the phase's end; one asked for once the phase
    was done (the plan's) after it.
    """
    moments = [Moment(run.created_at, "started", f"Build #{run.number} started")]
    attempt_ids = {attempt.id for attempt in attempts}
    ordered = sorted(
        attempts,
        key=lambda a: (a.started_at or a.created_at, PHASE_ORDER.index(a.phase), a.attempt),
    )
    for attempt in ordered:
        name = PHASE_NAMES[attempt.phase]
        again = f" (try {attempt.attempt})" if attempt.attempt > 1 else ""
        if attempt.started_at is not None:
            moments.append(Moment(attempt.started_at, "phase", f"{name}{again}"))
        own = [g for g in gates if g.phase_id == attempt.id]
        ended_at = attempt.finished_at
        during = [g for g in own if _ended_phase(g, ended_at)]
        for gate in during:
            moments.extend(_decision(gate, names))
        if ended_at is not None and attempt.status in _ENDED:
            label = name.split(":")[0]
            ended = PHASE_STATE[attempt.status]
            moments.append(Moment(ended_at, "phase", f"{label}{again}: {ended}"))
        for gate in own:
            if gate not in during:
                moments.extend(_decision(gate, names))
    for gate in gates:
        if gate.phase_id not in attempt_ids:
            moments.extend(_decision(gate, names))
    if run.finished_at is not None:
        moments.append(
            Moment(run.finished_at, "finished", f"Build #{run.number} {RUN_STATE[run.status]}")
        )
    return moments


def _ended_phase(gate: ApprovalGate, ended_at: datetime | None) -> bool:
    """Whether deciding `gate` is what ended its phase (the vision's approval), rather than
    a question asked once the phase was done (the plan's)."""
    return (
        ended_at is not None
        and gate.decided_at is not None
        and gate.created_at <= ended_at
        and gate.decided_at <= ended_at + _SAME_STEP
    )


def _decision(gate: ApprovalGate, names: dict[uuid.UUID, str]) -> list[Moment]:
    what = gate_name(gate.kind)
    moments = [Moment(gate.created_at, "waited", f"Waited for a decision on {what}")]
    if gate.decided_at is not None and gate.status in (GateStatus.APPROVED, GateStatus.REJECTED):
        who = names.get(gate.decided_by_id) if gate.decided_by_id else None
        verb = "Approved" if gate.status is GateStatus.APPROVED else "Sent back"
        by = f" by {who}" if who else ""
        moments.append(Moment(gate.decided_at, "decided", f"{verb}{by}: {what}"))
    return moments
