"""`orchestrator doctor`'s checks of the peers: Telegram, GitHub and SCAR.

Exception texts are reduced to their type (`http_error`): httpx puts the request URL in
them, and the Telegram token is part of that URL.
"""

from __future__ import annotations

from typing import Any

import httpx

from project_orchestrator.config import Settings
from project_orchestrator.doctor_results import (
    GITHUB_API_VERSION,
    CheckResult,
    fail,
    http_error,
    ok,
    safe_url,
    warn,
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
            f"Bot API unreachable: {where} ({http_error(exc)})",
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
        return warn(name, f"bot {bot}; could not read its webhook ({http_error(exc)})")
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
            f"GitHub API unreachable: {where} ({http_error(exc)})",
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
                f"({http_error(exc)})",
                "set SCAR_BASE_URL to SCAR's HTTP adapter, or SCAR_TRANSPORT=github",
            )
        return fail(
            name,
            f"unreachable: {where} ({http_error(exc)})",
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
        return warn(name, f"reachable at {where}; /health/concurrency failed ({http_error(exc)})")
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
