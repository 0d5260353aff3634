"""Outbound messages, keyed so that a retried job never sends the same one twice."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from project_orchestrator.db.base import Base, Timestamps
from project_orchestrator.db.types import Channel, pg_enum


class OutboundStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class OutboundMessage(Timestamps, Base):
    __tablename__ = "outbound_messages"
    __table_args__ = (CheckConstraint("attempts >= 0", name="attempts_not_negative"),)

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
