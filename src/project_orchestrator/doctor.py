"""`orchestrator doctor`: one line per dependency, each with ok/warn/fail and a fix.

Every check catches its own errors, so one broken dependency never hides the others.
Nothing here may print a secret: messages name settings, never their values, and
exception texts (httpx puts the request URL in them, and the Telegram token is part of
that URL) are reduced to the exception's type. A last pass redacts every configured
secret value anyway.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from project_orchestrator.config import (
    MIN_PRODUCTION_SECRET_LENGTH,
    Settings,
    database_password,
    normalise_database_url,
)
from project_orchestrator.doctor_ops import check_queue, check_rate_limit_storage
from project_orchestrator.doctor_results import (
    ANTHROPIC_VERSION,
    DATABASE_CONNECT_TIMEOUT_SECONDS,
    DATABASE_TIMEOUT_SECONDS,
    GITHUB_API_VERSION,
    HTTP_TIMEOUT_SECONDS,
    CheckResult,
    CheckStatus,
    fail,
    ok,
    safe_url,
    warn,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

_REDACTED = "[redacted]"


def _http_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {HTTP_TIMEOUT_SECONDS:g} s"
    # Only the type: httpx's text carries the URL, which may carry a token.
    return type(exc).__name__


# --- config ------------------------------------------------------------------------------


def _integrations_off(settings: Settings) -> list[tuple[str, str]]:
    off: list[tuple[str, str]] = []
    if settings.api_key is None:
        off.append(("API", "API_KEY"))
    if settings.anthropic_api_key is None:
        off.append(("AI", "ANTHROPIC_API_KEY"))
    if settings.telegram_bot_token is None:
        off.append(("Telegram", "TELEGRAM_BOT_TOKEN"))
    elif settings.telegram_mode == "off":
        off.append(("Telegram", "TELEGRAM_MODE"))
    if not settings.github_enabled:
        off.append(("GitHub", "GITHUB_ACCESS_TOKEN"))
    return off


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


# --- database and migrations -------------------------------------------------------------


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


# --- AI ----------------------------------------------------------------------------------


async def check_ai(settings: Settings, http: httpx.AsyncClient) -> CheckResult:
    name = "ai"
    key = settings.anthropic_api_key
    if key is None:
        return warn(
            name,
            "not configured (ANTHROPIC_API_KEY unset): the agent cannot answer",
            "set ANTHROPIC_API_KEY",
        )
    base = settings.anthropic_base_url.rstrip("/")
    where = safe_url(base)
    try:
        response = await http.get(
            f"{base}/v1/models",
            headers={"x-api-key": key.get_secret_value(), "anthropic-version": ANTHROPIC_VERSION},
        )
    except httpx.HTTPError as exc:
        return fail(
            name,
            f"unreachable: {where} ({_http_error(exc)})",
            "check network access to the Anthropic API and ANTHROPIC_BASE_URL",
        )
    code = response.status_code
    if code == 200:
        return ok(name, f"key accepted by {where} (model {settings.anthropic_model})")
    if code in {401, 403}:
        return fail(
            name,
            f"key rejected by {where} (HTTP {code})",
            "check ANTHROPIC_API_KEY: it may be mistyped, revoked or for another organisation",
        )
    if code == 429 or code >= 500:
        return warn(
            name,
            f"{where} answered HTTP {code} (rate limited or overloaded)",
            "try again shortly; the agent retries such errors by itself",
        )
    return fail(
        name,
        f"unexpected answer from {where}/v1/models (HTTP {code})",
        "check ANTHROPIC_BASE_URL",
    )


# --- Telegram ----------------------------------------------------------------------------


async def _bot_api(http: httpx.AsyncClient, base: str, method: str) -> tuple[int, Any]:
    response = await http.get(f"{base}/{method}")
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def _telegram_result(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict) or body.get("ok") is not True:
        return None
    result = body.get("result")
    return result if isinstance(result, dict) else None


async def check_telegram(settings: Settings, http: httpx.AsyncClient) -> CheckResult:
    name = "telegram"
    token = settings.telegram_bot_token
    if token is None:
        return warn(
            name,
            "not configured (TELEGRAM_BOT_TOKEN unset)",
            "set TELEGRAM_BOT_TOKEN to the token @BotFather gave you",
        )
    api = settings.telegram_api_base_url.rstrip("/")
    where = safe_url(api)
    # The token is part of this URL: it must never reach a message or a log line.
    base = f"{api}/bot{token.get_secret_value()}"
    try:
        code, body = await _bot_api(http, base, "getMe")
    except httpx.HTTPError as exc:
        return fail(
            name,
            f"Bot API unreachable: {where} ({_http_error(exc)})",
            "check network access to the Bot API and TELEGRAM_API_BASE_URL",
        )
    if code in {401, 404}:
        return fail(
            name,
            f"token rejected by {where} (HTTP {code})",
            "check TELEGRAM_BOT_TOKEN (@BotFather's /token shows the current one)",
        )
    me = _telegram_result(body)
    if code != 200 or me is None:
        return fail(
            name,
            f"unexpected answer from {where} getMe (HTTP {code})",
            "check TELEGRAM_API_BASE_URL",
        )
    bot = f"@{me.get('username', '?')}"
    mode = settings.telegram_mode
    if mode == "off":
        return warn(
            name,
            f"bot {bot} is valid, but TELEGRAM_MODE=off: it receives nothing",
            "set TELEGRAM_MODE=webhook (or polling in development)",
        )
    try:
        code, body = await _bot_api(http, base, "getWebhookInfo")
    except httpx.HTTPError as exc:
        return warn(name, f"bot {bot}; could not read its webhook ({_http_error(exc)})")
    info = _telegram_result(body)
    if code != 200 or info is None:
        return warn(name, f"bot {bot}; could not read its webhook (HTTP {code})")
    webhook = str(info.get("url") or "")
    if mode == "polling":
        if webhook:
            return warn(
                name,
                f"bot {bot} polls, but a webhook is set, so polling receives nothing",
                "run `orchestrator telegram delete-webhook`",
            )
        return ok(name, f"bot {bot}, polling")
    if not webhook:
        return warn(
            name,
            f"bot {bot}: no webhook is set, so no updates arrive",
            "run `orchestrator telegram set-webhook URL` with this service's public "
            "/webhooks/telegram URL",
        )
    last_error = info.get("last_error_message")
    if last_error:
        pending = info.get("pending_update_count", 0)
        return warn(
            name,
            f"bot {bot}: webhook {safe_url(webhook)} last failed: {str(last_error)[:200]} "
            f"({pending} updates pending)",
            "make sure the URL reaches this service and TELEGRAM_WEBHOOK_SECRET matches, "
            "then run `orchestrator telegram set-webhook URL` again",
        )
    return ok(name, f"bot {bot}, webhook {safe_url(webhook)}")


# --- GitHub ------------------------------------------------------------------------------


# Below this many requests left in the hour, replies will soon wait for the reset.
LOW_GITHUB_QUOTA = 100


async def check_github(settings: Settings, http: httpx.AsyncClient) -> CheckResult:
    name = "github"
    token = settings.github_access_token
    if token is None:
        return warn(
            name,
            "not configured (GITHUB_ACCESS_TOKEN unset)",
            "set GITHUB_ACCESS_TOKEN to work in GitHub issues and pull requests",
        )
    api = settings.github_api_url.rstrip("/")
    where = safe_url(api)
    try:
        response = await http.get(
            f"{api}/user",
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": GITHUB_API_VERSION,
            },
        )
    except httpx.HTTPError as exc:
        return fail(
            name,
            f"GitHub API unreachable: {where} ({_http_error(exc)})",
            "check network access to GitHub and GITHUB_API_URL",
        )
    code = response.status_code
    if code == 401:
        return fail(
            name,
            f"token rejected by {where} (HTTP 401)",
            "check GITHUB_ACCESS_TOKEN: it may be mistyped, expired or revoked",
        )
    if code == 403:
        return warn(
            name,
            f"{where}/user refused the token (HTTP 403: rate limited or not allowed)",
            "check the token's permissions and GitHub's rate limit",
        )
    if code != 200:
        return fail(
            name,
            f"unexpected answer from {where}/user (HTTP {code})",
            "check GITHUB_API_URL (GitHub Enterprise: https://HOST/api/v3)",
        )
    try:
        login = str(response.json().get("login") or "?")
    except (ValueError, AttributeError):
        login = "?"
    if not settings.github_webhook_secret:
        return warn(
            name,
            f"authenticated as {login}, but GITHUB_WEBHOOK_SECRET is unset: "
            "/webhooks/github refuses every delivery",
            "set GITHUB_WEBHOOK_SECRET to the secret of the repository's webhook",
        )
    mention = settings.github_bot_mention.lstrip("@")
    if login != "?" and mention.lower() != login.lower().removesuffix("[bot]"):
        return warn(
            name,
            f"authenticated as {login}, but GITHUB_BOT_MENTION is @{mention}: comments that "
            f"mention @{login} are ignored, and only @{mention} is answered",
            f"set GITHUB_BOT_MENTION=@{login.removesuffix('[bot]')}, the account people mention",
        )
    scopes = response.headers.get("x-oauth-scopes")
    if scopes is not None:
        granted = {s.strip() for s in scopes.split(",")}
        if not granted & {"repo", "public_repo"}:
            return warn(
                name,
                f"authenticated as {login}, but the token lacks the repo scope",
                "give the token the repo scope (or public_repo for public repositories)",
            )
    remaining = response.headers.get("x-ratelimit-remaining")
    if remaining is not None and remaining.isdigit() and int(remaining) < LOW_GITHUB_QUOTA:
        return warn(
            name,
            f"authenticated as {login}, but only {remaining} API requests are left this hour",
            "replies wait for GitHub's reset; if this is frequent, use a token with a "
            "larger quota (a GitHub App installation)",
        )
    return ok(name, f"authenticated as {login}")


# --- SCAR --------------------------------------------------------------------------------


async def check_scar(settings: Settings, http: httpx.AsyncClient) -> CheckResult:
    name = "scar"
    if settings.scar_transport == "github":
        if not settings.github_enabled:
            return fail(
                name,
                "SCAR_TRANSPORT=github, but GITHUB_ACCESS_TOKEN is unset",
                "set GITHUB_ACCESS_TOKEN, or use SCAR_TRANSPORT=http with SCAR_BASE_URL",
            )
        return ok(name, f"through GitHub comments addressed to {settings.scar_github_mention}")
    base = settings.scar_base_url.rstrip("/")
    where = safe_url(base)
    configured = "scar_base_url" in settings.model_fields_set
    try:
        health = await http.get(f"{base}/health")
    except httpx.HTTPError as exc:
        if not configured:
            return warn(
                name,
                f"SCAR_BASE_URL unset and nothing answers at the default {where} "
                f"({_http_error(exc)})",
                "set SCAR_BASE_URL to SCAR's HTTP adapter, or SCAR_TRANSPORT=github",
            )
        return fail(
            name,
            f"unreachable: {where} ({_http_error(exc)})",
            "start SCAR or fix SCAR_BASE_URL (or use SCAR_TRANSPORT=github)",
        )
    if health.status_code != 200:
        return fail(
            name,
            f"{where}/health answered HTTP {health.status_code}",
            "check that SCAR_BASE_URL points at SCAR's HTTP adapter",
        )
    try:
        concurrency = await http.get(f"{base}/health/concurrency")
    except httpx.HTTPError as exc:
        return warn(name, f"reachable at {where}; /health/concurrency failed ({_http_error(exc)})")
    if concurrency.status_code == 404:
        return warn(
            name,
            f"reachable at {where}, but it has no /health/concurrency: commands end on a "
            "quiet period instead",
            "update SCAR to a version with GET /health/concurrency",
        )
    if concurrency.status_code != 200:
        return warn(
            name, f"reachable at {where}; /health/concurrency answered {concurrency.status_code}"
        )
    try:
        active = len(concurrency.json().get("activeConversationIds") or [])
    except (ValueError, AttributeError, TypeError):
        active = 0
    return ok(name, f"reachable at {where} ({active} active conversations)")


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
