"""TELEGRAM_MODE=polling: fetch updates with getUpdates when there is no public URL.

Updates take the webhook's road (`updates.store_update`). Telegram forgets an update only
when a later getUpdates asks for an offset past it, and the offset moves only past updates
already stored: a crash between fetching and storing loses nothing, and an update fetched
twice is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import warnings
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, RetryAfter
from telegram.warnings import PTBDeprecationWarning

from project_orchestrator.config import Settings
from project_orchestrator.ingress.telegram.bot import ALLOWED_UPDATES, build_bot
from project_orchestrator.ingress.telegram.updates import (
    EventStore,
    Intake,
    event_from_update,
    is_update,
    store_update,
)
from project_orchestrator.logging import get_logger, new_correlation_id

log = get_logger(__name__)

T = TypeVar("T")

FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
# Shutdown waits for this at most; an unconfirmed batch only comes back as duplicates.
CONFIRM_TIMEOUT_SECONDS = 2.0


class _Backoff:
    """1 s, doubling to 30 s; reset by any success."""

    def __init__(self, first: float, ceiling: float) -> None:
        self._first = first
        self._ceiling = ceiling
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._ceiling)
        return delay

    def reset(self) -> None:
        self._next = self._first


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Run `work` unless `stop` is set first; then it is cancelled and (False, None) returned.

    Cancelling a fetch or a store is safe: nothing moved the offset, so whatever it held
    comes back on the next getUpdates.
    """
    task = asyncio.ensure_future(work)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()  # we are being cancelled ourselves: leave nothing running behind
        raise
    finally:
        stopper.cancel()
    if task.done():
        return True, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return False, None


def _as_dict(update: Update) -> dict[str, Any]:
    # python-telegram-bot keeps fields it does not know in api_kwargs and puts them back
    # here, so nothing Telegram sent is lost on the way to the event store.
    return update.to_dict()


async def store_batch(
    writer: EventStore, updates: tuple[Update, ...], offset: int | None
) -> int | None:
    """Store updates in order; the offset just past the last one settled.

    Stops at the first one that could not be stored: the offset stays before it, so it (and
    everything after it) is fetched again. One the database refuses for good is skipped
    rather than fetched forever.
    """
    for update in updates:
        payload = _as_dict(update)
        if not is_update(payload):
            continue
        event = event_from_update(
            payload,
            payload_json=orjson.dumps(payload).decode(),
            headers={},
            correlation_id=new_correlation_id(),
        )
        outcome = await store_update(writer, event)
        if outcome is Intake.UNAVAILABLE:
            return offset
        if outcome is Intake.REFUSED:
            log.error("telegram.polling.update_skipped", update_id=update.update_id)
        offset = update.update_id + 1
    return offset


async def run_polling(
    bot: Bot,
    writer: EventStore,
    stop: asyncio.Event,
    *,
    timeout: int = 25,  # noqa: ASYNC109  # the long poll Telegram holds open, not a deadline
) -> None:
    """Fetch and store updates until `stop` is set; no failure ends the loop but `stop`."""
    offset: int | None = None
    backoff = _Backoff(FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS)
    ready = False
    while not stop.is_set():
        try:
            if not ready:
                # getMe: proves the token before the first poll and names the bot in the log.
                if not (await _unless_stopped(stop, bot.initialize()))[0]:
                    break
                ready = True
                log.info("telegram.polling.started", bot=f"@{bot.username}", timeout=timeout)
            fetched, updates = await _unless_stopped(
                stop,
                bot.get_updates(offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES),
            )
        except RetryAfter as exc:
            delay = _retry_after_seconds(exc)
            log.warning("telegram.polling.rate_limited", retry_after=delay)
            await _sleep(stop, delay)
            continue
        except Conflict:
            log.error(
                "telegram.polling.conflict",
                hint="a webhook is set, so getUpdates receives nothing; run "
                "`orchestrator telegram delete-webhook` (or set TELEGRAM_MODE=webhook)",
            )
            await _sleep(stop, backoff.next())
            continue
        except InvalidToken:
            # Its message quotes the token: only the type is logged.
            log.error("telegram.polling.token_rejected", hint="check TELEGRAM_BOT_TOKEN")
            await _sleep(stop, MAX_BACKOFF_SECONDS)
            continue
        except Exception as exc:
            # NetworkError covers timeouts and refused connections; anything else backs off
            # too, so a broken setup neither spins nor ends polling for good.
            log.warning("telegram.polling.fetch_failed", error=type(exc).__name__)
            await _sleep(stop, backoff.next())
            continue
        if not fetched or updates is None:
            break
        stored, next_offset = await _unless_stopped(stop, store_batch(writer, updates, offset))
        if not stored:
            break
        if updates and next_offset == offset:
            log.warning("telegram.polling.store_failed", pending=len(updates))
            await _sleep(stop, backoff.next())
            continue
        offset = next_offset
        backoff.reset()
    await _confirm(bot, offset)
    log.info("telegram.polling.stopped")


async def _confirm(bot: Bot, offset: int | None) -> None:
    """Tell Telegram the last stored updates arrived, so a restart does not fetch them again.

    Best effort: if this fails they come back as duplicates, which are harmless.
    """
    if offset is None:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            bot.get_updates(offset=offset, limit=1, timeout=0, allowed_updates=ALLOWED_UPDATES),
            timeout=CONFIRM_TIMEOUT_SECONDS,
        )


def _retry_after_seconds(exc: RetryAfter) -> float:
    # An int today and a timedelta in a future major version; reading it warns about that.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


@dataclass
class TelegramPoller:
    """The poller as the app runs it: started in the lifespan, stopped before the database."""

    bot: Bot
    stop_event: asyncio.Event
    task: asyncio.Task[None]

    @classmethod
    def start(cls, settings: Settings, writer: EventStore) -> TelegramPoller:
        bot = build_bot(settings)
        stop_event = asyncio.Event()
        task = asyncio.create_task(run_polling(bot, writer, stop_event), name="telegram-poller")
        return cls(bot, stop_event, task)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        self.stop_event.set()
        try:
            await asyncio.wait_for(self.task, timeout=grace_seconds)
        except TimeoutError:
            log.warning("telegram.polling.stop_timed_out")
        except Exception:
            log.exception("telegram.polling.crashed")
        with contextlib.suppress(Exception):
            await self.bot.shutdown()
