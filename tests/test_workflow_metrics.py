"""Workflow numbers for operators: phase durations, decision waits, stuck builds.

Durations come from the rows' own times, observed only when the change commits; the stuck
count is read from the database when /metrics is scraped.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY as registry
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.audit import AuditLog
from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import Actor, create_project, github_identity
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.workflow.models import Phase, WorkflowPhase, WorkflowRun
from project_orchestrator.workflow.service import Workflow


def sample(name: str, labels: dict[str, str]) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def phase_count(phase: str, outcome: str) -> float:
    return sample("workflow_phase_duration_seconds_count", {"phase": phase, "outcome": outcome})


def phase_sum(phase: str, outcome: str) -> float:
    return sample("workflow_phase_duration_seconds_sum", {"phase": phase, "outcome": outcome})


async def owner_of(session: AsyncSession) -> Actor:
    return Actor(await github_identity(session, "ada"), Channel.GITHUB)


async def new_project(session: AsyncSession, workflow: Workflow, name: str) -> Project:
    return await create_project(
        session,
        workflow.audit,
        name=name,
        owner=await owner_of(session),
        github_repo=f"acme/{name.lower()}",
        github_issue_number=7,
    )


async def run_waiting_for_vision(db: Database, workflow: Workflow) -> tuple[uuid.UUID, uuid.UUID]:
    """A committed first run whose vision gate waits: (project id, run id)."""
    async with db.session_scope() as session:
        project = await new_project(session, workflow, "Widgets")
        owner = await owner_of(session)
        run = await workflow.start_run(session, project, owner, "a widget shop")
        body = "# Widgets: Vision"
        vision = VisionDocument(
            project_id=project.id,
            version=1,
            markdown=body,
            content_hash=hashlib.sha256(body.encode()).hexdigest(),
        )
        session.add(vision)
        await session.flush()
        await workflow.open_vision_gate(session, project, owner, vision)
        return project.id, run.id


async def backdate(db: Database, run_id: uuid.UUID, seconds: int) -> None:
    """As if the run's phases started and its gates opened `seconds` ago."""
    async with db.session_scope() as session:
        params = {"run": run_id, "s": seconds}
        await session.execute(
            text(
                "UPDATE workflow_phases SET started_at = started_at - make_interval(secs => :s)"
                " WHERE run_id = :run AND started_at IS NOT NULL"
            ),
            params,
        )
        await session.execute(
            text(
                "UPDATE approval_gates SET created_at = created_at - make_interval(secs => :s)"
                " WHERE run_id = :run"
            ),
            params,
        )


async def test_a_decision_observes_its_wait_and_the_phase_it_ends_after_commit(
    db: Database, tmp_path: Path
) -> None:
    workflow = Workflow(AuditLog(tmp_path / "audit.log"))
    project_id, run_id = await run_waiting_for_vision(db, workflow)
    await backdate(db, run_id, 120)
    waits = sample("approval_gate_wait_seconds_count", {"kind": "vision"})
    waited = sample("approval_gate_wait_seconds_sum", {"kind": "vision"})
    visions, vision_time = phase_count("vision", "succeeded"), phase_sum("vision", "succeeded")

    # Decided, then rolled back: nothing happened, so nothing is counted.
    async def decide_then_fail() -> None:
        async with db.session_scope() as session:
            project = await session.get(Project, project_id)
            assert project is not None
            await workflow.decide(session, project, await owner_of(session), approve=True)
            raise RuntimeError("the job failed before its commit")

    with pytest.raises(RuntimeError):
        await decide_then_fail()
    assert sample("approval_gate_wait_seconds_count", {"kind": "vision"}) == waits
    assert phase_count("vision", "succeeded") == visions

    async with db.session_scope() as session:
        project = await session.get(Project, project_id)
        assert project is not None
        await workflow.decide(session, project, await owner_of(session), approve=True)
    assert sample("approval_gate_wait_seconds_count", {"kind": "vision"}) == waits + 1
    assert 120 <= sample("approval_gate_wait_seconds_sum", {"kind": "vision"}) - waited < 150
    assert phase_count("vision", "succeeded") == visions + 1
    assert 120 <= phase_sum("vision", "succeeded") - vision_time < 150


