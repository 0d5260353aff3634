"""Constraints live in the database: bad rows are refused there, not only in Python."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.events.models import EventSource, InboundEvent
from project_orchestrator.projects.models import Identity, Project
from project_orchestrator.scar.models import ScarCommand, ScarTransport
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.workflow.models import (
    ApprovalGate,
    GateKind,
    GateStatus,
    RunKind,
    RunStatus,
    WorkflowRun,
)

Setup = Callable[[AsyncSession], Awaitable[None]]


async def _owner_and_project(session: AsyncSession, repo: str = "acme/widgets") -> Project:
    owner = Identity(github_login=f"owner-{uuid.uuid4().hex[:8]}")
    session.add(owner)
    await session.flush()
    project = Project(name="Widgets", owner_id=owner.id, github_repo=repo)
    session.add(project)
    await session.flush()
    return project


async def _run(session: AsyncSession, project: Project, number: int = 1) -> WorkflowRun:
    run = WorkflowRun(
        project_id=project.id, number=number, kind=RunKind.INITIAL, feature_request="an app"
    )
    session.add(run)
    await session.flush()
    return run


async def _refused(db: Database, setup: Setup, constraint: str) -> None:
    async def attempt(session: AsyncSession) -> None:
        await setup(session)
        await session.flush()

    async with db.sessionmaker() as session:
        with pytest.raises((IntegrityError, DBAPIError)) as caught:
            await attempt(session)
        await session.rollback()
    assert constraint in str(caught.value)


async def test_identity_needs_a_handle(db: Database) -> None:
    async def setup(s: AsyncSession) -> None:
        s.add(Identity(display_name="nobody"))

    await _refused(db, setup, "ck_identities_has_handle")


async def test_github_login_is_unique_whatever_its_case(db: Database) -> None:
    async def setup(s: AsyncSession) -> None:
        s.add(Identity(github_login="Octocat"))
        await s.flush()
        s.add(Identity(github_login="octocat"))

    await _refused(db, setup, "uq_identities_github_login_lower")


async def test_repository_belongs_to_one_project_and_is_a_full_name(db: Database) -> None:
    async def twice(s: AsyncSession) -> None:
        await _owner_and_project(s, "Acme/Widgets")
        await _owner_and_project(s, "acme/widgets")

    await _refused(db, twice, "uq_projects_github_repo_lower")

    async def malformed(s: AsyncSession) -> None:
        await _owner_and_project(s, "not a repo")

    await _refused(db, malformed, "ck_projects_github_repo_full_name")


async def test_vision_versions_are_unique_per_project(db: Database) -> None:
    async def setup(s: AsyncSession) -> None:
        project = await _owner_and_project(s)
        for _ in range(2):
            s.add(
                VisionDocument(
                    project_id=project.id, version=1, markdown="# v", content_hash="a" * 64
                )
            )
            await s.flush()

    await _refused(db, setup, "uq_vision_documents_project_id_version")


async def test_one_active_run_per_project(db: Database) -> None:
    async def setup(s: AsyncSession) -> None:
        project = await _owner_and_project(s)
        await _run(s, project, 1)
        await _run(s, project, 2)

    await _refused(db, setup, "uq_workflow_runs_one_active_per_project")

    # A finished run does not block the next one.
    async with db.session_scope() as s:
        project = await _owner_and_project(s, "acme/other")
        first = await _run(s, project, 1)
        first.status = RunStatus.COMPLETED
        await s.flush()
        await _run(s, project, 2)


async def test_one_pending_gate_per_run(db: Database) -> None:
    async def setup(s: AsyncSession) -> None:
        run = await _run(s, await _owner_and_project(s))
        for _ in range(2):
            s.add(ApprovalGate(run_id=run.id, kind=GateKind.PLAN, artifact_version="sha:1"))
            await s.flush()

    await _refused(db, setup, "uq_approval_gates_one_pending_per_run")


async def test_a_decided_gate_records_who_when_and_how(db: Database) -> None:
    async def setup(s: AsyncSession) -> None:
        run = await _run(s, await _owner_and_project(s))
        s.add(
            ApprovalGate(
                run_id=run.id,
                kind=GateKind.VISION,
                artifact_version="sha:1",
                status=GateStatus.APPROVED,
            )
        )

    await _refused(db, setup, "ck_approval_gates_decision_recorded")

    async with db.session_scope() as s:
        project = await _owner_and_project(s, "acme/decided")
        run = await _run(s, project)
        s.add(
            ApprovalGate(
                run_id=run.id,
                kind=GateKind.VISION,
                artifact_version="sha:1",
                status=GateStatus.APPROVED,
                decided_by_id=project.owner_id,
                decided_at=datetime.now(UTC),
                decided_via=Channel.GITHUB,
            )
        )


async def test_hold_remembers_where_it_came_from(db: Database) -> None:
    async def setup(s: AsyncSession) -> None:
        run = await _run(s, await _owner_and_project(s))
        run.status = RunStatus.ON_HOLD
        await s.flush()

    await _refused(db, setup, "ck_workflow_runs_held_from_only_on_hold")


async def test_event_delivery_ids_are_unique_per_source(db: Database) -> None:
    def event(source: EventSource) -> InboundEvent:
        return InboundEvent(
            source=source,
            external_id="delivery-1",
            event_type="ping",
            serial_key="github:acme/widgets",
            headers={},
            payload={"zen": "hi"},
        )

    async def setup(s: AsyncSession) -> None:
        s.add(event(EventSource.GITHUB))
        await s.flush()
        s.add(event(EventSource.GITHUB))

    await _refused(db, setup, "uq_inbound_events_source_external_id")

    # The same id from another source is another event.
    async with db.session_scope() as s:
        s.add(event(EventSource.GITHUB))
        s.add(event(EventSource.TELEGRAM))


async def test_enums_are_enforced_by_the_database(db: Database) -> None:
    async def setup(s: AsyncSession) -> None:
        await s.execute(
            text(
                "INSERT INTO inbound_events (source, external_id, event_type, serial_key, "
                "headers, payload, status) VALUES ('github', 'x', 'ping', 'k', '{}', '{}', "
                "'exploded')"
            )
        )

    await _refused(db, setup, "event_status")


async def test_scar_commands_are_sent_once_per_key(db: Database) -> None:
    async def setup(s: AsyncSession) -> None:
        project = await _owner_and_project(s)
        for _ in range(2):
            s.add(
                ScarCommand(
                    project_id=project.id,
                    idempotency_key="run-1:plan:1",
                    transport=ScarTransport.HTTP,
                    command="plan-feature-github",
                )
            )
            await s.flush()

    await _refused(db, setup, "uq_scar_commands_idempotency_key")


async def test_link_codes_expire_after_they_are_made(db: Database) -> None:
    from project_orchestrator.projects.models import IdentityLinkCode

    async def setup(s: AsyncSession) -> None:
        person = Identity(telegram_user_id=42)
        s.add(person)
        await s.flush()
        s.add(
            IdentityLinkCode(
                identity_id=person.id,
                github_login="octocat",
                code_hash="b" * 64,
                expires_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )

    await _refused(db, setup, "ck_identity_link_codes_expires_after_creation")
