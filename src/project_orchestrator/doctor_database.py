"""`orchestrator doctor`'s database and migrations checks, for an external PostgreSQL
and for the embedded one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from project_orchestrator.config import Settings, normalise_database_url
from project_orchestrator.doctor_results import (
    DATABASE_CONNECT_TIMEOUT_SECONDS,
    DATABASE_TIMEOUT_SECONDS,
    CheckResult,
    fail,
    ok,
    warn,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


def describe_database(url: str) -> tuple[str, str]:
    """("host:port", "host:port/db"), never the user or password."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host: Any = parsed.host or parsed.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = host[0] if host else "localhost"
    server = f"{host}:{parsed.port or 5432}"
    return server, f"{server}/{parsed.database or ''}"


def _root_cause(exc: BaseException) -> BaseException:
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return exc.orig.__cause__ or exc.orig
    return exc


def _database_failure(exc: BaseException, server: str, where: str) -> CheckResult:
    root = _root_cause(exc)
    kind = type(root).__name__
    running = f"check that PostgreSQL is running at {server} and that DATABASE_URL is right"
    if isinstance(root, TimeoutError):
        return fail("database", f"timed out connecting to {where}", running)
    if kind in {"InvalidPasswordError", "InvalidAuthorizationSpecificationError"}:
        return fail(
            "database",
            f"{where} refused the login",
            "check the user name and password in DATABASE_URL",
        )
    if kind == "InvalidCatalogNameError":
        return fail(
            "database",
            f"{where}: the database does not exist",
            "create it (createdb NAME) or fix the database name in DATABASE_URL",
        )
    if isinstance(root, socket.gaierror):
        return fail("database", f"unknown host in {where}", "fix the host in DATABASE_URL")
    if isinstance(root, ConnectionRefusedError):
        return fail("database", f"connection refused by {where}", running)
    return fail("database", f"cannot connect to {where} ({kind})", running)


def _revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(head revisions, every revision) of the Alembic scripts shipped with the code."""
    from alembic.script import ScriptDirectory

    from project_orchestrator.db.migrations import alembic_config, head_revisions

    script = ScriptDirectory.from_config(alembic_config())
    return head_revisions(), frozenset(s.revision for s in script.walk_revisions())


def _names(revisions: Iterable[str]) -> str:
    return ", ".join(sorted(revisions)) or "none"


async def _check_migrations(conn: AsyncConnection) -> CheckResult:
    from project_orchestrator.db.migrations import applied_revisions

    name = "migrations"
    heads, known = await asyncio.to_thread(_revisions)
    applied = await applied_revisions(conn)
    if applied == heads:
        if not heads:
            return ok(name, "no migrations defined")
        return ok(name, f"at head ({_names(heads)})")
    unknown = applied - known
    if unknown:
        return fail(
            name,
            f"database is at revision {_names(unknown)}, which this code does not know",
            "run the version of the service that migrated this database, "
            "or point DATABASE_URL at the right database",
        )
    at = f"at {_names(applied)}" if applied else "not migrated yet"
    return fail(
        name,
        f"migrations pending: database is {at}, code expects {_names(heads)}",
        "run `orchestrator migrate`",
    )


def embedded_pgdata(settings: Settings) -> Path:
    return (settings.data_dir / "postgres").resolve()


def embedded_exists(settings: Settings) -> bool:
    """With DATABASE_URL unset: whether the embedded database was created (by serve or
    migrate). Doctor then checks it for real, attaching to the server serve runs."""
    return settings.database_url is None and (embedded_pgdata(settings) / "PG_VERSION").exists()


async def check_database(
    settings: Settings, database_url: str | None
) -> tuple[CheckResult, CheckResult]:
    """The database check and the migrations check, which needs its connection."""
    if database_url is None:
        pgdata = embedded_pgdata(settings)
        return (
            warn(
                "database",
                f"DATABASE_URL is unset: embedded PostgreSQL under DATA_DIR ({pgdata}) "
                "will be used; it is not created yet",
                "set DATABASE_URL to use your own PostgreSQL server"
                if settings.is_production
                else "`orchestrator serve` (or `orchestrator migrate`) creates and migrates it",
            ),
            warn("migrations", "not checked: the embedded database is not created yet"),
        )
    skipped = warn("migrations", "not checked: the database is unreachable")
    try:
        url = normalise_database_url(database_url)
        server, where = describe_database(url)
    except Exception:
        return (
            fail(
                "database",
                "DATABASE_URL is not a valid PostgreSQL URL",
                "use postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB",
            ),
            skipped,
        )

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from project_orchestrator import SERVICE_NAME

    engine = create_async_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "timeout": DATABASE_CONNECT_TIMEOUT_SECONDS,
            "server_settings": {"application_name": f"{SERVICE_NAME}-doctor"},
        },
    )
    try:
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
                conn = await engine.connect()
                try:
                    await conn.execute(text("SELECT 1"))
                except BaseException:
                    await conn.close()
                    raise
        except Exception as exc:
            return _database_failure(exc, server, where), skipped
        try:
            database = ok("database", f"connected to {where}")
            try:
                async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
                    migrations = await _check_migrations(conn)
            except Exception as exc:
                migrations = fail(
                    "migrations",
                    f"could not read the schema version ({type(_root_cause(exc)).__name__})",
                    "check that the DATABASE_URL user may read the alembic_version table",
                )
            return database, migrations
        finally:
            await conn.close()
    finally:
        await engine.dispose()
