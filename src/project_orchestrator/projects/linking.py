"""Proving that a Telegram user and a GitHub login are one person.

`/link <login>` on Telegram gives a one-time code; posting `/link <code>` in a GitHub
comment as that login proves control of both. Only the code's hash is stored. Linking
merges the two identities, so an approval on either channel is the same audited person.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.db.base import Base
from project_orchestrator.errors import OrchestratorError
from project_orchestrator.projects.models import Identity, IdentityLinkCode, ProjectMember

CODE_LIFETIME = timedelta(minutes=30)
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?$")
# No 0/O or 1/I: the code is read on a phone and typed into GitHub.
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


async def start_link(session: AsyncSession, identity: Identity, github_login: str) -> str:
    login = github_login.strip().lstrip("@")
    if not _LOGIN.match(login):
        raise OrchestratorError(f"“{github_login}” is not a GitHub login.", status_code=422)
    code = "LINK-" + "".join(secrets.choice(_ALPHABET) for _ in range(8))
    now = datetime.now(UTC)
    session.add(
        IdentityLinkCode(
            identity_id=identity.id,
            github_login=login,
            code_hash=_hash(code),
            created_at=now,
            expires_at=now + CODE_LIFETIME,
        )
    )
    await session.flush()
    return code


@dataclass(frozen=True)
class Linked:
    identity_id: uuid.UUID
    telegram_user_id: int | None
    github_login: str


async def finish_link(
    session: AsyncSession, audit: AuditLog, github_login: str, code: str
) -> Linked:
    """Consume the code posted by `github_login`; merge the identities it joins."""
    row = (
        await session.execute(
            select(IdentityLinkCode)
            .where(IdentityLinkCode.code_hash == _hash(code))
            .with_for_update()
        )
    ).scalar_one_or_none()
    now = datetime.now(UTC)
    if (
        row is None
        or row.consumed_at is not None
        or row.expires_at <= now
        or row.github_login.lower() != github_login.lower()
    ):
        audit.record(
            AuditAction.UNAUTHORIZED_ACCESS,
            result=AuditResult.DENIED,
            user_id=keys.github_user(github_login),
            details={"attempted": "link", "reason": "unknown, used, expired or other login"},
        )
        raise OrchestratorError(
            "That code does not work: it may have expired, been used already, or been made "
            "for another GitHub login. Ask for a new one with /link on Telegram.",
            status_code=403,
        )
    row.consumed_at = now
    telegram = await session.get(Identity, row.identity_id)
    if telegram is None:
        raise OrchestratorError("The Telegram account of that code is gone.", status_code=404)
    github = (
        await session.execute(
            select(Identity).where(func.lower(Identity.github_login) == github_login.lower())
        )
    ).scalar_one_or_none()
    if github is None or github.id == telegram.id:
        telegram.github_login = github_login
        survivor = telegram
    else:
        survivor = await _merge(session, keep=github, drop=telegram)
    await session.flush()
    audit.record(
        AuditAction.IDENTITY_LINKED,
        user_id=keys.github_user(github_login),
        details={"telegram_user_id": survivor.telegram_user_id, "github_login": github_login},
    )
    return Linked(survivor.id, survivor.telegram_user_id, github_login)


async def _merge(session: AsyncSession, *, keep: Identity, drop: Identity) -> Identity:
    """Everything that points at `drop` points at `keep`; then `drop` goes."""
    telegram_user_id = drop.telegram_user_id
    # Memberships are keyed by (project, identity): drop duplicates before re-pointing.
    kept_projects = select(ProjectMember.project_id).where(ProjectMember.identity_id == keep.id)
    await session.execute(
        delete(ProjectMember).where(
            ProjectMember.identity_id == drop.id, ProjectMember.project_id.in_(kept_projects)
        )
    )
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table.name == "identities" and fk.column.name == "id":
                column = fk.parent
                await session.execute(
                    update(table).where(column == drop.id).values({column.name: keep.id})
                )
    await session.delete(drop)
    await session.flush()
    keep.telegram_user_id = telegram_user_id
    if keep.display_name is None:
        keep.display_name = drop.display_name
    await session.flush()
    return keep
