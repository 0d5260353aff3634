"""`orchestrator doctor`: one line per dependency, each with ok/warn/fail and a fix.

Every check catches its own errors, so one broken dependency never hides the others.
Nothing here may print a secret: messages name settings, never their values, and
exception texts (httpx puts the request URL in them, and the Telegram token is part of
that URL) are reduced to the exception's type. A last pass redacts every configured
secret value anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx

from project_orchestrator.config import (
    MIN_PRODUCTION_SECRET_LENGTH,
    Settings,
    database_password,
)
from project_orchestrator.doctor_ai import check_ai
from project_orchestrator.doctor_database import check_database
from project_orchestrator.doctor_ops import check_queue, check_rate_limit_storage
from project_orchestrator.doctor_peers import check_github, check_scar, check_telegram
from project_orchestrator.doctor_results import (
    HTTP_TIMEOUT_SECONDS,
    CheckResult,
    CheckStatus,
    fail,
    ok,
    warn,
)

if TYPE_CHECKING:
    pass

_REDACTED = "[redacted]"


# --- config ------------------------------------------------------------------------------


def _integrations_off(settings: Settings) -> list[tuple[str, str]]:
    off: list[tuple[str, str]] = []
    if settings.api_key is None:
        off.append(("API", "API_KEY"))
    if not settings.ai_configured:
        off.append(("AI", "ANTHROPIC_API_KEY"))
    if settings.telegram_bot_token is None:
        off.append(("Telegram", "TELEGRAM_BOT_TOKEN"))
    elif settings.telegram_mode == "off":
        off.append(("Telegram", "TELEGRAM_MODE"))
    if not settings.github_enabled:
        off.append(("GitHub", "GITHUB_ACCESS_TOKEN"))
    return off


def _half_set_pages(settings: Settings) -> str | None:
    """Project pages need both settings; one alone means someone meant to turn them on."""
    address, key = settings.public_base_url is not None, settings.page_link_secret is not None
    if address == key:
        return None
    given, missing = (
        ("PUBLIC_BASE_URL", "PAGE_LINK_SECRET")
        if address
        else (
            "PAGE_LINK_SECRET",
            "PUBLIC_BASE_URL",
        )
    )
    return f"project pages are off: {given} is set but {missing} is not, so /page sends no link"


def check_config(settings: Settings) -> CheckResult:
    name = "config"
    if settings.is_production:
        missing = settings.missing_production_secrets()
        if missing:
            listed = ", ".join(missing)
            return fail(
                name,
                f"production is missing required settings: {listed}",
                f"set {listed}; `orchestrator serve` refuses to start without them",
            )
        short = settings.short_production_secrets()
        if short:
            listed = ", ".join(short)
            return fail(
                name,
                f"production secrets shorter than {MIN_PRODUCTION_SECRET_LENGTH} characters: "
                + listed,
                "use longer ones (e.g. `openssl rand -hex 32`); `orchestrator serve` refuses "
                "to start with these",
            )
        if settings.telegram_mode != "off" and not settings.telegram_allowed_user_ids:
            return warn(
                name,
                "production; TELEGRAM_ALLOWED_USER_IDS is empty, so nobody may use the bot",
                "set TELEGRAM_ALLOWED_USER_IDS to the Telegram user ids allowed to talk to it",
            )
    if settings.run_stuck_after_seconds <= settings.scar_timeout_seconds:
        return warn(
            name,
            f"RUN_STUCK_AFTER_SECONDS ({settings.run_stuck_after_seconds:g}) is not above "
            f"SCAR_TIMEOUT_SECONDS ({settings.scar_timeout_seconds:g}): a build whose SCAR "
            "command is still within its time would count as stuck",
            "set RUN_STUCK_AFTER_SECONDS above SCAR_TIMEOUT_SECONDS (defaults 3600 and 1800)",
        )
    half = _half_set_pages(settings)
    if half is not None:
        return warn(name, half, "set both PUBLIC_BASE_URL and PAGE_LINK_SECRET, or neither")
    off = _integrations_off(settings)
    if not off:
        return ok(name, f"{settings.app_env}; API, AI, Telegram and GitHub configured")
    described = ", ".join(
        f"{what} ({setting}=off)" if setting == "TELEGRAM_MODE" else f"{what} ({setting} unset)"
        for what, setting in off
    )
    unset = [setting for _, setting in off if setting != "TELEGRAM_MODE"]
    hint = (
        f"set {', '.join(unset)} to turn {'it' if len(unset) == 1 else 'them'} on"
        if unset
        else None
    )
    if any(setting == "TELEGRAM_MODE" for _, setting in off):
        extra = "set TELEGRAM_MODE=polling or webhook for Telegram"
        hint = f"{hint}; {extra}" if hint else extra
    return warn(name, f"{settings.app_env}; off: {described}", hint)


# --- running and rendering ---------------------------------------------------------------


async def _guarded(name: str, check: Awaitable[CheckResult]) -> CheckResult:
    try:
        return await check
    except Exception as exc:
        return fail(name, f"the check itself failed ({type(exc).__name__})")


async def _guarded_database(
    settings: Settings, database_url: str | None
) -> tuple[CheckResult, CheckResult]:
    try:
        return await check_database(settings, database_url)
    except Exception as exc:
        return (
            fail("database", f"the check itself failed ({type(exc).__name__})"),
            warn("migrations", "not checked: the database check failed"),
        )


def _redact(result: CheckResult, secrets: list[str]) -> CheckResult:
    message, hint = result.message, result.hint
    for secret in secrets:
        message = message.replace(secret, _REDACTED)
        if hint is not None:
            hint = hint.replace(secret, _REDACTED)
    return replace(result, message=message, hint=hint)


async def run_checks(settings: Settings, database_url: str | None = None) -> list[CheckResult]:
    """Config, database, migrations, queue, rate-limit, ai, telegram, github, scar: always
    in that order."""

    url = database_url or settings.database_url
    try:
        config = check_config(settings)
    except Exception as exc:
        config = fail("config", f"the check itself failed ({type(exc).__name__})")
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False) as http:
        (database, migrations), ai, telegram, github, scar = await asyncio.gather(
            _guarded_database(settings, url),
            _guarded("ai", check_ai(settings, http)),
            _guarded("telegram", check_telegram(settings, http)),
            _guarded("github", check_github(settings, http)),
            _guarded("scar", check_scar(settings, http)),
        )
    secrets = list(settings.secret_values())
    try:
        password = database_password(url)
    except Exception:
        password = None
    if password:
        secrets.append(password)
    secrets.sort(key=len, reverse=True)
    if url is None:
        queue = warn("queue", "not checked: the embedded database is not created yet")
    elif database.status is not CheckStatus.OK:
        queue = warn("queue", "not checked: the database is unreachable")
    elif migrations.status is not CheckStatus.OK:
        queue = warn("queue", "not checked: the schema is not at this release's version")
    else:
        queue = await _guarded("queue", check_queue(url))
    rate_limit = await _guarded("rate-limit", check_rate_limit_storage(settings))
    results = [config, database, migrations, queue, rate_limit, ai, telegram, github, scar]
    return [_redact(r, secrets) for r in results]


_LABELS = {CheckStatus.OK: "[ ok ]", CheckStatus.WARN: "[warn]", CheckStatus.FAIL: "[FAIL]"}


def render(results: Iterable[CheckResult]) -> str:
    results = list(results)
    width = max((len(r.name) for r in results), default=0)
    lines: list[str] = []
    for result in results:
        lines.append(f"{_LABELS[result.status]} {result.name.ljust(width)}  {result.message}")
        if result.hint:
            lines.append(f"{' ' * 7}fix: {result.hint}")
    return "\n".join(lines)


def exit_code(results: Iterable[CheckResult]) -> int:
    return 1 if any(r.status is CheckStatus.FAIL for r in results) else 0
