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

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.channels.models import OutboundKind, OutboundMessage, OutboundStatus
from project_orchestrator.db import leases, raw
from project_orchestrator.db.engine import Database
from project_orchestrator.db.enqueue import enqueue_delivery
from project_orchestrator.db.types import Channel

# --- writing into the outbox ------------------------------------------------------------------

# Prebuilt: every answer and every notice is staged, and the ORM's insert construct,
# built and compiled per call, cost several times the statement's own round trip.
_STAGE_VALUES = """
    INSERT INTO outbound_messages
        (idempotency_key, channel, kind, conversation, target, body, payload)
    VALUES ($1, $2::channel, $3, $4, $5, $6, $7::jsonb)
"""
_STAGE = _STAGE_VALUES + " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
_STAGE_REPLACING = (
    _STAGE_VALUES
    + """
    ON CONFLICT (idempotency_key) DO UPDATE SET
        body = excluded.body, payload = excluded.payload, status = 'pending',
        revision = outbound_messages.revision + 1, last_error = NULL, updated_at = now()
    WHERE outbound_messages.body IS DISTINCT FROM excluded.body
    RETURNING id
"""
)


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
    connection = await raw.in_transaction(session)
    written = await connection.fetchval(
        _STAGE_REPLACING if replace else _STAGE,
        key,
        channel.value,
        kind.value,
        conversation,
        target,
        body,
        raw.json_text(payload),
    )
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
_DELIVERED = """
    UPDATE outbound_messages SET
        external_id = COALESCE(NULLIF($2, ''), external_id),
        last_error = NULL,
        sent_at = now(),
        updated_at = now(),
        status = CASE WHEN revision = $3 THEN 'sent'::outbound_status ELSE status END
    WHERE id = $1
"""


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
        connection = await raw.in_transaction(session)
        await connection.execute(_DELIVERED, message.id, external_id, message.revision)
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


# The oldest pending row of a conversation, counted as an attempt, in one statement.
_TAKE_OLDEST = """
    UPDATE outbound_messages SET attempts = attempts + 1, updated_at = now()
    WHERE id = (
        SELECT id FROM outbound_messages
        WHERE conversation = $1 AND status = 'pending'
        ORDER BY id LIMIT 1
        FOR UPDATE
    )
    RETURNING id, idempotency_key, channel::text, kind, body, payload, external_id, attempts,
        revision
"""


async def _take_oldest(session: AsyncSession, conversation: str) -> PendingMessage | None:
    connection = await raw.in_transaction(session)
    row = await connection.fetchrow(_TAKE_OLDEST, conversation)
    if row is None:
        return None
    return PendingMessage(
        id=row["id"],
        key=row["idempotency_key"],
        channel=Channel(row["channel"]),
        # Rows in a conversation are outbox rows: they always have a kind.
        kind=OutboundKind(row["kind"] or OutboundKind.GITHUB_COMMENT),
        body=row["body"],
        payload=dict(row["payload"] or {}),
        external_id=row["external_id"],
        attempts=row["attempts"],
        revision=row["revision"],
    )


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
    taken = await _take_oldest(session, conversation) if just_taken else None
    if taken is None:
        await leases.release(session, lease, holder)
        taken = await _take_oldest(session, conversation)
        if taken is None:
            return None
        await leases.take(session, lease, holder, ttl)
    return taken


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
