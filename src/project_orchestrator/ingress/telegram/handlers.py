"""The worker's side of Telegram: a stored update, fed to a python-telegram-bot Application.

The Application (built with `updater(None)`: updates come from our own store, never from
its poller) routes the update to our callbacks. They need the job's database session,
which is handed over in a context variable; an exception in a callback is caught by the
Application, so it is carried back out and re-raised, and the job retries as any other.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot, Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from project_orchestrator.events.models import EventStatus, InboundEvent
from project_orchestrator.ingress.telegram.desk import TELEGRAM_COMMANDS, Said, TelegramDesk
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

HANDLED_KINDS = frozenset({"message", "callback_query"})


@dataclass
class _Turn:
    session: AsyncSession
    update_id: int
    error: BaseException | None = None
    acted: bool = False


_turn: ContextVar[_Turn | None] = ContextVar("telegram_turn", default=None)


def _current() -> _Turn:
    turn = _turn.get()
    if turn is None:
        raise RuntimeError("a Telegram callback ran outside a job")
    return turn


@dataclass
class TelegramEventHandler:
    bot: Bot
    desk: TelegramDesk
    _application: Application | None = None  # type: ignore[type-arg]
    _ready: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def application(self) -> Application:  # type: ignore[type-arg]
        async with self._ready:
            if self._application is None:
                application = Application.builder().bot(self.bot).updater(None).build()
                application.add_handler(CommandHandler(sorted(TELEGRAM_COMMANDS), self._command))
                application.add_handler(MessageHandler(filters.COMMAND, self._unknown_command))
                application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self._text))
                application.add_handler(CallbackQueryHandler(self._button))
                application.add_error_handler(self._error)
                await application.initialize()  # getMe: the bot's name, for /cmd@name
                self._application = application
            return self._application

    async def handle(self, session: AsyncSession, event: InboundEvent) -> EventStatus:
        if event.event_type not in HANDLED_KINDS:
            return EventStatus.IGNORED
        application = await self.application()
        try:
            update = Update.de_json(event.payload, application.bot)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # An update the Bot API types cannot read now never will: no retrying it.
            log.warning(
                "telegram.update_malformed",
                event_id=event.id,
                kind=event.event_type,
                reason=f"{type(exc).__name__}: {exc}"[:200],
            )
            return EventStatus.IGNORED
        turn = _Turn(session, update.update_id)
        token = _turn.set(turn)
        try:
            await application.process_update(update)
        finally:
            _turn.reset(token)
        if turn.error is not None:
            raise turn.error
        return EventStatus.HANDLED if turn.acted else EventStatus.IGNORED

    async def aclose(self) -> None:
        if self._application is not None:
            await self._application.shutdown()  # shuts its bot down too
        else:
            await self.bot.shutdown()

    # --- callbacks -----------------------------------------------------------------

    def _said(self, update: Update) -> Said | None:
        user = update.effective_user
        chat = update.effective_chat
        if user is None or chat is None or user.is_bot:
            return None
        return Said(update.update_id, chat.id, user)

    async def _message(self, update: Update) -> tuple[_Turn, Said, str] | None:
        """The turn, the sender and the text of a message from an allowed person.

        Anyone else gets their one refusal here, and None.
        """
        said = self._said(update)
        message = update.effective_message
        if said is None or message is None or not message.text:
            return None
        turn = _current()
        turn.acted = True
        if not self.desk.allowed(said.user):
            await self.desk.refuse(turn.session, said)
            return None
        return turn, said, message.text

    async def _command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (found := await self._message(update)) is None:
            return
        turn, said, text = found
        name = text.split()[0].lstrip("/").split("@")[0].lower()
        await self.desk.command(turn.session, said, name, text.partition(" ")[2])

    async def _unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (found := await self._message(update)) is None:
            return
        turn, said, text = found
        name = text.split()[0]
        answer = f"I don't know {name}. Send /help to see what I can do."
        await self.desk.reply(turn.session, said, answer)

    async def _text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (found := await self._message(update)) is None:
            return
        turn, said, text = found
        await self.desk.text(turn.session, said, text)

    async def _button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        said = self._said(update)
        query = update.callback_query
        if said is None or query is None:
            return
        turn = _current()
        turn.acted = True
        if not self.desk.allowed(said.user):
            await self.desk.refuse_button(turn.session, said, query)
            return
        await self.desk.button(turn.session, said, query)

    async def _error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        turn = _turn.get()
        if turn is not None and context.error is not None:
            turn.error = context.error
        else:
            log.error("telegram.callback_failed", error=type(context.error).__name__)
