"""Running one inbound event: serialised per project, idempotent, failures recorded.

The job carries only the event id. The event row says whether it has been handled, so a
job that runs twice (a worker killed after acting but before acknowledging) finds it done
and does nothing. Events with the same serial key (one repository, one chat) take a
transaction-scoped advisory lock, so they never run concurrently on any worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from project_orchestrator.db import raw
from project_orchestrator.db.engine import Database
from project_orchestrator.events.models import EventSource, EventStatus, InboundEvent
from project_orchestrator.logging import get_logger, redact_text

log = get_logger(__name__)

# After this many failed attempts the event is marked failed for an operator to replay.
MAX_ATTEMPTS = 6
# Earlier events of the same key handled before this one, at most (the rest by their jobs).
CATCH_UP_LIMIT = 50


# Prebuilt, on the session's asyncpg connection (`raw.in_transaction`): every message
# runs them.
#
# pg_advisory_xact_lock returns nothing; called in the select list it takes the lock for
# the row's key before the key comes back.
_KEY_LOCKED = (
    "SELECT serial_key FROM inbound_events, pg_advisory_xact_lock(hashtextextended(serial_key, 0))"
    " WHERE id = $1"
)
# Its own statement after the lock, so its snapshot sees what the lock's last holder did.
_EARLIER = """
    SELECT id FROM inbound_events
     WHERE serial_key = $1 AND status = 'pending' AND attempts = 0 AND id < $2
     ORDER BY id LIMIT $3
"""
# The outcome, as one statement rather than a flush of the loaded row.
_DONE = (
    "UPDATE inbound_events SET status = $2::event_status, handled_at = now(),"
    " attempts = attempts + 1, last_error = NULL WHERE id = $1"
)


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
            # The key and its lock in one round trip; the lock is the transaction's.
            connection = await raw.in_transaction(session)
            key = await connection.fetchval(_KEY_LOCKED, event_id)
            if key is None:
                raise EventNotFound(f"event {event_id} does not exist")
            await self._catch_up(session, key, event_id)
            outcome = await self._handle_locked(session, event_id)
        log.info("event.handled", event_id=event_id, outcome=outcome.value)
        return outcome

    async def _catch_up(self, session: AsyncSession, key: str, event_id: int) -> None:
        """Handle earlier, not yet attempted events of the same key first.

        Two workers may dequeue one repository's events in either order; whoever holds the
        lock handles them in the order they arrived. Their own jobs then find them done.
        An earlier event that fails here is left to its own job (retries, failure count).
        """
        connection = await raw.in_transaction(session)
        earlier = await connection.fetch(_EARLIER, key, event_id, CATCH_UP_LIMIT)
        for (earlier_id,) in earlier:
            try:
                async with session.begin_nested():
                    await self._handle_locked(session, earlier_id)
            except Exception as exc:
                log.warning(
                    "event.catch_up_deferred", event_id=earlier_id, error=type(exc).__name__
                )

    async def _handle_locked(self, session: AsyncSession, event_id: int) -> EventStatus:
        event = (
            await session.execute(
                select(InboundEvent)
                .where(InboundEvent.id == event_id)
                .options(undefer(InboundEvent.payload))
                .with_for_update()
                # The status as it is now that the row is locked, even if loaded before.
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        if event.status in (EventStatus.HANDLED, EventStatus.IGNORED):
            log.info("event.already_handled", event_id=event_id)
            return event.status
        handler = self.handlers.get(event.source)
        outcome = EventStatus.IGNORED if handler is None else await handler.handle(session, event)
        connection = await raw.in_transaction(session)
        await connection.execute(_DONE, event_id, outcome.value)
        return outcome

    async def record_failure(self, event_id: int, error: BaseException) -> bool:
        """Count a failed attempt; True when the event has now run out of attempts."""
        # Shown by the events API and CLI: no configured secret, no credential in it.
        message = redact_text(f"{type(error).__name__}: {error}")[:2000]
        # One statement that never reads the payload: the payload may be why it failed.
        async with self.db.session_scope() as session:
            attempts = (
                await session.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id == event_id, InboundEvent.status == EventStatus.PENDING)
                    .values(attempts=InboundEvent.attempts + 1, last_error=message)
                    .returning(InboundEvent.attempts)
                )
            ).scalar_one_or_none()
            if attempts is None:
                return False
            exhausted = attempts >= MAX_ATTEMPTS
            if exhausted:
                await session.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id == event_id)
                    .values(status=EventStatus.FAILED)
                )
        log.warning(
            "event.failed", event_id=event_id, error=type(error).__name__, exhausted=exhausted
        )
        return exhausted
