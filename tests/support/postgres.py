"""A real PostgreSQL for the tests: TEST_DATABASE_URL, else 127.0.0.1:5432, else embedded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

LOCAL_SERVER_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
_embedded: Any = None


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def start_embedded_server() -> str:
    """An embedded PostgreSQL in a temporary directory, stopped when the tests exit."""
    global _embedded
    import pgserver

    pgdata = Path(tempfile.mkdtemp(prefix="orchestrator-test-pg-"))
    _embedded = pgserver.get_server(pgdata, cleanup_mode="delete")  # type: ignore[attr-defined]
    socket_dir = _embedded.get_postmaster_info().socket_dir
    return f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"


def admin_url() -> str:
    """URL of a maintenance database on a server the tests may create databases in."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        from project_orchestrator.config import normalise_database_url

        return normalise_database_url(explicit)
    if asyncio.run(_answers(LOCAL_SERVER_URL)):
        return LOCAL_SERVER_URL
    return start_embedded_server()


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _execute_admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(server_url: str, prefix: str = "orchestrator_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute_admin(server_url, f'CREATE DATABASE "{name}"'))
    return with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    name = make_url(database_url).database
    asyncio.run(_execute_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class RestartablePostgres:
    """A private embedded server the tests may stop and start (for outage tests)."""

    def __init__(self) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]
        from pgserver.postgres_server import get_server

        self._pg_ctl = pg_ctl
        self.pgdata = Path(tempfile.mkdtemp(prefix="orchestrator-outage-pg-"))
        self._server = get_server(self.pgdata, cleanup_mode="delete")
        info = self._server.get_postmaster_info()
        self.socket_dir = info.socket_dir
        self.url = f"postgresql+asyncpg://postgres@/postgres?host={self.socket_dir}"

    def stop(self) -> None:
        self._pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=self.pgdata, user=self._user)

    def start(self) -> None:
        args = ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}"]
        args += ["-l", str(self.pgdata / "log"), "start"]
        self._pg_ctl(args, pgdata=self.pgdata, user=self._user, timeout=30)

    def close(self) -> None:
        # pgserver's cleanup only knows the first postmaster; after a restart the running
        # one is ours to stop, or it outlives the test with its data directory deleted.
        with contextlib.suppress(Exception):
            self.stop()
        self._server.cleanup()

    @property
    def _user(self) -> str | None:
        return self._server.system_user
