"""The console script, run as an operator would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import postgres
from tests.support.cli import run_cli


def test_production_without_secrets_refuses_to_serve(tmp_path: Path) -> None:
    result = run_cli(
        ["serve"],
        {"APP_ENV": "production", "GITHUB_ACCESS_TOKEN": "ghp_should_not_echo"},
        tmp_path,
    )
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr
    assert "API_KEY" in result.stderr
    assert "GITHUB_WEBHOOK_SECRET" in result.stderr
    assert "ghp_should_not_echo" not in result.stderr + result.stdout


def test_invalid_configuration_is_named_not_echoed(tmp_path: Path) -> None:
    result = run_cli(["migrate"], {"PORT": "not-a-port"}, tmp_path)
    assert result.returncode == 2
    assert "PORT" in result.stderr


def test_migrate_brings_a_fresh_database_to_head(tmp_path: Path, pg_server_url: str) -> None:
    url = postgres.create_database(pg_server_url)
    try:
        result = run_cli(["migrate"], {"DATABASE_URL": url}, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "latest migration" in result.stdout
        again = run_cli(["migrate"], {"DATABASE_URL": url}, tmp_path)
        assert again.returncode == 0
    finally:
        postgres.drop_database(pg_server_url, url)


@pytest.mark.parametrize("command", [["--help"], ["events", "--help"]])
def test_help_lists_commands(tmp_path: Path, command: list[str]) -> None:
    result = run_cli(command, {}, tmp_path)
    assert result.returncode == 0
    assert "Usage" in result.stdout


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
def test_database_url_prints_the_form_psql_takes(tmp_path: Path, pg_server_url: str) -> None:
    url = postgres.create_database(pg_server_url)
    try:
        result = run_cli(["database-url"], {"DATABASE_URL": url}, tmp_path)
        assert result.returncode == 0, result.stderr
        printed = result.stdout.strip()
        assert printed.startswith("postgresql://")
        assert "+asyncpg" not in printed
        # The recipe as the runbook writes it: psql "$(orchestrator database-url)".
        psql = shutil.which("psql")
        assert psql is not None
        query = subprocess.run(
            [psql, printed, "-tAc", "SELECT current_database()"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert query.returncode == 0, query.stderr
        assert query.stdout.strip() == printed.rsplit("/", 1)[1].split("?")[0]
    finally:
        postgres.drop_database(pg_server_url, url)


def test_database_url_without_one_says_why(tmp_path: Path) -> None:
    result = run_cli(["database-url"], {}, tmp_path)
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr
    assert result.stdout == ""


def test_doctor_checks_the_embedded_database_once_it_exists(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    before = run_cli(["doctor"], env, tmp_path)
    assert "it is not created yet" in before.stdout
    assert "`orchestrator serve` (or `orchestrator migrate`) creates and migrates it" in (
        before.stdout
    )
    assert not (tmp_path / "data").exists()  # doctor created nothing

    made = run_cli(["migrate"], env, tmp_path)
    assert made.returncode == 0, made.stderr
    after = run_cli(["doctor"], env, tmp_path)
    lines = after.stdout.splitlines()
    for name in ("database", "migrations", "queue"):
        assert any(line.startswith("[ ok ] " + name) for line in lines), after.stdout
