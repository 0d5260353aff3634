"""Leases: who does one kind of serial work right now (deliver a conversation's messages,
answer a project's messages), and until when at the latest.

A lease is a row with an expiry, not a database lock: nothing is held while the work
waits on a channel or a model. Its holder is the queue job doing the work, named by the
job's id, so a job that is picked up again after its worker died takes its own lease back
at once; anyone else waits for the expiry. The holder renews it as it goes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import DateTime, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from project_orchestrator.db import raw
from project_orchestrator.db.base import Base


class WorkLease(Base):
    __tablename__ = "work_leases"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Prebuilt, on the session's asyncpg connection: a lease changes hands on every turn and
# every delivery, and building the same statements with the ORM each time cost four
# times as much CPU as running them.
_TAKE = """
    INSERT INTO work_leases (key, holder, expires_at) VALUES ($1, $2, now() + $3::interval)
    ON CONFLICT (key) DO UPDATE
        SET holder = excluded.holder, expires_at = excluded.expires_at
        WHERE work_leases.expires_at < now() OR work_leases.holder = excluded.holder
    RETURNING holder
"""
_RENEW = (
    "UPDATE work_leases SET expires_at = now() + $3::interval"
    " WHERE key = $1 AND holder = $2 RETURNING key"
)
_RELEASE = "DELETE FROM work_leases WHERE key = $1 AND holder = $2"


async def take(session: AsyncSession, key: str, holder: str, ttl: timedelta) -> bool:
    """The lease for `holder`, in the caller's transaction, unless someone else holds a
    live one."""
    connection = await raw.in_transaction(session)
    return await connection.fetchval(_TAKE, key, holder, ttl) is not None


async def renew(session: AsyncSession, key: str, holder: str, ttl: timedelta) -> bool:
    """Extend the lease in the caller's transaction; False when it is no longer ours."""
    connection = await raw.in_transaction(session)
    return await connection.fetchval(_RENEW, key, holder, ttl) is not None


async def release(session: AsyncSession, key: str, holder: str) -> None:
    """Give the lease up in the caller's transaction.

    To stop, a holder releases first and only then looks for work left, in the same
    transaction (and takes the lease again if it finds some). Work whose job found the
    lease taken committed before that job looked, so the holder sees it; a job that looks
    after the release waits on the deleted row until the holder commits, then takes the
    lease. Either way no work is left without someone to do it.
    """
    connection = await raw.in_transaction(session)
    await connection.execute(_RELEASE, key, holder)
