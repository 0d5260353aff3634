"""Inbound events: every verified delivery, stored before it is acknowledged."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from project_orchestrator.db.base import Base
from project_orchestrator.db.types import pg_enum


class EventSource(enum.StrEnum):
    GITHUB = "github"
    TELEGRAM = "telegram"


class EventStatus(enum.StrEnum):
    PENDING = "pending"
    HANDLED = "handled"
    IGNORED = "ignored"
    FAILED = "failed"


class InboundEvent(Base):
    __tablename__ = "inbound_events"
    __table_args__ = (
        # A redelivery of the same GitHub delivery / Telegram update is recognised here.
        UniqueConstraint("source", "external_id"),
        Index("ix_inbound_events_serial_key_id", "serial_key", "id"),
        Index(
            "ix_inbound_events_unfinished",
            "serial_key",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_inbound_events_received_at", "received_at"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint(
            "(status IN ('handled', 'ignored')) = (handled_at IS NOT NULL)",
            name="handled_at_when_finished",
        ),
    )

    # A sequence: per-project order of handling is the order of arrival.
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    source: Mapped[EventSource] = mapped_column(pg_enum(EventSource, "event_source"))
    external_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(100))
    # Events with the same key are handled one at a time, in order (one per project).
    serial_key: Mapped[str] = mapped_column(String(300))
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # `json`, not `jsonb`: it keeps the exact bytes that were signed. Deferred: only
    # handling an event reads it, so listing, replaying or counting a failure never
    # decodes a payload (one that cannot be decoded must still be listable and failable).
    payload: Mapped[Any] = mapped_column(JSON, deferred=True, deferred_raiseload=True)
    status: Mapped[EventStatus] = mapped_column(
        pg_enum(EventStatus, "event_status"),
        default=EventStatus.PENDING,
        server_default=EventStatus.PENDING.value,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
