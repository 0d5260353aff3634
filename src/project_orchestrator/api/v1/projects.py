"""/api/v1/projects: projects with their runs, gates and visions; deciding a gate.

A decision through the API is the same decision as `/approve` or `/reject` in a chat: the
workflow service checks that the person it is made for may decide, records and audits it,
and queues the next step in the request's transaction. The person is then told on their
channel, as they would be after a chat decision.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.api.auth import db_session, require_api_key
from project_orchestrator.api.schemas import BODY_REFUSALS, MAX_BIGINT, error_responses
from project_orchestrator.api.state import AppState, app_state
from project_orchestrator.db.types import Channel
from project_orchestrator.errors import ConflictError, NotFoundError
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.cost import Cost
from project_orchestrator.projects.models import (
    Identity,
    MemberRole,
    Project,
    ProjectMember,
    ProjectStatus,
)
from project_orchestrator.projects.service import Actor, github_identity
from project_orchestrator.projects.spending import project_costs, scar_seconds
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.workflow.machine import PHASE_ORDER
from project_orchestrator.workflow.models import (
    ACTIVE_RUN_STATUSES,
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
from project_orchestrator.workflow.notices import announce
from project_orchestrator.workflow.service import Workflow

log = get_logger(__name__)

router = APIRouter(
    prefix="/api/v1/projects", tags=["projects"], dependencies=[Depends(require_api_key)]
)
# scope="function": the session commits when the endpoint returns, before the response is
# sent, so a 200 for a decision means it is stored, with its announcement in the outbox.
Session = Annotated[AsyncSession, Depends(db_session, scope="function")]
State = Annotated[AppState, Depends(app_state)]

PREVIEW_LENGTH = 500
FEEDBACK_MAX_LENGTH = 4000
# GitHub's own rule for logins: alphanumerics and single inner hyphens, 39 at most.
GitHubLogin = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=39,
        pattern=r"^[A-Za-z0-9](?:-?[A-Za-z0-9])*$",
    ),
]
# PostgreSQL text cannot hold NUL: refuse it here (422) rather than fail on insert.
_NO_NUL = r"^[^\x00]*$"
Note = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=FEEDBACK_MAX_LENGTH, pattern=_NO_NUL),
]
Feedback = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=FEEDBACK_MAX_LENGTH, pattern=_NO_NUL
    ),
]


# --- response shapes ----------------------------------------------------------------


class Person(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    github_login: str | None
    telegram_user_id: int | None
    display_name: str | None


class RunBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    number: int
    status: RunStatus
    current_phase: Phase | None


class ProjectSummary(BaseModel):
    id: uuid.UUID
    name: str
    github_repo: str | None
    github_issue_number: int | None
    telegram_chat_id: int | None
    status: ProjectStatus
    owner: Person
    ai_tokens_used: int
    created_at: datetime
    active_run: RunBrief | None = Field(description="The run in progress, if any")


class PhaseOut(BaseModel):
    id: uuid.UUID
    phase: Phase
    attempt: int
    status: PhaseStatus
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    feedback: str | None = Field(description="Feedback from a rejection this attempt answers")
    output_preview: str | None = Field(
        description=f"The first {PREVIEW_LENGTH} characters of what the phase produced"
    )
    output_length: int | None


class GateOut(BaseModel):
    id: uuid.UUID
    kind: GateKind
    status: GateStatus
    artifact_version: str = Field(description="The version of the artifact the gate approves")
    summary_preview: str | None = Field(
        description=f"The first {PREVIEW_LENGTH} characters of what is to be approved"
    )
    decided_by: Person | None
    decided_at: datetime | None
    decided_via: Channel | None
    feedback: str | None
    created_at: datetime
    expires_at: datetime | None


class CostOut(BaseModel):
    tokens: int = Field(description="AI tokens used (input, output and cache)")
    estimated_usd: float | None = Field(
        description="At the price list's prices (AI_PRICES over the published ones); null "
        "when a model used has no price"
    )
    unpriced_models: list[str] = Field(description="Models used that have no price")

    @classmethod
    def of(cls, cost: Cost) -> CostOut:
        return cls(
            tokens=cost.tokens,
            estimated_usd=cost.dollars,
            unpriced_models=list(cost.unpriced_models),
        )


class RunOut(BaseModel):
    id: uuid.UUID
    number: int
    kind: RunKind
    feature_request: str
    status: RunStatus
    current_phase: Phase | None
    branch: str | None
    pr_number: int | None
    pr_url: str | None
    pr_head_sha: str | None = Field(description="The pull request head the run last saw")
    fix_attempts: int = Field(
        description="Fixes SCAR was sent on by itself for checks that failed on GitHub"
    )
    created_at: datetime
    finished_at: datetime | None
    ai_cost: CostOut = Field(description="What the AI cost while this run was in progress")
    scar_seconds: dict[str, float] = Field(description="SCAR's working time by phase, in seconds")
    phases: list[PhaseOut] = Field(description="Every attempt of every phase, oldest first")
    gates: list[GateOut] = Field(description="Every gate the run opened, oldest first")


class VisionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    version: int
    content_hash: str
    created_at: datetime
    markdown: str


class MemberOut(BaseModel):
    role: MemberRole
    person: Person


class ProjectDetail(ProjectSummary):
    ai_cost: CostOut = Field(description="What the AI cost for the project in all")
    members: list[MemberOut] = Field(description="Who may decide the project's gates")
    runs: list[RunOut] = Field(description="Newest first")
    vision_documents: list[VisionOut] = Field(description="Every version, newest first")


class DecisionOut(BaseModel):
    gate: GateOut
    run: RunBrief = Field(description="The run after the decision")


class ApproveBody(BaseModel):
    decided_by: GitHubLogin = Field(
        description="GitHub login of the person the caller decides for: the project's "
        "owner or one of its approvers"
    )
    feedback: Note | None = None


class RejectBody(ApproveBody):
    feedback: Feedback = Field(description="What should change; the next attempt uses it")


# --- reading ------------------------------------------------------------------------


def _preview(text: str | None) -> str | None:
    return None if text is None else text[:PREVIEW_LENGTH]


def _phase_out(attempt: WorkflowPhase) -> PhaseOut:
    return PhaseOut(
        id=attempt.id,
        phase=attempt.phase,
        attempt=attempt.attempt,
        status=attempt.status,
        started_at=attempt.started_at,
        finished_at=attempt.finished_at,
        error=attempt.error,
        feedback=attempt.feedback,
        output_preview=_preview(attempt.output),
        output_length=None if attempt.output is None else len(attempt.output),
    )


def _gate_out(gate: ApprovalGate, people: dict[uuid.UUID, Identity]) -> GateOut:
    decider = people.get(gate.decided_by_id) if gate.decided_by_id else None
    return GateOut(
        id=gate.id,
        kind=gate.kind,
        status=gate.status,
        artifact_version=gate.artifact_version,
        summary_preview=_preview(gate.summary),
        decided_by=Person.model_validate(decider) if decider else None,
        decided_at=gate.decided_at,
        decided_via=gate.decided_via,
        feedback=gate.feedback,
        created_at=gate.created_at,
        expires_at=gate.expires_at,
    )


def _summary(project: Project, owner: Identity, active: WorkflowRun | None) -> ProjectSummary:
    return ProjectSummary(
        id=project.id,
        name=project.name,
        github_repo=project.github_repo,
        github_issue_number=project.github_issue_number,
        telegram_chat_id=project.telegram_chat_id,
        status=project.status,
        owner=Person.model_validate(owner),
        ai_tokens_used=project.ai_tokens_used,
        created_at=project.created_at,
        active_run=RunBrief.model_validate(active) if active else None,
    )


async def _people(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Identity]:
    wanted = set(ids)
    if not wanted:
        return {}
    found = await session.execute(select(Identity).where(Identity.id.in_(wanted)))
    return {person.id: person for person in found.scalars()}


@router.get("", responses=error_responses())
async def list_projects(
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
) -> list[ProjectSummary]:
    """Projects, newest first, each with its owner and the run in progress."""
    rows = await session.execute(
        select(Project, Identity, WorkflowRun)
        .join(Identity, Identity.id == Project.owner_id)
        # At most one run per project is in progress (a partial unique index says so).
        .outerjoin(
            WorkflowRun,
            and_(
                WorkflowRun.project_id == Project.id,
                WorkflowRun.status.in_(ACTIVE_RUN_STATUSES),
            ),
        )
        .order_by(Project.created_at.desc(), Project.id)
        .limit(limit)
        .offset(offset)
    )
    return [_summary(project, owner, run) for project, owner, run in rows]


@router.get("/{project_id}", responses=error_responses(404))
async def get_project(project_id: uuid.UUID, session: Session) -> ProjectDetail:
    """The project with every run (its phases and gates) and every vision version."""
    found = (
        await session.execute(
            select(Project, Identity)
            .join(Identity, Identity.id == Project.owner_id)
            .where(Project.id == project_id)
        )
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"There is no project {project_id}.")
    project, owner = found
    runs = list(
        (
            await session.execute(
                select(WorkflowRun)
                .where(WorkflowRun.project_id == project.id)
                .order_by(WorkflowRun.number.desc())
            )
        ).scalars()
    )
    run_ids = [run.id for run in runs]
    phases = list(
        (
            await session.execute(select(WorkflowPhase).where(WorkflowPhase.run_id.in_(run_ids)))
        ).scalars()
    )
    gates = list(
        (
            await session.execute(select(ApprovalGate).where(ApprovalGate.run_id.in_(run_ids)))
        ).scalars()
    )
    members = list(
        (
            await session.execute(
                select(ProjectMember, Identity)
                .join(Identity, Identity.id == ProjectMember.identity_id)
                .where(ProjectMember.project_id == project.id)
                .order_by(ProjectMember.created_at, Identity.github_login)
            )
        ).all()
    )
    visions = (
        await session.execute(
            select(VisionDocument)
            .where(VisionDocument.project_id == project.id)
            .order_by(VisionDocument.version.desc())
        )
    ).scalars()
    people = await _people(session, (g.decided_by_id for g in gates if g.decided_by_id))
    project_cost, run_costs = await project_costs(session, project.id)
    scar_time = await scar_seconds(session, run_ids)
    no_cost = Cost(0, 0.0)
    # Rows written in one transaction share created_at (now() is the transaction's
    # start), so ties fall back to the workflow's own order.
    phases.sort(key=lambda p: (p.created_at, PHASE_ORDER.index(p.phase), p.attempt))
    gates.sort(key=lambda g: (g.created_at, g.status is GateStatus.PENDING))
    summary = _summary(
        project, owner, next((r for r in runs if r.status in ACTIVE_RUN_STATUSES), None)
    )
    return ProjectDetail(
        **summary.model_dump(),
        ai_cost=CostOut.of(project_cost),
        members=[
            MemberOut(role=member.role, person=Person.model_validate(person))
            for member, person in members
        ],
        runs=[
            RunOut(
                id=run.id,
                number=run.number,
                kind=run.kind,
                feature_request=run.feature_request,
                status=run.status,
                current_phase=run.current_phase,
                branch=run.branch,
                pr_number=run.pr_number,
                pr_url=run.pr_url,
                pr_head_sha=run.pr_head_sha,
                fix_attempts=run.fix_attempts,
                created_at=run.created_at,
                finished_at=run.finished_at,
                ai_cost=CostOut.of(run_costs.get(run.id, no_cost)),
                scar_seconds=scar_time.get(run.id, {}),
                phases=[_phase_out(p) for p in phases if p.run_id == run.id],
                gates=[_gate_out(g, people) for g in gates if g.run_id == run.id],
            )
            for run in runs
        ],
        vision_documents=[VisionOut.model_validate(v) for v in visions],
    )


# --- deciding -----------------------------------------------------------------------

_NOT_PENDING = {
    GateStatus.APPROVED: "was already approved",
    GateStatus.REJECTED: "was already rejected",
    GateStatus.VOIDED: "was voided because what it asked about changed",
    GateStatus.EXPIRED: "expired when its run ended",
}


@router.post(
    "/{project_id}/gates/{gate_id}/approve",
    response_model=DecisionOut,
    responses={**error_responses(403, 404, 409), **BODY_REFUSALS},
)
async def approve_gate(
    project_id: uuid.UUID,
    gate_id: uuid.UUID,
    body: ApproveBody,
    session: Session,
    state: State,
) -> DecisionOut | JSONResponse:
    """Approve the project's pending gate for `decided_by`; the next step is queued."""
    return await _decide(session, state, project_id, gate_id, body, approve=True)


