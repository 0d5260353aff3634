"""`orchestrator telegram ...`: point Telegram at this service's webhook, or take it away.

Messages are for an operator at a terminal: what was done, or what to fix. Neither the
bot token nor the webhook secret ever appears in them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from telegram import Bot
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError

from project_orchestrator.config import Settings
from project_orchestrator.errors import ConfigurationError
from project_orchestrator.ingress.telegram.bot import ALLOWED_UPDATES, build_bot
from project_orchestrator.ingress.telegram.route import ROUTE

# What Telegram accepts as a secret_token; anything else it refuses with a vague 400.
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


class TelegramCommandError(Exception):
    """A failure to report as is, with a non-zero exit (2: configuration, 1: Telegram)."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def _scrub(text: str, settings: Settings) -> str:
    # python-telegram-bot quotes the token in some messages (an InvalidToken from getMe).
    for secret in (settings.telegram_bot_token, settings.telegram_webhook_secret):
        if secret is not None and secret.get_secret_value():
            text = text.replace(secret.get_secret_value(), "[redacted]")
    return text


@asynccontextmanager
async def _connected(settings: Settings) -> AsyncIterator[Bot]:
    """The bot, its token checked (getMe), Bot API failures turned into plain messages."""
    try:
        bot = build_bot(settings)
    except ConfigurationError as exc:
        raise TelegramCommandError(exc.message, exit_code=2) from None
    try:
        async with bot:
            yield bot
    except InvalidToken:
        raise TelegramCommandError(
            "Telegram rejected TELEGRAM_BOT_TOKEN; check it (@BotFather's /token shows it) "
            "and that TELEGRAM_API_BASE_URL is the Bot API.",
            exit_code=2,
        ) from None
    except BadRequest as exc:
        # A NetworkError to python-telegram-bot, but Telegram did answer: it said no.
        raise TelegramCommandError(f"Telegram refused: {_scrub(exc.message, settings)}") from None
    except NetworkError as exc:
        raise TelegramCommandError(
            f"Could not reach the Bot API at {settings.telegram_api_base_url}: "
            f"{_scrub(exc.message, settings)}"
        ) from None
    except TelegramError as exc:
        raise TelegramCommandError(f"Telegram refused: {_scrub(exc.message, settings)}") from None


def _check_url(url: str, *, insecure: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise TelegramCommandError(
            f"{url!r} is not a URL; give the public address of this service's {ROUTE}, "
            "e.g. https://bot.example.com/webhooks/telegram",
            exit_code=2,
        )
    if parts.scheme != "https" and not insecure:
        raise TelegramCommandError(
            "Telegram delivers webhooks only to https:// URLs; use --insecure to allow "
            "http:// for local testing.",
            exit_code=2,
        )


def _webhook_secret(settings: Settings) -> str:
    secret = settings.telegram_webhook_secret
    if secret is None:
        raise TelegramCommandError(
            "TELEGRAM_WEBHOOK_SECRET is not set. Without it the webhook route refuses every "
            "update: set it (1-256 characters of A-Z, a-z, 0-9, _ and -) and run this again.",
            exit_code=2,
        )
    value = secret.get_secret_value()
    if not _SECRET_TOKEN.fullmatch(value):
        raise TelegramCommandError(
            "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and - "
            "(Telegram refuses any other); choose another and run this again.",
            exit_code=2,
        )
    return value


async def set_webhook(
    settings: Settings, url: str, *, insecure: bool, drop_pending: bool
) -> list[str]:
    """Register `url` with Telegram; the lines to print."""
    _check_url(url, insecure=insecure)
    secret = _webhook_secret(settings)
    async with _connected(settings) as bot:
        await bot.set_webhook(
            url=url,
            secret_token=secret,
            allowed_updates=ALLOWED_UPDATES,
            drop_pending_updates=drop_pending,
        )
        name = bot.username
    lines = [
        f"Webhook of @{name} set to {url}",
        f"  updates: {', '.join(ALLOWED_UPDATES)}",
        "  secret token: TELEGRAM_WEBHOOK_SECRET (sent as X-Telegram-Bot-Api-Secret-Token)",
    ]
    if drop_pending:
        lines.append("  pending updates: dropped")
    if not urlsplit(url).path.rstrip("/").endswith(ROUTE):
        lines.append(f"  note: this service receives updates at {ROUTE}; is the path right?")
    return lines


async def delete_webhook(settings: Settings, *, drop_pending: bool) -> list[str]:
    async with _connected(settings) as bot:
        await bot.delete_webhook(drop_pending_updates=drop_pending)
        name = bot.username
    kept = "dropped" if drop_pending else "kept (polling will fetch them)"
    return [
        f"Webhook of @{name} deleted; pending updates {kept}.",
        "  Updates now wait for getUpdates (TELEGRAM_MODE=polling).",
    ]


async def webhook_info(settings: Settings) -> list[str]:
    async with _connected(settings) as bot:
        info = await bot.get_webhook_info()
        name = bot.username
    lines = [
        f"bot: @{name}",
        f"url: {info.url or '(none: updates wait for getUpdates, i.e. polling)'}",
        f"pending_update_count: {info.pending_update_count}",
        f"last_error_message: {info.last_error_message or '(none)'}",
    ]
    if info.last_error_date is not None:
        lines.append(f"last_error_date: {info.last_error_date.isoformat()}")
    if info.allowed_updates:
        lines.append(f"allowed_updates: {', '.join(info.allowed_updates)}")
    return lines
