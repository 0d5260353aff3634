"""Workflow runs, their phases and the approval gates between them."""

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
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from project_orchestrator.db.base import Base, Timestamps, UUIDPrimaryKey
from project_orchestrator.db.types import Channel, pg_enum


class RunKind(enum.StrEnum):
    # The first run of a project starts with its vision; later ones are features.
    INITIAL = "initial"
    FEATURE = "feature"


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


ACTIVE_RUN_STATUSES = (RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL, RunStatus.ON_HOLD)
# The same, for statements written as SQL text: `status IN {ACTIVE_RUN_STATUSES_SQL}`.
ACTIVE_RUN_STATUSES_SQL = "(" + ", ".join(f"'{s.value}'" for s in ACTIVE_RUN_STATUSES) + ")"


class Phase(enum.StrEnum):
    VISION = "vision"
    PRIME = "prime"
    PLAN = "plan"
    EXECUTE = "execute"
    VALIDATE = "validate"
    # GitHub's own verdict on the pull request: mergeable, its checks green.
    CHECKS = "checks"
    MERGE = "merge"


class PhaseStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class GateKind(enum.StrEnum):
    VISION = "vision"
    PLAN = "plan"
    MERGE = "merge"
    ERROR_RESOLUTION = "error_resolution"


class GateStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    VOIDED = "voided"
    EXPIRED = "expired"


class WorkflowRun(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "workflow_runs"
    __table_args__ = (
        UniqueConstraint("project_id", "number"),
        # At most one run in progress per project.
        Index(
            "uq_workflow_runs_one_active_per_project",
            "project_id",
            unique=True,
            postgresql_where=text(f"status IN {ACTIVE_RUN_STATUSES_SQL}"),
        ),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint(
            "(status = 'on_hold') = (held_from IS NOT NULL)", name="held_from_only_on_hold"
        ),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[RunKind] = mapped_column(pg_enum(RunKind, "run_kind"))
    feature_request: Mapped[str] = mapped_column(Text)
    status: Mapped[RunStatus] = mapped_column(
        pg_enum(RunStatus, "run_status"),
        default=RunStatus.RUNNING,
        server_default=RunStatus.RUNNING.value,
    )
    current_phase: Mapped[Phase | None] = mapped_column(pg_enum(Phase, "workflow_phase"))
    # The status to return to on /resume.
    held_from: Mapped[RunStatus | None] = mapped_column(pg_enum(RunStatus, "run_status"))
    started_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL")
    )
    # The repository this run's gates cover, pinned when its first SCAR step runs: no
    # step of the run works on any other.
    github_repo: Mapped[str | None] = mapped_column(String(200))
    branch: Mapped[str | None] = mapped_column(String(255))
    pr_number: Mapped[int | None] = mapped_column(BigInteger)
    pr_url: Mapped[str | None] = mapped_column(Text)
    pr_head_sha: Mapped[str | None] = mapped_column(String(64))
    # Fixes SCAR was sent on by itself for checks that failed on GitHub. At
    # RUN_MAX_FIX_ATTEMPTS a red reading asks the person instead (each approval there
    # allows one more fix, which the person asked for and does not count here).
    fix_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The GitHub comment edited in place with the run's progress.
    status_comment_id: Mapped[int | None] = mapped_column(BigInteger)
    # The run's own AI budget, raised with /budget; None: AI_MAX_TOKENS_PER_RUN.
    ai_token_limit: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WorkflowPhase(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "workflow_phases"
    __table_args__ = (
        UniqueConstraint("run_id", "phase", "attempt"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        CheckConstraint(
            "finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at",
            name="finished_after_start",
        ),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    phase: Mapped[Phase] = mapped_column(pg_enum(Phase, "workflow_phase"))
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    status: Mapped[PhaseStatus] = mapped_column(
        pg_enum(PhaseStatus, "phase_status"),
        default=PhaseStatus.PENDING,
        server_default=PhaseStatus.PENDING.value,
    )
    # What the phase produced (the plan, the validation report) and, on failure, why.
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # Feedback from a rejected gate that this attempt must take into account.
    feedback: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApprovalGate(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "approval_gates"
    __table_args__ = (
        # One open question at a time per run.
        Index(
            "uq_approval_gates_one_pending_per_run",
            "run_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        CheckConstraint(
            "(status IN ('approved', 'rejected')) = "
            "(decided_by_id IS NOT NULL AND decided_at IS NOT NULL AND decided_via IS NOT NULL)",
            name="decision_recorded",
        ),
        CheckConstraint("length(artifact_version) > 0", name="artifact_version_present"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    phase_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_phases.id", ondelete="SET NULL")
    )
    kind: Mapped[GateKind] = mapped_column(pg_enum(GateKind, "gate_kind"))
    status: Mapped[GateStatus] = mapped_column(
        pg_enum(GateStatus, "gate_status"),
        default=GateStatus.PENDING,
        server_default=GateStatus.PENDING.value,
    )
    # Which version of the artifact this gate approves (vision hash, plan hash, PR head).
    artifact_version: Mapped[str] = mapped_column(String(128))
    summary: Mapped[str | None] = mapped_column(Text)
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("identities.id", ondelete="RESTRICT")
    )
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_via: Mapped[Channel | None] = mapped_column(pg_enum(Channel, "channel"))
    feedback: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
