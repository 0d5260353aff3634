"""Telling a database that is down or was rebuilt from one that refuses a query.

A connection caches what it learnt about the schema: asyncpg keeps each type's codec by
OID and its prepared statements. When the schema is dropped and built again under a
running service (a restore, `alembic downgrade base && upgrade head`), every cached OID
names a type that no longer exists and PostgreSQL answers "cache lookup failed for type".
Those connections never recover by themselves, so the service throws them away: the
next ones learn the new schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from project_orchestrator.logging import get_logger

log = get_logger(__name__)

_STALE_SCHEMA_TEXTS = (
    "cache lookup failed for type",
    "cached statement plan is invalid",
    "cached plan must not change result type",
)
# Every type of the schema, tables' row types included: rebuilding any of them gives it
# a new OID, so the fingerprint changes exactly when cached OIDs may have gone stale.
SCHEMA_FINGERPRINT_SQL = (
    "SELECT md5(coalesce(string_agg(oid::text, ',' ORDER BY oid), '')) FROM pg_type "
    "WHERE typnamespace = to_regnamespace(current_schema())"
)


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return seen


def is_stale_schema(exc: BaseException) -> bool:
    for cause in _causes(exc):
        if isinstance(
            cause, asyncpg.InvalidCachedStatementError | asyncpg.OutdatedSchemaCacheError
        ):
            return True
        if any(marker in str(cause) for marker in _STALE_SCHEMA_TEXTS):
            return True
    return False


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or is going away: try again later (503)."""
    for cause in _causes(exc):
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(
            cause,
            asyncpg.PostgresConnectionError
            | asyncpg.CannotConnectNowError
            | asyncpg.AdminShutdownError
            | asyncpg.TooManyConnectionsError
            | asyncpg.ConnectionDoesNotExistError,
        ):
            return True
        if isinstance(cause, OSError) and _raised_by_the_driver(cause):
            return True
    return False


def _raised_by_the_driver(exc: OSError) -> bool:
    """A refused, reset or missing socket while asyncpg connects or talks; not every
    OSError (a full disk is not the database being away)."""
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg"):
            return True
        tb = tb.tb_next
    return False


@dataclass
class SchemaWatch:
    """Notices a rebuilt schema and throws away the connections that cached the old one."""

    resets: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    fingerprint: str | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def unchanged(self, conn: AsyncConnection) -> bool:
        """False (once) when the schema was rebuilt since the last look; the stale
        connections are gone by the time it returns."""
        seen = (await conn.execute(text(SCHEMA_FINGERPRINT_SQL))).scalar_one()
        if self.fingerprint is None or seen == self.fingerprint:
            self.fingerprint = seen
            return True
        await self.reset("schema fingerprint changed")
        self.fingerprint = seen
        return False

    async def reset(self, reason: str) -> None:
        async with self._lock:
            log.warning("database.schema_changed", reason=reason)
            for reset in self.resets:
                await reset()
            # The next look records the schema as it is now.
            self.fingerprint = None
