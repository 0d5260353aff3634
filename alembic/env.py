"""Alembic environment: async engine, our metadata, URL from settings."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from project_orchestrator.db.models import metadata

config = context.config

# Our CLI configures logging itself; only the bare `alembic` command uses the ini's.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata

# The job queue's tables belong to pgqueuer; our migrations install them, but they are
# not SQLAlchemy models, so the drift check must not report them as extra.
QUEUE_TABLE_PREFIX = "pgqueuer"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name is not None and name.startswith(QUEUE_TABLE_PREFIX))


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from project_orchestrator.config import get_settings

    settings = get_settings()
    if settings.database_url:
        return settings.database_url
    from project_orchestrator.db.embedded import EmbeddedPostgres

    return EmbeddedPostgres(settings.data_dir).start()


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        include_name=include_name,
        # One transaction for the whole upgrade: a failed migration leaves nothing half-done.
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    connectable = create_async_engine(_database_url(), poolclass=pool.NullPool)
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
