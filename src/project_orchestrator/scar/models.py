"""Every command sent to SCAR, with its output and what was parsed out of it."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from project_orchestrator.db.base import Base, Timestamps, UUIDPrimaryKey
from project_orchestrator.db.types import pg_enum


class ScarTransport(enum.StrEnum):
    HTTP = "http"
    GITHUB = "github"


class ScarCommandStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


class ScarCommand(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "scar_commands"
    __table_args__ = (
        CheckConstraint("duration_seconds IS NULL OR duration_seconds >= 0", name="duration"),
        # A run's SCAR time, read with its progress message.
        Index("ix_scar_commands_run_id", "run_id"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE")
    )
    phase_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_phases.id", ondelete="SET NULL")
    )
    # Retrying a job reuses the key, so a command is never sent twice.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    transport: Mapped[ScarTransport] = mapped_column(pg_enum(ScarTransport, "scar_transport"))
    command: Mapped[str] = mapped_column(String(100))
    args: Mapped[str] = mapped_column(Text, default="", server_default="")
    status: Mapped[ScarCommandStatus] = mapped_column(
        pg_enum(ScarCommandStatus, "scar_command_status"),
        default=ScarCommandStatus.PENDING,
        server_default=ScarCommandStatus.PENDING.value,
    )
    conversation_id: Mapped[str | None] = mapped_column(String(200))
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set just before the command itself goes to SCAR: a retry that finds it set reads
    # SCAR's answers instead of sending again.
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    branch: Mapped[str | None] = mapped_column(String(255))
    pr_url: Mapped[str | None] = mapped_column(Text)
    pr_number: Mapped[int | None] = mapped_column(BigInteger)
