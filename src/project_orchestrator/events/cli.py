"""`orchestrator events list`: what arrived, what became of it."""

from __future__ import annotations

from sqlalchemy import select

from project_orchestrator.db.engine import one_connection_database
from project_orchestrator.events.models import EventStatus, InboundEvent


def _one_line(text: str | None, width: int = 80) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def list_events(database_url: str, *, failed_only: bool, limit: int) -> list[str]:
    """One line per event, newest first: id, time, source, type, status, attempts, error."""
    query = (
        select(
            InboundEvent.id,
            InboundEvent.received_at,
            InboundEvent.source,
            InboundEvent.event_type,
            InboundEvent.external_id,
            InboundEvent.status,
            InboundEvent.attempts,
            InboundEvent.last_error,
        )
        .order_by(InboundEvent.id.desc())
        .limit(limit)
    )
    if failed_only:
        query = query.where(InboundEvent.status == EventStatus.FAILED)
    async with one_connection_database(database_url) as db, db.sessionmaker() as session:
        rows = (await session.execute(query)).all()
    return [
        f"{row.id:>8}  {row.received_at:%Y-%m-%d %H:%M:%S}Z  {row.source.value:<8} "
        f"{row.event_type:<28} {row.status.value:<8} attempts={row.attempts} "
        f"{row.external_id}  {_one_line(row.last_error)}".rstrip()
        for row in rows
    ]


async def replay(database_url: str, event_id: int) -> str:
    from project_orchestrator.events.replay import replay_event

    async with one_connection_database(database_url) as db, db.session_scope() as session:
        event = await replay_event(session, event_id)
    return f"Event {event.id} ({event.source.value} {event.event_type}) queued again."
