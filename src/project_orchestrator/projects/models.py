"""People, projects and who may decide for them."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    func,
    text,
)
from sqlalchemy import Identity as GeneratedIdentity
from sqlalchemy.orm import Mapped, mapped_column

from project_orchestrator.db.base import Base, Timestamps, UUIDPrimaryKey
from project_orchestrator.db.types import pg_enum


class ProjectStatus(enum.StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


class MemberRole(enum.StrEnum):
    OWNER = "owner"
    APPROVER = "approver"


class Identity(UUIDPrimaryKey, Timestamps, Base):
    """One person, known by a Telegram user id, a GitHub login, or both once linked."""

    __tablename__ = "identities"
    __table_args__ = (
        CheckConstraint(
            "telegram_user_id IS NOT NULL OR github_login IS NOT NULL", name="has_handle"
        ),
        # GitHub logins are case-insensitive: one person, one row.
        Index("uq_identities_github_login_lower", func.lower(text("github_login")), unique=True),
    )

    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    github_login: Mapped[str | None] = mapped_column(String(39))
    display_name: Mapped[str | None] = mapped_column(String(200))


class Project(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("length(trim(name)) > 0", name="name_not_blank"),
        CheckConstraint("ai_tokens_used >= 0", name="tokens_not_negative"),
        CheckConstraint(
            "github_repo IS NULL OR github_repo ~ '^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$'",
            name="github_repo_full_name",
        ),
        # Repositories are found by exact full name, case-insensitively as GitHub does.
        Index("uq_projects_github_repo_lower", func.lower(text("github_repo")), unique=True),
        Index("ix_projects_telegram_chat_id", "telegram_chat_id"),
    )

    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identities.id", ondelete="RESTRICT"))
    github_repo: Mapped[str | None] = mapped_column(String(200))
    github_issue_number: Mapped[int | None] = mapped_column(BigInteger)
    # The folder SCAR cloned the repository into: SCAR derives it from the URL in its own
    # way (`site.github.io` becomes `sitehub.io`), so it is read from SCAR's answer.
    scar_codebase: Mapped[str | None] = mapped_column(String(200))
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[ProjectStatus] = mapped_column(
        pg_enum(ProjectStatus, "project_status"),
        default=ProjectStatus.ACTIVE,
        server_default=ProjectStatus.ACTIVE.value,
    )
    ai_tokens_used: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The project's own AI budget, raised by its owner with /budget; None: the operators'
    # AI_MAX_TOKENS_PER_PROJECT.
    ai_token_limit: Mapped[int | None] = mapped_column(BigInteger)


class BudgetScope(enum.StrEnum):
    PROJECT = "project"
    RUN = "run"


class BudgetRequest(UUIDPrimaryKey, Timestamps, Base):
    """The agent stopped at a budget and asks the owner to raise it: one open per project.
    The messages that came meanwhile wait as turns and are answered once it is raised."""

    __tablename__ = "budget_requests"
    __table_args__ = (
        Index(
            "uq_budget_requests_one_open_per_project",
            "project_id",
            unique=True,
            postgresql_where=text("raised_to IS NULL"),
        ),
        CheckConstraint("limit_tokens > 0", name="limit_positive"),
        CheckConstraint(
            "(raised_to IS NULL) = (decided_at IS NULL AND decided_by_id IS NULL)",
            name="decision_recorded",
        ),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE")
    )
    scope: Mapped[BudgetScope] = mapped_column(pg_enum(BudgetScope, "budget_scope"))
    limit_tokens: Mapped[int] = mapped_column(BigInteger)
    used_tokens: Mapped[int] = mapped_column(BigInteger)
    raised_to: Mapped[int | None] = mapped_column(BigInteger)
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL")
    )
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProjectMember(Timestamps, Base):
    """Who may decide a project's gates: its owner and any approvers it names."""

    __tablename__ = "project_members"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    identity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[MemberRole] = mapped_column(pg_enum(MemberRole, "member_role"))


class TelegramChat(Timestamps, Base):
    """Per-chat state that must survive restarts, such as the project in use."""

    __tablename__ = "telegram_chats"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    current_project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL")
    )
    # After "Reject" is tapped, the next message from that person is the feedback.
    awaiting_feedback_gate_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("approval_gates.id", ondelete="SET NULL")
    )
    awaiting_feedback_user_id: Mapped[int | None] = mapped_column(BigInteger)


class IdentityLinkCode(UUIDPrimaryKey, Timestamps, Base):
    """A one-time code proving that a Telegram user also controls a GitHub login."""

    __tablename__ = "identity_link_codes"
    __table_args__ = (CheckConstraint("expires_at > created_at", name="expires_after_creation"),)

    identity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    github_login: Mapped[str] = mapped_column(String(39))
    # Only a hash is kept: the code itself is a credential.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AiUsage(Base):
    """Tokens one model call used, charged with the reply it produced: what a run and a
    project cost is summed from these (and priced per model at reading time)."""

    __tablename__ = "ai_usage"
    __table_args__ = (
        Index("ix_ai_usage_project_id", "project_id"),
        Index("ix_ai_usage_run_id", "run_id", postgresql_where=text("run_id IS NOT NULL")),
        Index("ix_ai_usage_created_at", "created_at"),
        CheckConstraint(
            "input_tokens >= 0 AND output_tokens >= 0 AND cache_read_tokens >= 0 "
            "AND cache_write_tokens >= 0",
            name="tokens_not_negative",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, GeneratedIdentity(always=False), primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # The run in progress when the model was called (none: chatting between builds).
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="SET NULL")
    )
    model: Mapped[str] = mapped_column(String(200))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
