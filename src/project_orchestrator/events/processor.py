"""Running one inbound event: serialised per project, idempotent, failures recorded.

The job carries only the event id. The event row says whether it has been handled, so a
job that runs twice (a worker killed after acting but before acknowledging) finds it done
and does nothing. Events with the same serial key (one repository, one chat) take a
transaction-scoped advisory lock, so they never run concurrently on any worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.db.engine import Database
from project_orchestrator.events.models import EventSource, EventStatus, InboundEvent
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

# After this many failed attempts the event is marked failed for an operator to replay.
MAX_ATTEMPTS = 6


class SourceHandler(Protocol):
    async def handle(self, session: AsyncSession, event: InboundEvent) -> EventStatus: ...


class EventNotFound(LookupError):
    pass


@dataclass
class EventProcessor:
    db: Database
    handlers: dict[EventSource, SourceHandler]

    async def process(self, event_id: int) -> EventStatus:
        async with self.db.session_scope() as session:
            key = (
                await session.execute(
                    select(InboundEvent.serial_key).where(InboundEvent.id == event_id)
                )
            ).scalar_one_or_none()
            if key is None:
                raise EventNotFound(f"event {event_id} does not exist")
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
            )
            event = (
                await session.execute(
                    select(InboundEvent).where(InboundEvent.id == event_id).with_for_update()
                )
            ).scalar_one()
            if event.status in (EventStatus.HANDLED, EventStatus.IGNORED):
                log.info("event.already_handled", event_id=event_id)
                return event.status
            handler = self.handlers.get(event.source)
            outcome = (
                EventStatus.IGNORED if handler is None else await handler.handle(session, event)
            )
            event.status = outcome
            event.handled_at = datetime.now(UTC)
            event.attempts += 1
            event.last_error = None
        log.info("event.handled", event_id=event_id, outcome=outcome.value)
        return outcome

    async def record_failure(self, event_id: int, error: BaseException) -> bool:
        """Count a failed attempt; True when the event has now run out of attempts."""
        message = f"{type(error).__name__}: {error}"[:2000]
        async with self.db.session_scope() as session:
            event = (
                await session.execute(
                    select(InboundEvent).where(InboundEvent.id == event_id).with_for_update()
                )
            ).scalar_one_or_none()
            if event is None or event.status is not EventStatus.PENDING:
                return False
            event.attempts += 1
            event.last_error = message
            exhausted = event.attempts >= MAX_ATTEMPTS
            if exhausted:
                event.status = EventStatus.FAILED
        log.warning(
            "event.failed", event_id=event_id, error=type(error).__name__, exhausted=exhausted
        )
        return exhausted
