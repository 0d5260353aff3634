"""Finding projects and describing where they stand."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.db.adopt import columns, load_one
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.spending import project_costs, run_spending
from project_orchestrator.workflow.models import (
    ACTIVE_RUN_STATUSES,
    ApprovalGate,
    GateStatus,
    WorkflowRun,
)

# Every GitHub message looks its project up: prebuilt (`db.adopt`). The names come from
# our own table definition, not from input.
_PROJECT_FOR_REPO = f"SELECT {columns(Project)} FROM projects WHERE lower(github_repo) = $1"  # noqa: S608


async def project_for_repo(session: AsyncSession, full_name: str) -> Project | None:
    """Exact full-name match (case-insensitive, as GitHub names are); never a pattern."""
    return await load_one(session, Project, _PROJECT_FOR_REPO, full_name.lower())


async def status_text(session: AsyncSession, project: Project | None) -> str:
    if project is None:
        return (
            "There is no project for this repository yet. Mention me with your idea and "
            "we can start one together."
        )
    run = (
        await session.execute(
            select(WorkflowRun)
            .where(WorkflowRun.project_id == project.id)
            .order_by(WorkflowRun.number.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    lines = [f"**{project.name}**"]
    if run is None:
        lines.append("No build has started yet.")
        return "\n".join(lines)
    state = "in progress" if run.status in ACTIVE_RUN_STATUSES else run.status.value
    phase = f", phase: {run.current_phase.value}" if run.current_phase else ""
    lines.append(f"Run #{run.number} ({state}{phase}): {run.feature_request}")
    gate = (
        await session.execute(
            select(ApprovalGate).where(
                ApprovalGate.run_id == run.id, ApprovalGate.status == GateStatus.PENDING
            )
        )
    ).scalar_one_or_none()
    if gate is not None:
        lines.append(f"Waiting for your decision on the {gate.kind.value.replace('_', ' ')}.")
    spent = await run_spending(session, run.id)
    if spent.ai.tokens or spent.scar_seconds:
        lines.append(f"This build so far: {spent.words()}.")
    total, _ = await project_costs(session, project.id)
    if total.tokens:
        lines.append(f"The project in all: {total.words()}.")
    return "\n".join(lines)
