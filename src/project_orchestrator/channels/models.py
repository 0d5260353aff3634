"""Outbound messages: the outbox.

A message that reports a change is a row written in the transaction that made the change;
a delivery job sends it once that transaction has committed. A job that rolls back leaves
no row, so it has told nobody anything. Rows of one conversation (an issue thread, a chat)
are delivered one at a time, oldest first, by whoever holds that conversation's lease
(`db.leases`).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from project_orchestrator.db.base import Base, Timestamps
from project_orchestrator.db.types import Channel, pg_enum


class OutboundStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class OutboundKind(enum.StrEnum):
    """What delivering a row does; the payload carries what that needs."""

    GITHUB_COMMENT = "github_comment"  # a new comment on an issue or PR
    GITHUB_STATUS = "github_status"  # one comment per key, edited in place
    TELEGRAM_MESSAGE = "telegram_message"  # a message, with gate buttons when asked
    TELEGRAM_PROGRESS = "telegram_progress"  # one message per key, edited in place
    TELEGRAM_ANSWER = "telegram_answer"  # the little notification a button tap gets
    TELEGRAM_DROP_BUTTONS = "telegram_drop_buttons"  # a decided question loses its buttons


class OutboundMessage(Timestamps, Base):
    __tablename__ = "outbound_messages"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The delivery job's one query: the oldest pending row of a conversation.
        Index(
            "ix_outbound_messages_pending_conversation",
            "conversation",
            "id",
            postgresql_where=text("status = 'pending' AND conversation IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    channel: Mapped[Channel] = mapped_column(pg_enum(Channel, "channel"))
    # Where it goes: "owner/repo#12" on GitHub, the chat id on Telegram.
    target: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[OutboundStatus] = mapped_column(
        pg_enum(OutboundStatus, "outbound_status"),
        default=OutboundStatus.PENDING,
        server_default=OutboundStatus.PENDING.value,
    )
    # The id the channel gave it (comment id, message id), so it can be edited later.
    external_id: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Outbox rows only; a row without them was sent by its writer (a SCAR command comment).
    kind: Mapped[str | None] = mapped_column(String(40))  # an OutboundKind
    conversation: Mapped[str | None] = mapped_column(String(300))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Bumped when an edited-in-place message gets new text while a delivery is under way,
    # so that delivery does not mark the newer text as sent.
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
