"""`orchestrator backup` and `orchestrator restore`: pg_dump's custom format, both ways.

The binaries are the newest at hand: the PostgreSQL 16 client tools that come with the
embedded server (pgserver), or the system's when those are newer. pg_dump refuses a
server newer than itself, and the embedded server is 16 where the system client may be 15.
A restore refuses a database that already holds tables unless told `force`; then it
replaces what the dump holds (`--clean --if-exists`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from project_orchestrator.db.raw import asyncpg_dsn

_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")


class BackupError(Exception):
    """Said to the operator as it is; exit code 1 (2 for a refusal they can override)."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Tools:
    pg_dump: str
    pg_restore: str
    major: int


def _major(binary: str) -> int:
    # A PostgreSQL binary located above, run without a shell.
    found = _VERSION.search(
        subprocess.run(  # noqa: S603
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    )
    return int(found.group(1)) if found else 0


def client_tools() -> Tools:
    """The newest pg_dump/pg_restore pair available (embedded server's or the system's)."""
    candidates: list[Tools] = []
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (bundled / "pg_dump").exists() and (bundled / "pg_restore").exists():
            dump = str(bundled / "pg_dump")
            candidates.append(Tools(dump, str(bundled / "pg_restore"), _major(dump)))
    except ImportError:
        pass
    system_dump, system_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    if system_dump and system_restore:
        candidates.append(Tools(system_dump, system_restore, _major(system_dump)))
    if not candidates:
        raise BackupError("pg_dump and pg_restore were not found: install PostgreSQL's client.")
    return max(candidates, key=lambda tools: tools.major)


def _run(command: list[str]) -> None:
    # A PostgreSQL binary located by client_tools, run without a shell.
    done = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, timeout=3600, check=False
    )
    if done.returncode != 0:
        # Its own words, minus any password in a connection string it echoes.
        message = re.sub(r"://[^@\s]*@", "://", done.stderr.strip())[-2000:]
        raise BackupError(f"{Path(command[0]).name} failed: {message}")


def backup(database_url: str, target: Path) -> Path:
    tools = client_tools()
    target.parent.mkdir(parents=True, exist_ok=True)
    dsn = asyncpg_dsn(database_url)
    _run([tools.pg_dump, "--format=custom", "--no-owner", "-f", str(target), dsn])
    return target


async def user_tables(database_url: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
                "('pg_catalog', 'information_schema')"
            )
        )
    finally:
        await connection.close()


def restore(database_url: str, source: Path, *, tables_there: int, force: bool) -> None:
    if not source.is_file():
        raise BackupError(f"{source} is not a file.")
    if tables_there and not force:
        raise BackupError(
            f"The database is not empty ({tables_there} tables): restoring would replace "
            "them. Restore into an empty database, or add --force to replace its contents.",
            exit_code=2,
        )
    tools = client_tools()
    command = [tools.pg_restore, "--no-owner", "--exit-on-error", "-d", asyncpg_dsn(database_url)]
    if force:
        command[1:1] = ["--clean", "--if-exists"]
    _run([*command, str(source)])


def default_name(now: datetime | None = None) -> Path:
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return Path(f"orchestrator-{moment}.dump")
