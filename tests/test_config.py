"""Settings: env names, defaults, production refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from project_orchestrator.config import Settings
from project_orchestrator.errors import ConfigurationError
from tests.support.cli import run_cli


def _settings(**env: Any) -> Settings:
    return Settings(_env_file=None, **env)


def test_development_starts_with_no_secrets() -> None:
    settings = _settings()
    settings.check_startable()
    assert settings.app_env == "development"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.telegram_mode == "off"
    assert settings.webhook_ip_filtering_enabled is False


def test_production_names_every_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("GITHUB_ACCESS_TOKEN", "ghp_example_token")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:example")
    settings = _settings()
    with pytest.raises(ConfigurationError) as caught:
        settings.check_startable()
    message = caught.value.message
    for name in ("DATABASE_URL", "API_KEY", "GITHUB_WEBHOOK_SECRET", "TELEGRAM_WEBHOOK_SECRET"):
        assert name in message
    assert "ghp_example_token" not in message


def test_production_with_its_secrets_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "APP_ENV": "production",
        "DATABASE_URL": "postgresql://u:p@db:5432/orchestrator",
        "API_KEY": "api-key-value-0123456",
        "GITHUB_ACCESS_TOKEN": "ghp_example_token",
        "GITHUB_WEBHOOK_SECRET": "webhook-secret-one,webhook-secret-two",
        "TELEGRAM_MODE": "off",
    }.items():
        monkeypatch.setenv(name, value)
    settings = _settings()
    settings.check_startable()
    assert settings.webhook_ip_filtering_enabled is True
    assert settings.database_url == "postgresql+asyncpg://u:p@db:5432/orchestrator"


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "old-secret, new-secret")
    monkeypatch.setenv("TELEGRAM_ALLOWED_USER_IDS", "1, 22,333")
    monkeypatch.setenv("GITHUB_ALLOWED_USERS", "alice,bob")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8")
    monkeypatch.setenv("WEBHOOK_IP_FILTERING_ENABLED", "true")
    monkeypatch.setenv("TELEGRAM_MODE", "webhook")
    settings = _settings()
    assert [s.get_secret_value() for s in settings.github_webhook_secret] == [
        "old-secret",
        "new-secret",
    ]
    assert settings.telegram_allowed_user_ids == [1, 22, 333]
    assert settings.github_allowed_users == ["alice", "bob"]
    assert settings.trusted_proxies == ["10.0.0.0/8"]
    assert settings.webhook_ip_filtering_enabled is True
    assert settings.telegram_mode == "webhook"
    assert "140.82.112.0/20" in settings.github_webhook_ips


def test_bad_values_are_refused_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "not-a-network")
    with pytest.raises(ValidationError, match="trusted_proxies"):
        _settings()
    monkeypatch.delenv("TRUSTED_PROXIES")
    monkeypatch.setenv("DATABASE_URL", "mysql://x@y/z")
    with pytest.raises(ValidationError, match="database_url"):
        _settings()


def test_secret_values_cover_the_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:db-pass-word@db/orchestrator")
    monkeypatch.setenv("API_KEY", "api-key-value")
    assert set(_settings().secret_values()) == {"db-pass-word", "api-key-value"}


def test_secret_values_cover_every_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "k3y")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "a,long-webhook-secret")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "1:x")
    assert set(_settings().secret_values()) == {"k3y", "a", "long-webhook-secret", "1:x"}


def test_production_refuses_short_shared_secrets_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "APP_ENV": "production",
        "DATABASE_URL": "postgresql://u:p@db:5432/orchestrator",
        "API_KEY": "short-api-key",
        "GITHUB_ACCESS_TOKEN": "ghp_example_token",
        "GITHUB_WEBHOOK_SECRET": "a-long-enough-webhook-secret,tiny-hook",
        "TELEGRAM_BOT_TOKEN": "123:example",
        "TELEGRAM_WEBHOOK_SECRET": "tg-secret",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        _settings().check_startable()
    message = caught.value.message
    assert "API_KEY" in message
    assert "GITHUB_WEBHOOK_SECRET (value 2 of 2)" in message
    assert "value 1 of 2" not in message
    assert "TELEGRAM_WEBHOOK_SECRET" in message
    assert "16 characters" in message
    for value in ("short-api-key", "tiny-hook", "tg-secret", "a-long-enough-webhook-secret"):
        assert value not in message


def test_production_names_missing_and_short_secrets_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("API_KEY", "abc")
    with pytest.raises(ConfigurationError) as caught:
        _settings().check_startable()
    assert "unset: DATABASE_URL" in caught.value.message
    assert "which these are not: API_KEY" in caught.value.message
    assert "abc" not in caught.value.message


def test_development_accepts_short_secrets() -> None:
    _settings(
        api_key="abc", github_webhook_secret="x", telegram_webhook_secret="y"
    ).check_startable()


def test_refused_values_are_not_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever was typed into a setting may be a secret pasted into the wrong place.
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8,pasted-secret-value")
    with pytest.raises(ValidationError) as caught:
        _settings()
    (error,) = caught.value.errors()
    assert "entry 2" in error["msg"]
    assert "pasted-secret-value" not in error["msg"]


def test_an_unparsable_database_url_is_a_setting_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:db-pass-word@db:not-a-port/orchestrator")
    with pytest.raises(ValidationError) as caught:
        _settings()
    (error,) = caught.value.errors()
    assert error["loc"] == ("database_url",)
    assert "db-pass-word" not in error["msg"]


def test_invalid_configuration_names_settings_never_values(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://u:db-pass-word@db:not-a-port/orchestrator",
        "GITHUB_WEBHOOK_IPS": "api-key-pasted-here",
        "TELEGRAM_ALLOWED_USER_IDS": "1,token-pasted-here",
        "APP_ENV": "staging-secret",
    }
    result = run_cli(["migrate"], env, tmp_path)
    assert result.returncode == 2
    assert "Invalid configuration" in result.stderr
    for name in ("DATABASE_URL", "GITHUB_WEBHOOK_IPS", "TELEGRAM_ALLOWED_USER_IDS", "APP_ENV"):
        assert name in result.stderr
    for value in ("db-pass-word", "api-key-pasted-here", "token-pasted-here", "staging-secret"):
        assert value not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
