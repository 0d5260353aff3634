"""The delivery job: a conversation's outbox sent in order, after the writes committed.

Each outbox row queues a job for its conversation. The job takes the conversation's lease
(`db.leases`: a row with an expiry, not a database lock, so nothing is held while a
channel answers), sends the pending rows oldest first and marks each one sent, then gives
the lease up. A job that finds the lease taken is done: the holder sends its row too. A
holder whose worker dies is picked up again by another worker once the heartbeat stops;
the lease is named after that job, so it takes it back at once.

Delivery keeps each channel's promise: a GitHub comment carries a marker and is looked
for before a second attempt posts again (exactly once); Telegram cannot be searched, so a
send that succeeded just before a crash is sent once more (at most one duplicate). Rate
limits hand the job back to the queue with the wait the channel asked for.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from github import GithubException
from pgqueuer.errors import RetryRequested
from telegram import InlineKeyboardMarkup
from telegram.error import BadRequest, TelegramError

from project_orchestrator import metrics
from project_orchestrator.channels import outbox
from project_orchestrator.channels.github import GitHubPoster
from project_orchestrator.channels.models import OutboundKind
from project_orchestrator.channels.outbox import PendingMessage
from project_orchestrator.channels.telegram import TelegramSender, budget_buttons, gate_buttons
from project_orchestrator.db.engine import Database
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

# Long enough for the slowest single send (a 30 s inline rate-limit wait, then the call).
LEASE = timedelta(seconds=120)
# Failed sends of one message before it is given up (marked failed) and the conversation
# moves on; with the queue's backoff this rides out an outage of half an hour or so.
MAX_DELIVERY_ATTEMPTS = 12


class ChannelNotConfigured(RuntimeError):
    pass


@dataclass
class OutboxDelivery:
    db: Database
    github: GitHubPoster
    telegram: TelegramSender | None

    async def deliver(self, conversation: str, holder: str | None = None) -> None:
        """Send the conversation's pending messages. `holder` names the job doing it, so
        that job, picked up again after its worker died, takes its lease back at once."""
        holder = holder or uuid.uuid4().hex
        mine, message = await outbox.first_pending(self.db, conversation, holder, LEASE)
        if not mine:
            log.debug("outbound.lease_held", conversation=conversation)
            return  # its holder sends this job's message too
        while message is not None:
            try:
                external_id = await self._send(message)
            except RetryRequested:
                # A rate limit: the row stays pending, the job comes back later.
                await outbox.release_lease(self.db, conversation, holder)
                raise
            except Exception as exc:
                give_up = message.attempts >= MAX_DELIVERY_ATTEMPTS
                error = _describe(exc)
                failed = message
                message = await outbox.failed_then_next(
                    self.db, failed, error, conversation, holder, LEASE, give_up=give_up
                )
                if not give_up:
                    raise
                log.error(
                    "outbound.given_up", key=failed.key, attempts=failed.attempts, error=error
                )
                metrics.outbound_messages_total.labels(failed.channel.value, "failed").inc()
                continue
            sent = message
            message = await outbox.delivered_then_next(
                self.db, sent, external_id, conversation, holder, LEASE
            )
            metrics.outbound_messages_total.labels(sent.channel.value, "sent").inc()

    async def _send(self, message: PendingMessage) -> str | None:
        kind = message.kind
        if kind in (OutboundKind.GITHUB_COMMENT, OutboundKind.GITHUB_STATUS):
            return await self._github(message)
        sender = self.telegram
        if sender is None:
            raise ChannelNotConfigured("TELEGRAM_BOT_TOKEN is not set")
        chat_id = int(message.payload["chat_id"])
        if kind is OutboundKind.TELEGRAM_ANSWER:
            await _harmless(
                sender.call(
                    chat_id,
                    lambda: sender.bot.answer_callback_query(
                        message.payload["query_id"],
                        text=message.body,
                        show_alert=bool(message.payload.get("alert")),
                    ),
                ),
                "telegram.button_answer_failed",
            )
            return None
        if kind is OutboundKind.TELEGRAM_DROP_BUTTONS:
            await _harmless(
                sender.call(
                    chat_id,
                    lambda: sender.bot.edit_message_reply_markup(
                        chat_id=chat_id,
                        message_id=int(message.payload["message_id"]),
                        reply_markup=None,
                    ),
                ),
                "telegram.drop_buttons_failed",
            )
            return None
        if kind is OutboundKind.TELEGRAM_PROGRESS and message.external_id is not None:
            await sender.edit(chat_id, int(message.external_id), message.body)
            return message.external_id
        sent = await sender.send(chat_id, message.body, _buttons(message.payload))
        return str(sent[-1].message_id) if sent else None

    async def _github(self, message: PendingMessage) -> str:
        repo, number = str(message.payload["repo"]), int(message.payload["number"])
        known = int(message.external_id) if message.external_id else None
        comment_id = await self.github.post(
            repo,
            number,
            message.key,
            message.body,
            known,
            search=known is None and message.maybe_sent,
            edit=message.kind is OutboundKind.GITHUB_STATUS,
        )
        return str(comment_id)


async def _harmless(call: Awaitable[object], event: str) -> None:
    """A button answer that came too late, or buttons already gone, change nothing for the
    person: log it and go on rather than retry."""
    try:
        await call
    except BadRequest as exc:
        log.info(event, error=type(exc).__name__)


def _describe(exc: BaseException) -> str:
    """What went wrong, in words that carry no secret (no URL, no header)."""
    if isinstance(exc, GithubException):
        return f"GitHub answered {exc.status}"
    if isinstance(exc, TelegramError):
        return f"Telegram: {type(exc).__name__}"
    return type(exc).__name__


def _buttons(payload: dict[str, Any]) -> InlineKeyboardMarkup | None:
    """A gate's Approve and Reject, or the budget's Raise, when the message carries one."""
    if payload.get("gate_id") is not None:
        return gate_buttons(payload["gate_id"])
    budget = payload.get("budget")
    if isinstance(budget, dict):
        return budget_buttons(budget["request_id"], int(budget["amount"]))
    return None
