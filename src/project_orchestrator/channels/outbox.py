"""The outbound-message rows every channel keys its sends by.

Before sending, a channel claims the row for its key (created on first sight); after, it
marks it sent with the id the channel gave the message. A claim tells whether an earlier
attempt may already have sent it, which is how retried jobs avoid saying things twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from project_orchestrator.channels.models import OutboundMessage, OutboundStatus
from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel


@dataclass(frozen=True)
class Claim:
    sent: bool  # already sent for this key (and, unless edited in place, nothing to do)
    external_id: str | None  # the id the channel gave it, once known
    maybe_sent: bool  # an earlier attempt got as far as sending, and may have succeeded


async def claim(
    db: Database, channel: Channel, key: str, target: str, body: str, *, new_body: bool = False
) -> Claim:
    """The row for `key`, counting this attempt; `new_body` replaces its text (an edit)."""
    statement = insert(OutboundMessage).values(
        idempotency_key=key, channel=channel, target=target, body=body
    )
    if new_body:
        statement = statement.on_conflict_do_update(
            index_elements=["idempotency_key"],
            set_={"body": body, "status": OutboundStatus.PENDING},
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["idempotency_key"])
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
