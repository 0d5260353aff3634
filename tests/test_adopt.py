"""`db.adopt`: rows read on the raw connection become ORM objects as if the ORM loaded them."""

from __future__ import annotations

from sqlalchemy import func, select

from project_orchestrator.db.engine import Database
from project_orchestrator.projects.lookup import project_for_repo
from project_orchestrator.projects.models import Identity, Project, ProjectStatus
from project_orchestrator.projects.service import github_identity


async def _stored_project(db: Database) -> None:
    async with db.session_scope() as session:
        owner = Identity(github_login="Ada")
        session.add(owner)
        await session.flush()
        session.add(Project(name="Widgets", owner_id=owner.id, github_repo="Acme/Widgets"))


async def test_a_looked_up_project_reads_as_the_orm_would_load_it(db: Database) -> None:
    await _stored_project(db)
    async with db.session_scope() as session:
        project = await project_for_repo(session, "acme/WIDGETS")
        assert project is not None
        assert project.status is ProjectStatus.ACTIVE  # the enum member, not its label
        assert project.github_repo == "Acme/Widgets"
        assert project.created_at.tzinfo is not None
        assert project in session
        assert not session.dirty
        # The ORM finds the same object in the identity map, not a second copy.
        assert await session.get(Project, project.id) is project


async def test_a_change_to_a_looked_up_project_is_stored(db: Database) -> None:
    await _stored_project(db)
    async with db.session_scope() as session:
        project = await project_for_repo(session, "acme/widgets")
        assert project is not None
        project.github_issue_number = 7
    async with db.session_scope() as session:
        again = await project_for_repo(session, "acme/widgets")
        assert again is not None
        assert again.github_issue_number == 7


async def test_an_object_the_session_holds_is_returned_as_it_stands(db: Database) -> None:
    await _stored_project(db)
    async with db.session_scope() as session:
        held = (await session.execute(select(Project))).scalar_one()
        held.name = "Renamed, not yet flushed"
        found = await project_for_repo(session, "acme/widgets")
        assert found is held
        assert found.name == "Renamed, not yet flushed"


async def test_a_person_added_in_this_transaction_is_found(db: Database) -> None:
    async with db.session_scope() as session:
        session.add(Identity(github_login="Grace"))  # pending: the lookup flushes it first
        first = await github_identity(session, "grace")
        second = await github_identity(session, "GRACE")
        assert first is second
        assert first.github_login == "Grace"
    async with db.session_scope() as session:
        count = await session.scalar(select(func.count()).select_from(Identity))
        assert count == 1
