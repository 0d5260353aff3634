"""The conversation: every message kept, older turns summarised for the model, and the
turns waiting for the agent's answer."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from project_orchestrator.db.base import Base, Timestamps, UUIDPrimaryKey
from project_orchestrator.db.types import Channel, pg_enum


class MessageRole(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class ConversationMessage(Base):
    __tablename__ = "conversation_messages"
    __table_args__ = (
        Index("ix_conversation_messages_project_created", "project_id", "created_at"),
        CheckConstraint("tokens >= 0", name="tokens_not_negative"),
    )

    # A sequence, not a uuid: the order of a conversation is the order of its ids.
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    role: Mapped[MessageRole] = mapped_column(pg_enum(MessageRole, "message_role"))
    channel: Mapped[Channel] = mapped_column(pg_enum(Channel, "channel"))
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL")
    )
    content: Mapped[str] = mapped_column(Text)
    # The model's structured turn (tool calls and results), when there was one.
    blocks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ConversationSummary(UUIDPrimaryKey, Timestamps, Base):
    """A summary of every message of a project up to and including `through_message_id`."""

    __tablename__ = "conversation_summaries"
    __table_args__ = (
        Index(
            "uq_conversation_summaries_project_through",
            "project_id",
            "through_message_id",
            unique=True,
        ),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    through_message_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("conversation_messages.id", ondelete="CASCADE")
    )
    summary: Mapped[str] = mapped_column(Text)


class ComponentStatus(Base):
    """The last known state of a dependency, shared by every process through the database.

    The worker sees the AI fail (its circuit breaker opens); the API process answers
    /health/ai. This row is how the second learns what the first saw.
    """

    __tablename__ = "component_status"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    healthy: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str | None] = mapped_column(Text)
    # When the state last changed, and when it was last confirmed.
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TurnStatus(enum.StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"
    SUPERSEDED = "superseded"  # a newer message's answer covers it
    FAILED = "failed"  # the AI stayed unreachable for the whole retry window


class AgentTurn(Timestamps, Base):
    """A person's message waiting for the agent's answer, and where the answer goes."""

    __tablename__ = "agent_turns"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index(
            "ix_agent_turns_pending_project",
            "project_id",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("conversation_messages.id", ondelete="CASCADE")
    )
    # Who asked, as the job knew it: the tools act as this person on this channel.
    actor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(pg_enum(Channel, "channel"))
    reply_to: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[TurnStatus] = mapped_column(
        SAEnum(
            TurnStatus,
            native_enum=False,
            length=20,
            create_constraint=False,
            values_callable=lambda members: [m.value for m in members],
        ),
        default=TurnStatus.PENDING,
        server_default=TurnStatus.PENDING.value,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A turn that found the AI unavailable waits until then for its next try.
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
