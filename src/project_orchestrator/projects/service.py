"""People and projects: who someone is on each channel, what they own, who may decide."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.audit import AuditAction, AuditLog
from project_orchestrator.db.adopt import columns, load_one
from project_orchestrator.db.types import Channel
from project_orchestrator.errors import ConflictError, OrchestratorError
from project_orchestrator.projects.models import (
    Identity,
    MemberRole,
    Project,
    ProjectMember,
)


@dataclass(frozen=True)
class Actor:
    """Who is asking, as the job's context knows it (never as a model's argument says)."""

    identity: Identity
    channel: Channel

    @property
    def audit_id(self) -> str:
        if self.channel is Channel.API:
            return "api"  # the API key's holder, acting for this identity
        if self.channel is Channel.TELEGRAM and self.identity.telegram_user_id is not None:
            return keys.telegram_user(self.identity.telegram_user_id)
        if self.identity.github_login is not None:
            return keys.github_user(self.identity.github_login)
        return keys.telegram_user(self.identity.telegram_user_id)


# Every GitHub message looks its author up: prebuilt (`db.adopt`). The names come from
# our own table definition, not from input.
_IDENTITY_BY_LOGIN = f"SELECT {columns(Identity)} FROM identities WHERE lower(github_login) = $1"  # noqa: S608


async def github_identity(session: AsyncSession, login: str) -> Identity:
    """The one identity of a GitHub login (case-insensitive), created on first sight."""
    found = await _identity_by_login(session, login)
    if found is not None:
        return found
    await session.execute(
        insert(Identity)
        .values(github_login=login)
        .on_conflict_do_nothing(index_elements=[func.lower(Identity.github_login)])
    )
    identity = await _identity_by_login(session, login)
    if identity is None:  # inserted above or by a concurrent job: it must be there
        raise RuntimeError("identity vanished right after it was created")
    return identity


async def telegram_identity(
    session: AsyncSession, user_id: int, display_name: str | None = None
) -> Identity:
    """The one identity of a Telegram user, created on first sight."""
    await session.execute(
        insert(Identity)
        .values(telegram_user_id=user_id, display_name=display_name)
        .on_conflict_do_nothing(index_elements=["telegram_user_id"])
    )
    return (
        await session.execute(select(Identity).where(Identity.telegram_user_id == user_id))
    ).scalar_one()


async def projects_of(session: AsyncSession, identity_id: uuid.UUID) -> list[Project]:
    """Projects the person owns or may decide for, oldest first."""
    member = select(ProjectMember.project_id).where(ProjectMember.identity_id == identity_id)
    return list(
        (
            await session.execute(
                select(Project)
                .where((Project.owner_id == identity_id) | Project.id.in_(member))
                .order_by(Project.created_at)
            )
        ).scalars()
    )


async def _identity_by_login(session: AsyncSession, login: str) -> Identity | None:
    return await load_one(session, Identity, _IDENTITY_BY_LOGIN, login.lower())


async def create_project(
    session: AsyncSession,
    audit: AuditLog,
    *,
    name: str,
    owner: Actor,
    github_repo: str | None = None,
    github_issue_number: int | None = None,
    telegram_chat_id: int | None = None,
) -> Project:
    name = " ".join(name.split())
    if not name:
        raise OrchestratorError("A project needs a name.", status_code=422)
    if len(name) > 200:
        raise OrchestratorError("That name is too long (200 characters at most).", status_code=422)
    if github_repo is not None:
        taken = (
            await session.execute(
                select(Project.id).where(func.lower(Project.github_repo) == github_repo.lower())
            )
        ).scalar_one_or_none()
        if taken is not None:
            raise ConflictError(f"{github_repo} already belongs to another project.")
    project = Project(
        name=name,
        owner_id=owner.identity.id,
        github_repo=github_repo,
        github_issue_number=github_issue_number,
        telegram_chat_id=telegram_chat_id,
    )
    session.add(project)
    await session.flush()
    session.add(
        ProjectMember(project_id=project.id, identity_id=owner.identity.id, role=MemberRole.OWNER)
    )
    await session.flush()
    audit.record(
        AuditAction.PROJECT_CREATED,
        user_id=owner.audit_id,
        project_id=project.id,
        details={"name": name, "github_repo": github_repo, "channel": owner.channel.value},
    )
    return project


async def may_decide(session: AsyncSession, project: Project, identity_id: uuid.UUID) -> bool:
    """The owner and the approvers the project names; nobody else."""
    if project.owner_id == identity_id:
        return True
    role = (
        await session.execute(
            select(ProjectMember.role).where(
                ProjectMember.project_id == project.id,
                ProjectMember.identity_id == identity_id,
            )
        )
    ).scalar_one_or_none()
    return role in (MemberRole.OWNER, MemberRole.APPROVER)


async def lock_project(session: AsyncSession, project_id: uuid.UUID) -> Project:
    """The project row, locked: its runs and gates change one decision at a time."""
    return (
        await session.execute(select(Project).where(Project.id == project_id).with_for_update())
    ).scalar_one()
