"""Running Alembic from code and telling whether the schema is current."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection

# The repository root holds alembic.ini and alembic/ (CONTRACT.md); the package is
# installed in editable mode from there.
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def alembic_config(database_url: str | None = None) -> Config:
    ini = PROJECT_ROOT / "alembic.ini"
    if not ini.exists():
        ini = Path.cwd() / "alembic.ini"
    cfg = Config(str(ini))
    cfg.attributes["configure_logger"] = False
    if database_url:
        cfg.attributes["database_url"] = database_url
    return cfg


def upgrade_to_head(database_url: str | None = None) -> None:
    """Blocking: run from a thread or before the event loop starts."""
    from alembic import command

    command.upgrade(alembic_config(database_url), "head")


def downgrade_to(database_url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


@lru_cache(maxsize=1)
def head_revisions() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


async def applied_revisions(conn: AsyncConnection) -> frozenset[str]:
    try:
        rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
    except ProgrammingError:
        # No alembic_version table: nothing has been migrated yet.
        await conn.rollback()
        return frozenset()
    return frozenset(row[0] for row in rows)


async def pending_migrations(conn: AsyncConnection) -> bool:
    return await applied_revisions(conn) != head_revisions()