async def test_failed_and_cancelled_phases_are_observed_with_their_outcome(
    db: Database, tmp_path: Path
) -> None:
    workflow = Workflow(AuditLog(tmp_path / "audit.log"))
    project_id, run_id = await run_waiting_for_vision(db, workflow)
    async with db.session_scope() as session:
        project = await session.get(Project, project_id)
        assert project is not None
        await workflow.decide(session, project, await owner_of(session), approve=True)
    failed, cancelled = phase_count("prime", "failed"), phase_count("prime", "cancelled")
    # The worker started prime a minute ago; SCAR failed it.
    async with db.session_scope() as session:
        await session.execute(
            text(
                "UPDATE workflow_phases SET status = 'running', started_at = now() - interval"
                " '60 seconds' WHERE run_id = :run AND phase = 'prime'"
            ),
            {"run": run_id},
        )
    async with db.session_scope() as session:
        run = await session.get(WorkflowRun, run_id)
        prime = (
            await session.execute(
                select(WorkflowPhase).where(
                    WorkflowPhase.run_id == run_id, WorkflowPhase.phase == Phase.PRIME
                )
            )
        ).scalar_one()
        assert run is not None
        await workflow.phase_failed(session, run, prime, "SCAR stopped")
    assert phase_count("prime", "failed") == failed + 1
    # Approving the fix starts prime again; cancelling ends that attempt, which never
    # started (it waited in the queue), so it has no duration to count.
    async with db.session_scope() as session:
        project = await session.get(Project, project_id)
        assert project is not None
        await workflow.decide(session, project, await owner_of(session), approve=True)
        await workflow.cancel(session, project, await owner_of(session))
    assert phase_count("prime", "cancelled") == cancelled


async def test_stuck_builds_are_counted_at_scrape_and_waiting_ones_are_not(
    client: httpx.AsyncClient, db: Database, tmp_path: Path
) -> None:
    workflow = Workflow(AuditLog(tmp_path / "audit.log"))

    async def stuck_count() -> float:
        scraped = (await client.get("/metrics")).text
        line = next(ln for ln in scraped.splitlines() if ln.startswith("workflow_runs_stuck "))
        return float(line.split()[1])

    async with db.session_scope() as session:
        names = ("Building", "Brainstorming", "Waiting", "Fresh")
        runs = {}
        for name in names:
            project = await new_project(session, workflow, name)
            run = await workflow.start_run(session, project, await owner_of(session), "x")
            runs[name] = run.id
    assert await stuck_count() == 0

    async def make(name: str, *, status: str, phase: str, idle_seconds: int) -> None:
        async with db.session_scope() as session:
            params = {"run": runs[name], "s": idle_seconds}
            await session.execute(
                text(
                    "UPDATE workflow_runs SET status = CAST(:status AS run_status),"
                    " current_phase = CAST(:phase AS workflow_phase),"
                    " updated_at = now() - make_interval(secs => :s) WHERE id = :run"
                ),
                {**params, "status": status, "phase": phase},
            )
            await session.execute(
                text(
                    "UPDATE workflow_phases SET updated_at = now() - make_interval(secs => :s)"
                    " WHERE run_id = :run"
                ),
                params,
            )

    # Running an automatic step, silent for two hours: stuck.
    await make("Building", status="running", phase="plan", idle_seconds=7200)
    # Still a conversation with the person, or waiting for their decision: not stuck.
    await make("Brainstorming", status="running", phase="vision", idle_seconds=7200)
    await make("Waiting", status="awaiting_approval", phase="plan", idle_seconds=7200)
    # Working, but changed ten minutes ago: not stuck yet.
    await make("Fresh", status="running", phase="execute", idle_seconds=600)
    assert await stuck_count() == 1

    # Its step moving again takes it off the count.
    async with db.session_scope() as session:
        await session.execute(
            text("UPDATE workflow_phases SET updated_at = now() WHERE run_id = :run"),
            {"run": runs["Building"]},
        )
    assert await stuck_count() == 0
