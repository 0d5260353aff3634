"""The python-telegram-bot client, pointed at TELEGRAM_API_BASE_URL with explicit timeouts."""

from __future__ import annotations

from telegram import Bot
from telegram.request import HTTPXRequest

from project_orchestrator.config import Settings
from project_orchestrator.errors import ConfigurationError

# What the bot listens to: chat messages and button presses. Everything else Telegram
# could send (edits, reactions, member changes) has no meaning here, so it is not asked for.
ALLOWED_UPDATES = ["message", "callback_query"]

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
# getUpdates holds the connection open for its long-poll timeout, and python-telegram-bot
# adds that timeout to the request's read timeout: this is the slack on top, so a 25 s poll
# gives up after 30 s when the connection died silently.
LONG_POLL_READ_SLACK_SECONDS = 5.0


def build_bot(settings: Settings) -> Bot:
    token = settings.telegram_bot_token
    if token is None or not token.get_secret_value():
        raise ConfigurationError(
            "TELEGRAM_BOT_TOKEN is not set; set it to the token @BotFather gave you."
        )
    api = settings.telegram_api_base_url.rstrip("/")
    return Bot(
        token.get_secret_value(),
        base_url=f"{api}/bot",
        base_file_url=f"{api}/file/bot",
        request=HTTPXRequest(
            # The default is one connection: every chat's reply would wait for the last.
            connection_pool_size=settings.worker_concurrency,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            write_timeout=READ_TIMEOUT_SECONDS,
            pool_timeout=CONNECT_TIMEOUT_SECONDS,
        ),
        # A separate connection for the long poll, so it never waits for a pool slot
        # behind replies (and replies never wait behind it).
        get_updates_request=HTTPXRequest(
            connection_pool_size=1,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=LONG_POLL_READ_SLACK_SECONDS,
            write_timeout=READ_TIMEOUT_SECONDS,
            pool_timeout=CONNECT_TIMEOUT_SECONDS,
        ),
    )
