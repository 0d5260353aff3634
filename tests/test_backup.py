"""`orchestrator backup` and `orchestrator restore`, run as an operator would: a round trip
that keeps every row of every table, a restore that will not overwrite by accident, and
the embedded database (PostgreSQL 16) dumped with matching client tools."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from project_orchestrator.db.raw import asyncpg_dsn
from tests.support import postgres
from tests.support.cli import run_cli


async def _counts(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        counts = {}
        for table in tables:
            # Names read from the catalogue, quoted: not input from anyone.
            query = f'SELECT count(*) FROM "{table["tablename"]}"'  # noqa: S608
            counts[table["tablename"]] = int(await connection.fetchval(query))
        return counts
    finally:
        await connection.close()


async def _fill(url: str) -> None:
    """A little of everything a project leaves behind."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        owner = await connection.fetchval(
            "INSERT INTO identities (github_login) VALUES ('ada') RETURNING id"
        )
        project = await connection.fetchval(
            "INSERT INTO projects (name, owner_id, ai_tokens_used) VALUES ('Shop', $1, 42) "
            "RETURNING id",
            owner,
        )
        await connection.execute(
            "INSERT INTO ai_usage (project_id, model, input_tokens, output_tokens) "
            "SELECT $1, 'claude-sonnet-4-6', n, n FROM generate_series(1, 25) AS n",
            project,
        )
    finally:
        await connection.close()


@pytest.fixture
def databases(pg_server_url: str) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for url in made:
        postgres.drop_database(pg_server_url, url)


def test_a_backup_restores_every_row_and_a_full_database_is_not_overwritten_by_accident(
    tmp_path: Path, pg_server_url: str, databases: list[str]
) -> None:
    source = postgres.create_database(pg_server_url)
    target = postgres.create_database(pg_server_url)
    databases += [source, target]
    assert run_cli(["migrate"], {"DATABASE_URL": source}, tmp_path).returncode == 0
    asyncio.run(_fill(source))
    dump = tmp_path / "backups" / "shop.dump"

    made = run_cli(["backup", str(dump)], {"DATABASE_URL": source}, tmp_path)
    assert made.returncode == 0, made.stderr
    assert f"Backed up to {dump}" in made.stdout
    assert dump.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format

    restored = run_cli(["restore", str(dump)], {"DATABASE_URL": target}, tmp_path)
    assert restored.returncode == 0, restored.stderr
    expected = asyncio.run(_counts(source))
    assert expected["ai_usage"] == 25
    assert expected["projects"] == 1
    assert expected["alembic_version"] == 1
    assert asyncio.run(_counts(target)) == expected

    # Again, onto the database that now holds it: refused, unless --force.
    again = run_cli(["restore", str(dump)], {"DATABASE_URL": target}, tmp_path)
    assert again.returncode == 2
    assert "not empty" in again.stderr
    assert "--force" in again.stderr
    forced = run_cli(["restore", str(dump), "--force"], {"DATABASE_URL": target}, tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert asyncio.run(_counts(target)) == expected


def test_the_embedded_database_is_backed_up_with_matching_tools(
    tmp_path: Path, pg_server_url: str, databases: list[str]
) -> None:
    embedded = {"DATA_DIR": str(tmp_path / "data")}
    assert run_cli(["migrate"], embedded, tmp_path).returncode == 0
    dump = tmp_path / "embedded.dump"
    made = run_cli(["backup", str(dump)], embedded, tmp_path)
    assert made.returncode == 0, made.stderr
    target = postgres.create_database(pg_server_url)
    databases.append(target)
    restored = run_cli(["restore", str(dump)], {"DATABASE_URL": target}, tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert asyncio.run(_counts(target))["alembic_version"] == 1


def test_restoring_a_file_that_is_not_there_says_so_and_starts_nothing(tmp_path: Path) -> None:
    result = run_cli(["restore", str(tmp_path / "missing.dump")], {}, tmp_path)
    assert result.returncode == 1
    assert "is not a file" in result.stderr
    assert not (tmp_path / "data").exists()
