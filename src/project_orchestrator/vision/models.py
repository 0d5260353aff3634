"""Brainstorm notes, and vision documents: every version kept, identified by its text's hash."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from project_orchestrator.db.base import Base, Timestamps, UUIDPrimaryKey
from project_orchestrator.db.types import pg_enum


class NoteTopic(enum.StrEnum):
    WHAT = "what"
    WHO = "who"
    PROBLEM = "problem"
    SOLUTION = "solution"
    FEATURE = "feature"
    JOURNEY = "journey"
    SUCCESS = "success"
    OUT_OF_SCOPE = "out_of_scope"


# The latest note of one of these topics replaces the earlier ones.
SINGLE_VALUED_TOPICS = frozenset(
    {NoteTopic.WHAT, NoteTopic.WHO, NoteTopic.PROBLEM, NoteTopic.SOLUTION, NoteTopic.JOURNEY}
)
# Notes of these topics accumulate; a wrong one is retracted rather than replaced.
LIST_TOPICS = frozenset({NoteTopic.FEATURE, NoteTopic.SUCCESS, NoteTopic.OUT_OF_SCOPE})

NOTE_MAX_LENGTH = 2000


class BrainstormNote(Base):
    """One thing learned while brainstorming; notes are only ever added (or retracted)."""

    __tablename__ = "brainstorm_notes"
    __table_args__ = (
        Index("ix_brainstorm_notes_project_id_id", "project_id", "id"),
        CheckConstraint("text ~ '[^[:space:]]'", name="text_not_blank"),
        CheckConstraint(f"char_length(text) <= {NOTE_MAX_LENGTH}", name="text_not_too_long"),
        # Single-valued topics are corrected by saying them again, never by retraction.
        CheckConstraint(
            "retracted_at IS NULL OR topic IN ('feature', 'success', 'out_of_scope')",
            name="retract_only_list_topics",
        ),
    )

    # A sequence, not a uuid: the order of the notes is the order of their ids.
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    topic: Mapped[NoteTopic] = mapped_column(pg_enum(NoteTopic, "note_topic"))
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retracted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class VisionDocument(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "vision_documents"
    __table_args__ = (
        UniqueConstraint("project_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("content_hash ~ '^[0-9a-f]{64}$'", name="content_hash_sha256"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    markdown: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL")
    )
