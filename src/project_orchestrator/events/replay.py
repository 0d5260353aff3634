"""Running an event's handling again: reset it and queue a job, in one transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.db.enqueue import enqueue_event_jobs
from project_orchestrator.db.jobs import EventJob
from project_orchestrator.events.models import EventStatus, InboundEvent


class UnknownEvent(LookupError):
    pass


async def replay_event(session: AsyncSession, event_id: int) -> InboundEvent:
    """Mark the event pending with a fresh attempt budget and queue it. The caller commits.

    Replaying a handled event is allowed: handlers are idempotent (replies carry
    idempotency keys), so it does again only what did not happen.
    """
    event = (
        await session.execute(
            select(InboundEvent).where(InboundEvent.id == event_id).with_for_update()
        )
    ).scalar_one_or_none()
    if event is None:
        raise UnknownEvent(f"There is no event {event_id}.")
    event.status = EventStatus.PENDING
    event.attempts = 0
    event.last_error = None
    event.handled_at = None
    await session.flush()
    await enqueue_event_jobs(session, [EventJob(event.id, event.correlation_id)])
    return event
