"""Leases: who does one kind of serial work right now (deliver a conversation's messages,
answer a project's messages), and until when at the latest.

A lease is a row with an expiry, not a database lock: nothing is held while the work
waits on a channel or a model. Its holder is the queue job doing the work, named by the
job's id, so a job that is picked up again after its worker died takes its own lease back
at once; anyone else waits for the expiry. The holder renews it as it goes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import DateTime, Interval, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from project_orchestrator.db.base import Base


class WorkLease(Base):
    __tablename__ = "work_leases"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Prebuilt text: a lease changes hands on every turn and every delivery, and building the
# same statements with the ORM each time cost four times as much CPU as running them.
_TAKE = text(
    """
    INSERT INTO work_leases (key, holder, expires_at) VALUES (:key, :holder, now() + :ttl)
    ON CONFLICT (key) DO UPDATE
        SET holder = excluded.holder, expires_at = excluded.expires_at
        WHERE work_leases.expires_at < now() OR work_leases.holder = excluded.holder
    RETURNING holder
    """
).bindparams(bindparam("ttl", type_=Interval()))
_RENEW = text(
    "UPDATE work_leases SET expires_at = now() + :ttl"
    " WHERE key = :key AND holder = :holder RETURNING key"
).bindparams(bindparam("ttl", type_=Interval()))
_RELEASE = text("DELETE FROM work_leases WHERE key = :key AND holder = :holder")


async def take(session: AsyncSession, key: str, holder: str, ttl: timedelta) -> bool:
    """The lease for `holder`, in the caller's transaction, unless someone else holds a
    live one."""
    taken = await session.execute(_TAKE, {"key": key, "holder": holder, "ttl": ttl})
    return taken.first() is not None


async def renew(session: AsyncSession, key: str, holder: str, ttl: timedelta) -> bool:
    """Extend the lease in the caller's transaction; False when it is no longer ours."""
    renewed = await session.execute(_RENEW, {"key": key, "holder": holder, "ttl": ttl})
    return renewed.first() is not None


async def release(session: AsyncSession, key: str, holder: str) -> None:
    """Give the lease up in the caller's transaction.

    To stop, a holder releases first and only then looks for work left, in the same
    transaction (and takes the lease again if it finds some). Work whose job found the
    lease taken committed before that job looked, so the holder sees it; a job that looks
    after the release waits on the deleted row until the holder commits, then takes the
    lease. Either way no work is left without someone to do it.
    """
    await session.execute(_RELEASE, {"key": key, "holder": holder})