@router.post(
    "/{project_id}/gates/{gate_id}/reject",
    response_model=DecisionOut,
    responses={**error_responses(403, 404, 409), **BODY_REFUSALS},
)
async def reject_gate(
    project_id: uuid.UUID,
    gate_id: uuid.UUID,
    body: RejectBody,
    session: Session,
    state: State,
) -> DecisionOut | JSONResponse:
    """Reject the project's pending gate for `decided_by`; `feedback` shapes the next try."""
    return await _decide(session, state, project_id, gate_id, body, approve=False)


async def _decide(
    session: AsyncSession,
    state: AppState,
    project_id: uuid.UUID,
    gate_id: uuid.UUID,
    body: ApproveBody,
    *,
    approve: bool,
) -> DecisionOut | JSONResponse:
    # Locked before the gate is read, as the service locks it, so the gate checked here is
    # still the pending one when the service decides it.
    project = (
        await session.execute(select(Project).where(Project.id == project_id).with_for_update())
    ).scalar_one_or_none()
    if project is None:
        raise NotFoundError(f"There is no project {project_id}.")
    gate = await session.get(ApprovalGate, gate_id)
    run = await session.get(WorkflowRun, gate.run_id) if gate is not None else None
    if gate is None or run is None or run.project_id != project.id:
        raise NotFoundError(f"Project {project.name} has no gate {gate_id}.")
    if gate.status is not GateStatus.PENDING:
        raise ConflictError(f"This gate {_NOT_PENDING[gate.status]} (status: {gate.status}).")
    # The service decides the pending gate of the run in progress; a pending gate on any
    # other run would be a different decision than the one asked for.
    if run.status not in ACTIVE_RUN_STATUSES:
        raise ConflictError(f"Run #{run.number} has ended (status: {run.status}).")
    actor = Actor(await github_identity(session, body.decided_by), Channel.API)
    try:
        decision = await Workflow(state.audit).decide(
            session, project, actor, approve=approve, feedback=body.feedback
        )
    except ConflictError as exc:
        # Answered rather than raised, so the request still commits what the service did
        # before refusing (a stale vision gate is voided), as a chat command's job does.
        # Other refusals roll back: a stranger's login leaves no identity behind.
        return JSONResponse(
            {"error": exc.code, "message": exc.message}, status_code=exc.status_code
        )
    log.info(
        "api.gate_decided",
        project_id=str(project.id),
        gate_id=str(gate.id),
        approved=approve,
        run_status=decision.run.status,
    )
    if state.notifier is not None:
        # Written to the outbox in the decision's own transaction: it is told exactly
        # when the decision has committed, on every channel the project lives on.
        await announce(session, state.notifier, decision.run.id)
    return DecisionOut(
        gate=_gate_out(decision.gate, {actor.identity.id: actor.identity}),
        run=RunBrief.model_validate(decision.run),
    )
