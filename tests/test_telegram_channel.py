"""Sending on Telegram: HTML escaping, splitting, 429s respected, keyed sends, progress edits."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot

from project_orchestrator import keys
from project_orchestrator.channels.base import GateQuestion, ProjectAddress
from project_orchestrator.channels.delivery import OutboxDelivery
from project_orchestrator.channels.github import GitHubPoster
from project_orchestrator.channels.models import OutboundMessage, OutboundStatus
from project_orchestrator.channels.staging import TelegramChannel
from project_orchestrator.channels.telegram import TelegramRateLimited, TelegramSender
from project_orchestrator.channels.telegram_format import TELEGRAM_LIMIT, split_html, to_html
from project_orchestrator.db.engine import Database
from tests.support.fake_telegram import FakeTelegram

CHAT = 77
TOKEN = "123456:TEST-token"


@pytest.fixture
async def sender(telegram: tuple[FakeTelegram, str]) -> AsyncIterator[TelegramSender]:
    bot = Bot(TOKEN, base_url=f"{telegram[1]}/bot")
    await bot.initialize()
    yield TelegramSender(bot)
    await bot.shutdown()


def address(chat_id: int | None = CHAT) -> ProjectAddress:
    return ProjectAddress(uuid.uuid4(), "Meals", None, None, chat_id)


def test_text_is_escaped_and_only_our_conventions_become_tags() -> None:
    html = to_html("**Plan** for <script> & `x < y`\n## Heading\n- [x] done\n- [ ] next")
    assert "<b>Plan</b>" in html
    assert "&lt;script&gt; &amp;" in html
    assert "<code>x &lt; y</code>" in html
    assert "<b>Heading</b>" in html
    assert "✅ done" in html
    assert "<!--" not in to_html("hi <!-- orchestrator:key -->")


def test_long_texts_split_on_paragraphs_below_the_limit() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 150 for i in range(12)]
    chunks = split_html("\n\n".join(paragraphs))
    assert len(chunks) > 1
    assert all(len(c) <= TELEGRAM_LIMIT for c in chunks)
    assert all(c.startswith("Paragraph") for c in chunks), "cut between paragraphs"
    assert "".join(chunks).count("Paragraph") == 12
    escaped = split_html("&" * 9000)  # escaping lengthens: still within the limit
    assert all(len(c) <= TELEGRAM_LIMIT for c in escaped)


async def test_a_long_reply_arrives_in_order_as_valid_html(
    sender: TelegramSender, telegram: tuple[FakeTelegram, str]
) -> None:
    fake = telegram[0]
    text = "\n\n".join(f"Part {i} <b>not a tag</b> " + "x" * 900 for i in range(8))
    await sender.send(CHAT, text)
    sent = fake.messages(CHAT)
    assert len(sent) > 1
    joined = "\n\n".join(m["plain"] for m in sent)
    assert [line.split()[1] for line in joined.split("\n\n")] == [str(i) for i in range(8)]
    assert all("<b>not a tag</b>" in m["plain"] for m in sent)  # shown literally


async def test_retry_after_is_respected_per_chat(
    sender: TelegramSender, telegram: tuple[FakeTelegram, str]
) -> None:
    fake = telegram[0]
    fake.rate_limit_next(1, retry_after=1, method="sendMessage")
    started = time.monotonic()
    await sender.send(CHAT, "hello")
    assert time.monotonic() - started >= 0.9
    assert [m["plain"] for m in fake.messages(CHAT)] == ["hello"]
    fake.rate_limit_next(1, retry_after=1, method="editMessageText")
    message_id = fake.messages(CHAT)[0]["message_id"]
    await sender.edit(CHAT, message_id, "hello again")
    assert fake.messages(CHAT)[0]["plain"] == "hello again"


async def test_a_long_retry_after_goes_back_to_the_queue(
    sender: TelegramSender, telegram: tuple[FakeTelegram, str]
) -> None:
    telegram[0].rate_limit_next(1, retry_after=120, method="sendMessage")
    with pytest.raises(TelegramRateLimited):
        await sender.send(CHAT, "hello")
    with pytest.raises(TelegramRateLimited):  # the chat waits; nothing is sent meanwhile
        await sender.send(CHAT, "hello")
    assert telegram[0].messages(CHAT) == []


async def test_keyed_sends_happen_once_and_progress_is_edited_per_stage(
    db: Database, sender: TelegramSender, telegram: tuple[FakeTelegram, str]
) -> None:
    fake = telegram[0]
    channel = TelegramChannel()
    delivery = OutboxDelivery(db, GitHubPoster(_NoComments()), sender)
    conversation = keys.telegram_conversation(CHAT)
    to = address()

    async def say(step: Callable[[AsyncSession], Awaitable[None]]) -> None:
        async with db.session_scope() as session:
            await step(session)
        await delivery.deliver(conversation)

    await say(lambda s: channel.send(s, to, "hello", "Hi!"))
    await say(lambda s: channel.send(s, to, "hello", "Hi!"))
    await say(lambda s: channel.send(s, address(None), "hello", "no chat: skipped"))
    assert [m["plain"] for m in fake.messages(CHAT)] == ["Hi!"]
    await say(lambda s: channel.progress(s, to, "run:1", "step one: working", stage="plan:1"))
    await say(lambda s: channel.progress(s, to, "run:1", "step one: done", stage="plan:1"))
    await say(lambda s: channel.progress(s, to, "run:1", "step two: working", stage="execute:1"))
    texts = [m["plain"] for m in fake.messages(CHAT)]
    assert texts == ["Hi!", "step one: done", "step two: working"]
    question = GateQuestion(uuid.uuid4(), "Approve the plan?")
    await say(lambda s: channel.ask(s, to, "gate:1", question))
    asked = fake.messages(CHAT)[-1]
    labels = [b["text"] for b in asked["reply_markup"]["inline_keyboard"][0]]
    assert labels == ["✅ Approve", "✏️ Reject"]
    async with db.session_scope() as session:
        rows = (await session.execute(select(OutboundMessage))).scalars().all()
    assert {r.idempotency_key for r in rows} == {
        "tg:hello",
        "tg:run:1:plan:1",
        "tg:run:1:execute:1",
        "tg:gate:1",
    }
    assert {r.status for r in rows} == {OutboundStatus.SENT}


class _NoComments:
    """This test talks to Telegram only."""

    def create(self, repo: str, number: int, body: str) -> int:
        raise AssertionError("no GitHub comment expected")

    def find_marked(self, repo: str, number: int, mark: str) -> int | None:
        raise AssertionError("no GitHub comment expected")

    def edit(self, repo: str, number: int, comment_id: int, body: str) -> None:
        raise AssertionError("no GitHub comment expected")
