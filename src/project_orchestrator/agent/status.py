"""What the worker last saw of the AI, kept in the database for every process's probes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from project_orchestrator.agent.models import ComponentStatus
from project_orchestrator.db import raw

AI = "ai"
# A failure nobody has confirmed for this long is old news: the next turn will tell.
OUTAGE_MEMORY = timedelta(minutes=5)

_RECORD = text(
    """
    INSERT INTO component_status (name, healthy, detail, changed_at, updated_at)
    VALUES (:name, :healthy, :detail, now(), now())
    ON CONFLICT (name) DO UPDATE SET
        healthy = EXCLUDED.healthy,
        detail = EXCLUDED.detail,
        changed_at = CASE WHEN component_status.healthy
                          THEN now() ELSE component_status.changed_at END,
        updated_at = now()
    """
)


# Success touches the row only when it ends an outage. An upsert would lock the row on
# every turn (even when its WHERE is false) and serialise every project's turns on it.
_RECOVERED = """
    UPDATE component_status SET healthy = true, detail = NULL, changed_at = now(),
        updated_at = now()
    WHERE name = $1 AND NOT healthy
"""


async def record_ai(session: AsyncSession, *, healthy: bool, detail: str | None = None) -> None:
    """Failures are written every time (to stay fresh); success only ends an outage."""
    if healthy:
        connection = await raw.in_transaction(session)  # on every turn: prebuilt
        await connection.execute(_RECOVERED, AI)
    else:
        await session.execute(_RECORD, {"name": AI, "healthy": False, "detail": detail})


async def ai_outage(conn: AsyncConnection | AsyncSession) -> str | None:
    """Why the AI is failing for the worker right now, or None when it is not."""
    row = (
        await conn.execute(
            select(
                ComponentStatus.healthy, ComponentStatus.detail, ComponentStatus.updated_at
            ).where(ComponentStatus.name == AI)
        )
    ).first()
    if row is None or row.healthy:
        return None
    if datetime.now(UTC) - row.updated_at > OUTAGE_MEMORY:
        return None
    return row.detail or "the AI failed recently"
