"""Settings: env names, defaults, production refusal."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from project_orchestrator.config import Settings
from project_orchestrator.errors import ConfigurationError


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
        "API_KEY": "api-key-value",
        "GITHUB_ACCESS_TOKEN": "ghp_example_token",
        "GITHUB_WEBHOOK_SECRET": "one,two",
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
