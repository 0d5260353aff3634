"""The outbound-message rows: the outbox written with a change, and the bookkeeping of
sends.

`stage` writes a message into the caller's transaction and queues its delivery on the
same connection, so the message exists exactly when the change it reports has committed.
The delivery job (`channels.delivery`) then takes the conversation's lease, sends its
pending rows oldest first, and marks each one sent.

A few sends happen at once, outside the outbox: a SCAR command comment is a request to a
peer, not news for a person, and its sender needs the comment id. Those `claim` their row
before sending and `mark_sent` after, which is how a retried step avoids posting twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.channels.models import OutboundKind, OutboundMessage, OutboundStatus
from project_orchestrator.db import leases
from project_orchestrator.db.engine import Database
from project_orchestrator.db.enqueue import enqueue_delivery
from project_orchestrator.db.types import Channel

# --- writing into the outbox ------------------------------------------------------------------


async def stage(
    session: AsyncSession,
    *,
    channel: Channel,
    kind: OutboundKind,
    key: str,
    conversation: str,
    target: str,
    body: str,
    payload: dict[str, Any],
    replace: bool = False,
) -> None:
    """Say `body` once for `key`, when the session's transaction commits.

    With `replace`, a message edited in place (a progress message) takes the new text and
    is delivered again; the same text again changes nothing. Without it, a key already
    written keeps its first text: a job that runs twice says it once.
    """
    statement = insert(OutboundMessage).values(
        idempotency_key=key,
        channel=channel,
        kind=kind.value,
        conversation=conversation,
        target=target,
        body=body,
        payload=payload,
    )
    if replace:
        statement = statement.on_conflict_do_update(
            index_elements=["idempotency_key"],
            set_={
                "body": statement.excluded.body,
                "payload": statement.excluded.payload,
                "status": OutboundStatus.PENDING,
                "revision": OutboundMessage.revision + 1,
                "last_error": None,
            },
            where=OutboundMessage.body.is_distinct_from(statement.excluded.body),
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["idempotency_key"])
    written = (await session.execute(statement.returning(OutboundMessage.id))).first()
    if written is not None:
        await enqueue_delivery(session, conversation)


# --- delivering: the lease and the rows -------------------------------------------------------


@dataclass(frozen=True)
class PendingMessage:
    """One row taken for delivery; `attempts` counts this one."""

    id: int
    key: str
    channel: Channel
    kind: OutboundKind
    body: str
    payload: dict[str, Any]
    external_id: str | None
    attempts: int
    revision: int

    @property
    def maybe_sent(self) -> bool:
        """An earlier attempt got as far as sending, and may have succeeded."""
        return self.attempts > 1


# One statement: the row is locked while it is updated, and a revision that moved on (newer
# text arrived while this one was sent) stays pending.
_DELIVERED = text(
    """
    UPDATE outbound_messages SET
        external_id = COALESCE(NULLIF(:external_id, ''), external_id),
        last_error = NULL,
        sent_at = now(),
        updated_at = now(),
        status = CASE WHEN revision = :revision THEN 'sent'::outbound_status ELSE status END
    WHERE id = :id
    """
)


async def first_pending(
    db: Database, conversation: str, holder: str, ttl: timedelta
) -> tuple[bool, PendingMessage | None]:
    """Take the conversation's lease and its oldest pending row: (False, None) when
    someone else holds the lease, (True, None) when there is nothing to send."""
    async with db.session_scope() as session:
        if not await leases.take(session, keys.outbox_lease(conversation), holder, ttl):
            return False, None
        return True, await _next_or_release(session, conversation, holder, ttl, just_taken=True)


async def delivered_then_next(
    db: Database,
    message: PendingMessage,
    external_id: str | None,
    conversation: str,
    holder: str,
    ttl: timedelta,
) -> PendingMessage | None:
    """Mark `message` sent and take the next one (None: the lease is given up).

    Sent, unless newer text for an edited-in-place message arrived meanwhile: that stays
    pending, and knows the id to edit."""
    async with db.session_scope() as session:
        await session.execute(
            _DELIVERED,
            {"id": message.id, "external_id": external_id, "revision": message.revision},
        )
        return await _next_or_release(session, conversation, holder, ttl)


async def failed_then_next(
    db: Database,
    message: PendingMessage,
    error: str,
    conversation: str,
    holder: str,
    ttl: timedelta,
    *,
    give_up: bool,
) -> PendingMessage | None:
    """Record the failure. Given up, the message is `failed` and the next one is taken;
    otherwise the lease is released for the retry (None)."""
    async with db.session_scope() as session:
        await session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == message.id)
            .values(
                last_error=error,
                status=OutboundStatus.FAILED if give_up else OutboundStatus.PENDING,
            )
        )
        if give_up:
            return await _next_or_release(session, conversation, holder, ttl)
        await leases.release(session, keys.outbox_lease(conversation), holder)
        return None


async def _oldest_pending(session: AsyncSession, conversation: str) -> OutboundMessage | None:
    return (
        await session.execute(
            select(OutboundMessage)
            .where(
                OutboundMessage.conversation == conversation,
                OutboundMessage.status == OutboundStatus.PENDING,
            )
            .order_by(OutboundMessage.id)
            .limit(1)
        )
    ).scalar_one_or_none()


async def release_lease(db: Database, conversation: str, holder: str) -> None:
    async with db.session_scope() as session:
        await leases.release(session, keys.outbox_lease(conversation), holder)


async def _next_or_release(
    session: AsyncSession,
    conversation: str,
    holder: str,
    ttl: timedelta,
    *,
    just_taken: bool = False,
) -> PendingMessage | None:
    """The oldest pending row, counted as an attempt, with the lease renewed; with none,
    the lease is given up. Released before looking, as `leases.release` explains, except
    that with the lease `just_taken` in this transaction it looks first (there is usually
    work, and the lease is kept for it) and releases and looks again only when there is
    none."""
    lease = keys.outbox_lease(conversation)
    row = await _oldest_pending(session, conversation) if just_taken else None
    if row is None:
        await leases.release(session, lease, holder)
        row = await _oldest_pending(session, conversation)
        if row is None:
            return None
        await leases.take(session, lease, holder, ttl)
    row.attempts += 1
    return PendingMessage(
        id=row.id,
        key=row.idempotency_key,
        channel=row.channel,
        # Rows in a conversation are outbox rows: they always have a kind.
        kind=OutboundKind(row.kind or OutboundKind.GITHUB_COMMENT),
        body=row.body,
        payload=dict(row.payload or {}),
        external_id=row.external_id,
        attempts=row.attempts,
        revision=row.revision,
    )


# --- sends that do not go through the outbox --------------------------------------------------


@dataclass(frozen=True)
class Claim:
    sent: bool  # already sent for this key (and, unless edited in place, nothing to do)
    external_id: str | None  # the id the channel gave it, once known
    maybe_sent: bool  # an earlier attempt got as far as sending, and may have succeeded


async def claim(db: Database, channel: Channel, key: str, target: str, body: str) -> Claim:
    """The row for `key`, created on first sight, counting this attempt."""
    statement = (
        insert(OutboundMessage)
        .values(idempotency_key=key, channel=channel, target=target, body=body)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    async with db.session_scope() as session:
        await session.execute(statement)
        row = (
            await session.execute(
                select(OutboundMessage).where(OutboundMessage.idempotency_key == key)
            )
        ).scalar_one()
        found = Claim(
            sent=row.status is OutboundStatus.SENT,
            external_id=row.external_id,
            maybe_sent=row.attempts > 0,
        )
        row.attempts += 1
    return found


async def mark_sent(db: Database, key: str, external_id: str | None) -> None:
    async with db.session_scope() as session:
        await session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.idempotency_key == key)
            .values(
                status=OutboundStatus.SENT,
                external_id=external_id,
                sent_at=datetime.now(UTC),
                last_error=None,
            )
        )


async def record_error(db: Database, key: str, error: str) -> None:
    async with db.session_scope() as session:
        await session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.idempotency_key == key)
            .values(last_error=error)
        )
