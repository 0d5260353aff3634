"""Talking in Telegram chats: HTML, split messages, progress edited in place, buttons.

Telegram answers 429 with `retry_after` per chat or for the whole bot. The sender keeps a
"not before" time per chat and one for the bot; a short wait is taken in the job, a long
one hands the job back to the queue with that delay, so the worker never hammers the API.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from pgqueuer.errors import RetryRequested
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, RetryAfter
from telegram.warnings import PTBDeprecationWarning

from project_orchestrator import keys
from project_orchestrator.channels.telegram_format import split_html
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")

# Waits up to this long happen inside the job; longer ones go back to the queue.
MAX_INLINE_WAIT_SECONDS = 30.0


class TelegramRateLimited(RetryRequested):
    pass


def gate_buttons(gate_id: object) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    "✅ Approve", callback_data=keys.gate_button(gate_id, "approve")
                ),
                InlineKeyboardButton("✏️ Reject", callback_data=keys.gate_button(gate_id, "reject")),
            ]
        ]
    )


def budget_buttons(request_id: object, amount: int) -> InlineKeyboardMarkup:
    label = f"💰 Raise the budget to {amount:,} tokens"
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=keys.budget_button(request_id, amount))]]
    )


@dataclass
class TelegramSender:
    """Every call to the Bot API goes through here, so 429s are respected everywhere."""

    bot: Bot
    _chat_not_before: dict[int, float] = field(default_factory=dict)
    _bot_not_before: float = 0.0
    _last_limited: float = float("-inf")

    async def call(self, chat_id: int, request: Callable[[], Awaitable[T]]) -> T:
        for _ in range(3):
            await self._wait_turn(chat_id)
            try:
                return await request()
            except RetryAfter as exc:
                delay = _retry_after(exc)
                log.warning("telegram.rate_limited", chat_id=chat_id, retry_after=delay)
                now = time.monotonic()
                self._chat_not_before[chat_id] = now + delay
                # 429s close together are likely the bot-wide limit: slow every chat.
                if now - self._last_limited < delay:
                    self._bot_not_before = now + delay
                self._last_limited = now
        raise TelegramRateLimited(delay=timedelta(seconds=5), reason="Telegram rate limit")

    async def _wait_turn(self, chat_id: int) -> None:
        until = max(self._chat_not_before.get(chat_id, 0.0), self._bot_not_before)
        wait = until - time.monotonic()
        if wait <= 0:
            return
        if wait > MAX_INLINE_WAIT_SECONDS:
            raise TelegramRateLimited(delay=timedelta(seconds=wait), reason="Telegram 429")
        await asyncio.sleep(wait)

    async def send(
        self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> list[Message]:
        """One or more messages; buttons go on the last one."""
        chunks = split_html(text)
        sent = []
        for index, chunk in enumerate(chunks):
            buttons = markup if index == len(chunks) - 1 else None

            async def request(chunk: str = chunk, buttons: object = buttons) -> Message:
                return await self.bot.send_message(
                    chat_id,
                    chunk,
                    parse_mode=ParseMode.HTML,
                    reply_markup=buttons,  # type: ignore[arg-type]
                    disable_web_page_preview=True,
                )

            sent.append(await self.call(chat_id, request))
        return sent

    async def edit(
        self, chat_id: int, message_id: int, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        chunk = split_html(text)[0]

        async def request() -> object:
            return await self.bot.edit_message_text(
                chunk,
                chat_id=chat_id,
                message_id=message_id,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                disable_web_page_preview=True,
            )

        try:
            await self.call(chat_id, request)
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise

    async def typing(self, chat_id: int) -> None:
        try:
            await self.call(chat_id, lambda: self.bot.send_chat_action(chat_id, "typing"))
        except Exception as exc:  # a missing typing indicator is not worth failing a reply
            log.info("telegram.typing_failed", error=type(exc).__name__)


def _retry_after(exc: RetryAfter) -> float:
    # The attribute is changing from int to timedelta; reading it warns about that.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        retry_after: int | timedelta = exc.retry_after
    if isinstance(retry_after, timedelta):
        return retry_after.total_seconds()
    return float(retry_after)
