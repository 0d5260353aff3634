"""Settings read from the environment (names fixed by CONTRACT.md)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from project_orchestrator.errors import ConfigurationError

# GitHub's published `hooks` ranges (GET https://api.github.com/meta); operators can
# override them with GITHUB_WEBHOOK_IPS when GitHub publishes new ones.
GITHUB_HOOKS_RANGES = (
    "192.30.252.0/22",
    "185.199.108.0/22",
    "140.82.112.0/20",
    "143.55.64.0/20",
    "2a0a:a440::/29",
    "2606:50c0::/32",
)

# The API key and webhook secrets are shared with callers and checked on every request;
# shorter than this they could be guessed, so production refuses them.
MIN_PRODUCTION_SECRET_LENGTH = 16

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    app_env: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    database_url: str | None = None
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=5, ge=0)
    # Where the embedded PostgreSQL keeps its files when DATABASE_URL is unset.
    data_dir: Path = Path("data")

    api_key: SecretStr | None = None

    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_model: str = "claude-sonnet-4-6"
    # Without Claude: a self-hosted model behind an OpenAI-compatible /v1/chat/completions
    # (vLLM, llama.cpp server, Ollama). LLM_BASE_URL is the URL up to and including /v1.
    llm_provider: Literal["anthropic", "openai-compatible"] = "anthropic"
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    # Where the agent stops and asks the owner to raise the budget (/budget <tokens>):
    # the project in all, and one build (from its start to its end).
    ai_max_tokens_per_project: int = Field(default=2_000_000, ge=1)
    ai_max_tokens_per_run: int = Field(default=1_000_000, ge=1)
    # US dollars per million tokens, by model name or prefix, over the published Claude
    # prices: {"my-model": {"input": 1.0, "output": 2.0}} (cache_read, cache_write too).
    ai_prices: dict[str, dict[str, float]] = {}
    # A turn that finds the AI unavailable tries again by itself, with backoff, this long.
    ai_retry_window_seconds: int = Field(default=1800, ge=0, le=86_400)

    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org"
    telegram_mode_setting: Literal["webhook", "polling", "off"] | None = Field(
        default=None, validation_alias="TELEGRAM_MODE"
    )
    telegram_webhook_secret: SecretStr | None = None
    telegram_allowed_user_ids: Annotated[list[int], NoDecode] = []

    github_access_token: SecretStr | None = None
    github_api_url: str = "https://api.github.com"
    github_webhook_secret: Annotated[list[SecretStr], NoDecode] = []
    github_bot_mention: str = "@orchestrator"
    github_allowed_users: CommaList = []

    webhook_ip_filtering_setting: bool | None = Field(
        default=None, validation_alias="WEBHOOK_IP_FILTERING_ENABLED"
    )
    github_webhook_ips: CommaList = list(GITHUB_HOOKS_RANGES)
    trusted_proxies: CommaList = []
    default_rate_limit: str = "100/minute"
    rate_limit_storage_uri: str = "memory://"

    scar_transport: Literal["http", "github"] = "http"
    scar_base_url: str = "http://127.0.0.1:3000"
    scar_timeout_seconds: float = Field(default=1800.0, gt=0)
    scar_github_mention: str = "@scar"
    # How often a running SCAR command is checked for completion.
    scar_poll_interval_seconds: float = Field(default=2.0, gt=0, le=60)
    # SCAR reports every failure of its AI (Claude Code exiting) in one text that cannot
    # tell a blip from an outage, so such a command is sent again this many times.
    scar_ai_retries: int = Field(default=3, ge=0, le=20)
    # The first of those retries waits this long; each next one waits twice as long.
    scar_ai_retry_backoff_seconds: float = Field(default=10.0, ge=0, le=600)

    # A running run (not waiting for a person, not on hold) that changed nothing for this
    # long counts in workflow_runs_stuck. Keep it above SCAR_TIMEOUT_SECONDS: a command
    # still inside its time is working, not stuck.
    run_stuck_after_seconds: float = Field(default=3600.0, gt=0)
    # Red checks on the pull request send SCAR to fix them this many times by itself;
    # the next red reading asks the person (an error-resolution gate).
    run_max_fix_attempts: int = Field(default=3, ge=0, le=20)
    # Waiting for checks: webhooks (check_suite, check_run, status) wake the run at once;
    # GitHub is asked again this often in case a webhook never comes.
    run_checks_poll_seconds: float = Field(default=60.0, gt=0, le=3600)

    # Where a repository is created for a project that has none (a user or organisation).
    github_repo_owner: str | None = None
    github_repo_private: bool = True

    audit_log_path: Path = Path("logs/audit.log")

    # Where people reach this service (https://orchestrator.example.com), for the links it
    # sends; and the key that signs a project page's link (rotating it revokes them all).
    public_base_url: str | None = None
    page_link_secret: SecretStr | None = None
    page_link_ttl_seconds: int = Field(default=7 * 86_400, ge=60, le=366 * 86_400)

    # API processes `orchestrator serve` runs on its port (the worker then runs apart).
    api_processes: int = Field(default=1, ge=1, le=64, validation_alias="WEB_CONCURRENCY")

    worker_concurrency: int = Field(default=8, ge=1, le=256)
    # A job whose worker sends no heartbeat for this long is taken over by another worker.
    worker_heartbeat_timeout_seconds: float = Field(default=30.0, gt=0)
    worker_drain_timeout_seconds: float = Field(default=30.0, ge=0)
    # `orchestrator worker` serves /metrics on this port (0: none), for what only
    # workers count: jobs, SCAR durations, AI tokens, conversations.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    @field_validator(
        "telegram_allowed_user_ids",
        "github_webhook_secret",
        "github_allowed_users",
        "github_webhook_ips",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator(
        "database_url",
        "api_key",
        "anthropic_api_key",
        "llm_base_url",
        "llm_api_key",
        "llm_model",
        "public_base_url",
        "page_link_secret",
        "telegram_bot_token",
        "telegram_webhook_secret",
        "github_access_token",
        "github_repo_owner",
        "telegram_mode_setting",
        "webhook_ip_filtering_setting",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("github_webhook_ips", "trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for position, cidr in enumerate(value, start=1):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                # The entry's position, not its text: errors are printed, and whatever
                # was typed into a setting may be a secret pasted in the wrong place.
                raise ValueError(f"entry {position} is not an IP network in CIDR form") from None
        return value

    @field_validator("ai_prices")
    @classmethod
    def _valid_prices(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        known = {"input", "output", "cache_read", "cache_write"}
        for model, price in value.items():
            if not model.strip():
                raise ValueError("a model name in AI_PRICES is empty")
            if not {"input", "output"} <= price.keys() or not price.keys() <= known:
                raise ValueError(
                    f"AI_PRICES[{model!r}] needs input and output (and may have cache_read, "
                    "cache_write), in US dollars per million tokens"
                )
            if any(amount < 0 for amount in price.values()):
                raise ValueError(f"AI_PRICES[{model!r}] has a negative price")
        return value

    @field_validator("rate_limit_storage_uri")
    @classmethod
    def _known_rate_limit_store(cls, value: str) -> str:
        if value != "memory://" and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be memory:// or a redis:// (rediss://) URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = normalise_database_url(value)
        try:
            database_password(url)
        except Exception:
            # SQLAlchemy's parse errors may quote parts of the URL; found here, the mistake
            # is reported by name like any other setting's, not as a traceback later.
            raise ValueError("not a valid URL (postgresql://user:pass@host:5432/db)") from None
        return url

    @model_validator(mode="after")
    def _provider_complete(self) -> Settings:
        if self.llm_provider == "openai-compatible":
            unset = [
                name
                for name, value in (
                    ("LLM_BASE_URL", self.llm_base_url),
                    ("LLM_MODEL", self.llm_model),
                )
                if value is None
            ]
            if unset:
                raise ValueError(
                    "LLM_PROVIDER=openai-compatible needs "
                    + " and ".join(unset)
                    + " (e.g. http://127.0.0.1:11434/v1 and the model's name)"
                )
        return self

    @field_validator("public_base_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be the service's address, starting with https://")
        return value.rstrip("/") if value is not None else None

    @property
    def ai_configured(self) -> bool:
        """Whether the agent has a model to talk to."""
        if self.llm_provider == "openai-compatible":
            return True  # the validator made sure of its URL and model
        return self.anthropic_api_key is not None

    @property
    def ai_model(self) -> str:
        """The model's name as the ledger and the price list know it."""
        if self.llm_provider == "openai-compatible" and self.llm_model is not None:
            return self.llm_model
        return self.anthropic_model

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def telegram_mode(self) -> Literal["webhook", "polling", "off"]:
        if self.telegram_mode_setting is not None:
            return self.telegram_mode_setting
        if self.is_production:
            return "webhook"
        return "polling" if self.telegram_bot_token else "off"

    @property
    def webhook_ip_filtering_enabled(self) -> bool:
        if self.webhook_ip_filtering_setting is not None:
            return self.webhook_ip_filtering_setting
        return self.is_production

    @property
    def github_enabled(self) -> bool:
        """GitHub is in use once the service can act on it (it has an access token)."""
        return self.github_access_token is not None

    def missing_production_secrets(self) -> list[str]:
        missing: list[str] = []
        if self.database_url is None:
            missing.append("DATABASE_URL")
        if self.api_key is None:
            missing.append("API_KEY")
        if self.github_enabled and not self.github_webhook_secret:
            missing.append("GITHUB_WEBHOOK_SECRET")
        if (
            self.telegram_mode == "webhook"
            and self.telegram_bot_token is not None
            and self.telegram_webhook_secret is None
        ):
            missing.append("TELEGRAM_WEBHOOK_SECRET")
        return missing

    def short_production_secrets(self) -> list[str]:
        """The shared secrets too short to resist guessing, by setting name (never value)."""
        short: list[str] = []
        if self.api_key is not None and _too_short(self.api_key):
            short.append("API_KEY")
        secrets = self.github_webhook_secret
        for position, secret in enumerate(secrets, start=1):
            if _too_short(secret):
                # Which of several comma-separated values, so the operator knows which one.
                which = f" (value {position} of {len(secrets)})" if len(secrets) > 1 else ""
                short.append(f"GITHUB_WEBHOOK_SECRET{which}")
        if self.telegram_webhook_secret is not None and _too_short(self.telegram_webhook_secret):
            short.append("TELEGRAM_WEBHOOK_SECRET")
        if self.page_link_secret is not None and _too_short(self.page_link_secret):
            short.append("PAGE_LINK_SECRET")
        return short

    def check_startable(self) -> None:
        """Refuse to run production without its secrets, or with guessable ones, naming
        every setting at fault (never its value)."""
        if not self.is_production:
            return
        needs: list[str] = []
        missing = self.missing_production_secrets()
        if missing:
            needs.append("these settings, which are unset: " + ", ".join(missing))
        short = self.short_production_secrets()
        if short:
            needs.append(
                f"secrets of at least {MIN_PRODUCTION_SECRET_LENGTH} characters, which these"
                " are not: " + ", ".join(short)
            )
        if needs:
            raise ConfigurationError("APP_ENV=production needs " + "; and ".join(needs))

    def secret_values(self) -> list[str]:
        """Every configured secret, so writers can make sure none leaks."""
        candidates: list[SecretStr | None] = [
            self.api_key,
            self.anthropic_api_key,
            self.llm_api_key,
            self.page_link_secret,
            self.telegram_bot_token,
            self.telegram_webhook_secret,
            self.github_access_token,
            *self.github_webhook_secret,
        ]
        values = [c.get_secret_value() for c in candidates if c is not None]
        password = database_password(self.database_url)
        if password:
            values.append(password)
        # Every length: a short secret is still a secret (production refuses the short
        # shared ones, but development runs with whatever it is given).
        return [v for v in values if v]


def _too_short(secret: SecretStr) -> bool:
    return len(secret.get_secret_value()) < MIN_PRODUCTION_SECRET_LENGTH


def normalise_database_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if not url.startswith("postgresql+asyncpg://"):
        raise ValueError("DATABASE_URL must start with postgresql+asyncpg:// or postgresql://")
    return url


def database_password(url: str | None) -> str | None:
    if not url:
        return None
    from sqlalchemy.engine import make_url

    return make_url(url).password


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
