"""The console script, run as an operator would."""

from __future__ import annotations

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
