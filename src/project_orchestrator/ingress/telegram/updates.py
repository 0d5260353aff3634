"""One Telegram update, from the webhook or from getUpdates, becomes one stored event.

Both intakes go through here, so an update is validated, keyed, stored and counted the
same way whichever road it took; the unique (source, update_id) makes a second arrival a
harmless duplicate.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

import asyncpg
import orjson

from project_orchestrator import keys, metrics
from project_orchestrator.events.models import EventSource
from project_orchestrator.events.writer import NewEvent, Stored, StoreUnavailable
from project_orchestrator.jsonlimits import too_deep
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

SOURCE = "telegram"
# Update kinds of Bot API 9.x. Metric labels come from this list only: anything else is
# "other", so a caller cannot grow the metrics without limit.
UPDATE_KINDS = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "message_reaction",
        "message_reaction_count",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
_MAX_EVENT_TYPE = 100  # inbound_events.event_type is varchar(100)


class EventStore(Protocol):
    """What intake needs from the event writer (a test may hand in one that fails)."""

    async def store(self, event: NewEvent) -> Stored: ...


class Intake(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    # Nothing stored, try again later (the database is down or shutting down).
    UNAVAILABLE = "unavailable"
    # The database refused this row for good; sending it again cannot help.
    REFUSED = "refused"


def parse_update(body: bytes) -> dict[str, Any] | None:
    """The update as a dict, or None unless it is a JSON object with an integer update_id."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not is_update(payload) or too_deep(body, payload):
        return None
    return payload  # type: ignore[no-any-return]


def is_update(payload: object) -> bool:
    if not isinstance(payload, dict):
        return False
    update_id = payload.get("update_id")
    # bool is an int to Python, not to Telegram.
    return isinstance(update_id, int) and not isinstance(update_id, bool)


def update_kind(update: dict[str, Any]) -> str:
    """What the update carries: its one field besides update_id ("unknown" without one)."""
    for key in update:
        if key != "update_id":
            return key[:_MAX_EVENT_TYPE]
    return "unknown"


def kind_label(kind: str) -> str:
    return kind if kind in UPDATE_KINDS else "other"


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _chat_id(body: object) -> int | None:
    if not isinstance(body, dict):
        return None
    chat = body.get("chat")
    return _int(chat.get("id")) if isinstance(chat, dict) else None


def serial_key_for(update: dict[str, Any], kind: str) -> str:
    """Updates of one chat are handled one at a time, in order of arrival."""
    body = update.get(kind)
    if not isinstance(body, dict):
        return keys.telegram_serial(None)
    if kind == "callback_query":
        chat_id = _chat_id(body.get("message"))
        if chat_id is not None:
            return keys.telegram_serial(chat_id)
        # A button on an inline message has no chat: keep its presser's clicks in order.
        sender = body.get("from")
        user_id = _int(sender.get("id")) if isinstance(sender, dict) else None
        if user_id is None:
            return keys.telegram_serial(None)
        return keys.telegram_user_serial(user_id)
    return keys.telegram_serial(_chat_id(body))


def event_from_update(
    update: dict[str, Any],
    *,
    payload_json: str,
    headers: dict[str, str],
    correlation_id: str | None,
    client_ip: str | None = None,
) -> NewEvent:
    """`payload_json` is the update as received (the webhook keeps the exact bytes)."""
    kind = update_kind(update)
    return NewEvent(
        source=EventSource.TELEGRAM,
        external_id=str(update["update_id"]),
        event_type=kind,
        serial_key=serial_key_for(update, kind),
        headers_json=orjson.dumps(headers).decode(),
        payload_json=payload_json,
        correlation_id=correlation_id,
        client_ip=client_ip,
    )


async def store_update(writer: EventStore, event: NewEvent) -> Intake:
    """Insert the event and queue its job (one transaction), and count the outcome."""
    try:
        stored = await writer.store(event)
    except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
        log.warning("telegram.update_refused", error=type(exc).__name__, update=event.external_id)
        outcome = Intake.REFUSED
    except StoreUnavailable:
        outcome = Intake.UNAVAILABLE
    except Exception as exc:
        # Unknown failures count as temporary: the update is offered again, never dropped.
        log.warning("telegram.store_failed", error=type(exc).__name__, update=event.external_id)
        outcome = Intake.UNAVAILABLE
    else:
        outcome = Intake(stored.outcome.value)
    metrics.webhook_events_total.labels(SOURCE, kind_label(event.event_type), outcome.value).inc()
    return outcome
