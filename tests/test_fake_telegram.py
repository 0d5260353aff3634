"""The real python-telegram-bot against tests.support.fake_telegram over a real local port."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MessageEntity,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from tests.support.fake_http import FakeServer
from tests.support.fake_telegram import (
    DEFAULT_BOT_ID,
    FakeTelegram,
    callback_update,
    parse_html,
    strip_html,
    text_update,
)

TOKEN = f"{DEFAULT_BOT_ID}:AAH-fake-token_for_tests"
CHAT = 4242
USER = 4242
KEYBOARD = InlineKeyboardMarkup(
    [
        [
            InlineKeyboardButton("Approve", callback_data="approve:7"),
            InlineKeyboardButton("Reject", callback_data="reject:7"),
        ],
        [InlineKeyboardButton("Open PR", url="https://github.com/acme/widgets/pull/7")],
    ]
)


@pytest.fixture
def fake() -> FakeTelegram:
    return FakeTelegram()


@pytest.fixture
def server(fake: FakeTelegram) -> Iterator[FakeServer]:
    with FakeServer(fake.app) as server:
        yield server


@pytest.fixture
async def bot(server: FakeServer) -> AsyncIterator[Bot]:
    bot = Bot(TOKEN, base_url=f"{server.url}/bot", base_file_url=f"{server.url}/file/bot")
    await bot.initialize()
    yield bot
    await bot.shutdown()


# --- the parser on its own -------------------------------------------------------------


def test_parse_html_entities_and_offsets() -> None:
    plain, entities = parse_html(
        '<b>Plan</b> for <a href="https://x.test/?a=1&amp;b=2">PR</a> &lt;3 😀 <i>done</i>'
    )

    assert plain == "Plan for PR <3 😀 done"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 4},
        {"type": "text_link", "offset": 9, "length": 2, "url": "https://x.test/?a=1&b=2"},
        # The emoji is two UTF-16 code units, so "done" starts at 18, not 17.
        {"type": "italic", "offset": 18, "length": 4},
    ]
    assert parse_html('<pre><code class="language-python">x = 1</code></pre>') == (
        "x = 1",
        [{"type": "pre", "offset": 0, "length": 5, "language": "python"}],
    )
    assert strip_html("  <b>hi</b> &amp; bye  ") == "hi & bye"
    assert strip_html("R&D &nbsp; stays") == "R&D &nbsp; stays"  # unknown entities are literal


@pytest.mark.parametrize(
    ("markup", "detail"),
    [
        ("<b>bold", 'can\'t find end tag corresponding to start tag "b"'),
        ("<blink>x</blink>", 'unsupported start tag "blink" at byte offset 0'),
        ("<b><i>x</b></i>", 'unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("2 < 3", 'unsupported start tag "" at byte offset 2'),
        ("done</b>", "unexpected end tag at byte offset 4"),
        ('<span class="x">s</span>', 'tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
async def test_malformed_html_is_rejected(
    bot: Bot, fake: FakeTelegram, markup: str, detail: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(CHAT, markup, parse_mode=ParseMode.HTML)

    assert caught.value.message.lower() == f"can't parse entities: {detail}".lower()
    assert fake.messages(CHAT) == []


# --- through the real library ----------------------------------------------------------


async def test_get_me(bot: Bot, fake: FakeTelegram) -> None:
    me = await bot.get_me()

    assert me.id == DEFAULT_BOT_ID
    assert me.is_bot
    assert me.username == "orchestrator_bot"
    assert me.can_join_groups
    assert bot.username == "orchestrator_bot"
    assert bot.link == "https://t.me/orchestrator_bot"
    assert fake.calls == ["getMe", "getMe"]  # initialize() asked once already


async def test_send_message_with_html_and_inline_keyboard(
    bot: Bot, fake: FakeTelegram, server: FakeServer
) -> None:
    sent = await bot.send_message(
        CHAT,
        "<b>Plan</b> ready &amp; waiting",
        parse_mode=ParseMode.HTML,
        reply_markup=KEYBOARD,
    )
    second = await bot.send_message(CHAT, "second", reply_to_message_id=sent.message_id)

    assert sent.message_id == 1
    assert second.message_id == 2
    assert sent.chat.id == CHAT
    assert sent.chat.type == "private"
    assert sent.from_user is not None
    assert sent.from_user.id == DEFAULT_BOT_ID
    assert sent.text == "Plan ready & waiting"
    assert sent.entities == (MessageEntity(MessageEntity.BOLD, 0, 4),)
    assert sent.text_html == "<b>Plan</b> ready &amp; waiting"
    assert sent.reply_markup == KEYBOARD
    assert second.reply_to_message is not None
    assert second.reply_to_message.message_id == sent.message_id

    first, reply = fake.messages(CHAT)
    assert first["message_id"] == 1
    assert first["text"] == "<b>Plan</b> ready &amp; waiting"
    assert first["plain"] == "Plan ready & waiting"
    assert first["parse_mode"] == "HTML"
    assert first["edits"] == 0
    assert first["reply_markup"] == {
        "inline_keyboard": [
            [
                {"text": "Approve", "callback_data": "approve:7"},
                {"text": "Reject", "callback_data": "reject:7"},
            ],
            [{"text": "Open PR", "url": "https://github.com/acme/widgets/pull/7"}],
        ]
    }
    assert reply["reply_to_message_id"] == 1
    assert reply["reply_markup"] is None
    assert fake.messages(CHAT + 1) == []

    # It really was a form body with the keyboard as a JSON string inside it.
    wire = next(r for r in server.requests if r.path.endswith("/sendMessage"))
    assert wire.path == f"/bot{TOKEN}/sendMessage"
    assert wire.headers["content-type"] == "application/x-www-form-urlencoded"
    method, params = fake.requests[-2]
    assert method == "sendMessage"
    assert params["chat_id"] == CHAT
    assert params["reply_markup"] == first["reply_markup"]


async def test_message_ids_count_past_pushed_user_messages(bot: Bot, fake: FakeTelegram) -> None:
    fake.push_update(text_update(1, CHAT, USER, "hello", message_id=57))

    sent = await bot.send_message(CHAT, "hi Ada")

    assert sent.message_id == 58
    assert sent.chat.first_name == "Ada"


async def test_edit_message_text(bot: Bot, fake: FakeTelegram) -> None:
    sent = await bot.send_message(CHAT, "Building…", reply_markup=KEYBOARD)

    edited = await bot.edit_message_text(
        "<b>Built</b>",
        chat_id=CHAT,
        message_id=sent.message_id,
        parse_mode=ParseMode.HTML,
        reply_markup=KEYBOARD,
    )
    assert isinstance(edited, type(sent))
    assert edited.text == "Built"
    assert edited.edit_date is not None
    assert edited.reply_markup == KEYBOARD

    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text(
            "<b>Built</b>",
            chat_id=CHAT,
            message_id=sent.message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=KEYBOARD,
        )

    # As on Telegram, an edit without reply_markup drops the inline keyboard.
    await bot.edit_message_text("<b>Built</b>", chat_id=CHAT, message_id=sent.message_id)
    [stored] = fake.messages(CHAT)
    assert stored["text"] == "<b>Built</b>"
    assert stored["plain"] == "<b>Built</b>"
    assert stored["parse_mode"] is None
    assert stored["reply_markup"] is None
    assert stored["edits"] == 2

    await bot.edit_message_reply_markup(CHAT, sent.message_id, reply_markup=KEYBOARD)
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(CHAT, sent.message_id, reply_markup=KEYBOARD)
    assert fake.messages(CHAT)[0]["edits"] == 3

    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=999)


async def test_text_length_is_counted_after_parsing(bot: Bot, fake: FakeTelegram) -> None:
    await bot.send_message(CHAT, "x" * 4096)
    await bot.send_message(CHAT, f"<b>{'y' * 4096}</b>", parse_mode=ParseMode.HTML)

    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(CHAT, "&amp;" * 4097, parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(CHAT, "<b> </b>", parse_mode=ParseMode.HTML)

    assert [len(m["plain"]) for m in fake.messages(CHAT)] == [4096, 4096]


async def test_rate_limit_raises_retry_after(
    bot: Bot, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # retry_after as a timedelta, no deprecation
    fake.rate_limit_next(1, retry_after=3, method="sendMessage")

    await bot.get_me()  # other methods are not affected
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(CHAT, "hello")
    assert caught.value.retry_after == timedelta(seconds=3)
    await bot.send_message(CHAT, "hello")  # only the next one was limited

    fake.rate_limit_next(2)
    for _ in range(2):
        with pytest.raises(RetryAfter):
            await bot.send_chat_action(CHAT, ChatAction.TYPING)
    fake.fail_next(1, status=502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.get_me()

    assert [m["text"] for m in fake.messages(CHAT)] == ["hello"]
    assert fake.chat_actions == []
    assert fake.calls[-6:] == [
        "getMe",
        "sendMessage",
        "sendMessage",
        "sendChatAction",
        "sendChatAction",
        "getMe",
    ]


async def test_blocked_chat_is_forbidden(bot: Bot, fake: FakeTelegram) -> None:
    fake.block_chat(CHAT)

    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(CHAT, "hello")


async def test_webhook(bot: Bot, fake: FakeTelegram) -> None:
    fake.push_update(text_update(1, CHAT, USER, "old"))
    url = "https://orchestrator.example.com/telegram/webhook"

    assert await bot.set_webhook(
        url,
        secret_token="s3cr3t-token_1",
        allowed_updates=["message", "callback_query"],
        drop_pending_updates=True,
    )

    assert fake.webhook == {
        "url": url,
        "secret_token": "s3cr3t-token_1",
        "allowed_updates": ["message", "callback_query"],
        "drop_pending_updates": True,
        "max_connections": None,
        "ip_address": None,
    }
    info = await bot.get_webhook_info()
    assert info.url == url
    assert info.pending_update_count == 0
    assert info.allowed_updates == ("message", "callback_query")
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()
    with pytest.raises(BadRequest, match=r"(?i)an https url must be provided"):
        await bot.set_webhook("http://orchestrator.example.com/hook")
    with pytest.raises(BadRequest, match=r"(?i)secret token contains unallowed characters"):
        await bot.set_webhook(url, secret_token="not allowed!")

    assert await bot.delete_webhook()
    assert fake.webhook["url"] == ""
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.get_updates() == ()


async def test_get_updates_offset_limit_and_long_poll(bot: Bot, fake: FakeTelegram) -> None:
    for update_id in (10, 11, 12):
        fake.push_update(text_update(update_id, CHAT, USER, f"message {update_id}"))

    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [10, 11, 12]
    assert updates[0].message is not None
    assert updates[0].message.text == "message 10"
    assert [u.update_id for u in await bot.get_updates(limit=2)] == [10, 11]

    # Confirming offset 12 forgets 10 and 11 for good.
    assert [u.update_id for u in await bot.get_updates(offset=12)] == [12]
    assert [u["update_id"] for u in fake.pending_updates] == [12]
    assert [u.update_id for u in await bot.get_updates()] == [12]
    assert await bot.get_updates(offset=13) == ()
    assert fake.pending_updates == []

    # A long poll waits for the next update and returns as soon as it is pushed.
    def push_later() -> None:
        time.sleep(0.2)
        fake.push_update(callback_update(13, CHAT, USER, "approve:7", message_id=1))

    pusher = threading.Thread(target=push_later)
    started = time.monotonic()
    pusher.start()
    updates = await bot.get_updates(offset=13, timeout=5)
    pusher.join()
    assert time.monotonic() - started < 0.9  # well under the fake's 1 s long-poll cap
    assert [u.update_id for u in updates] == [13]
    assert updates[0].callback_query is not None

    # With nothing to deliver, the long poll gives up after the cap (kept small).
    fake.max_long_poll_seconds = 0.2
    started = time.monotonic()
    assert await bot.get_updates(offset=14, timeout=30) == ()
    assert 0.15 < time.monotonic() - started < 2

    # allowed_updates filters (and drops) other kinds.
    fake.push_update(text_update(14, CHAT, USER, "hello"))
    fake.push_update(callback_update(15, CHAT, USER, "x", message_id=1))
    updates = await bot.get_updates(offset=14, allowed_updates=["callback_query"])
    assert [u.update_id for u in updates] == [15]


async def test_callback_answers_chat_actions_deletes_and_commands(
    bot: Bot, fake: FakeTelegram
) -> None:
    assert await bot.answer_callback_query("4000000000000013", text="Approved", show_alert=True)
    await bot.send_chat_action(CHAT, ChatAction.TYPING)
    sent = await bot.send_message(CHAT, "temporary")
    assert await bot.delete_message(CHAT, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(CHAT, sent.message_id)
    commands = [BotCommand("start", "Start here"), BotCommand("status", "Project status")]
    assert await bot.set_my_commands(commands)
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Command", "nope")])

    assert fake.callback_answers == [
        {
            "callback_query_id": "4000000000000013",
            "text": "Approved",
            "show_alert": True,
            "url": None,
            "cache_time": None,
        }
    ]
    assert fake.chat_actions == [{"chat_id": CHAT, "action": "typing"}]
    assert fake.messages(CHAT) == []
    assert fake.deleted == [(CHAT, sent.message_id)]
    assert fake.commands == [
        {"command": "start", "description": "Start here"},
        {"command": "status", "description": "Project status"},
    ]
    assert await bot.get_my_commands() == tuple(commands)


async def test_invalid_token_is_refused() -> None:
    fake = FakeTelegram(token=TOKEN)
    with FakeServer(fake.app) as server:
        bot = Bot("123:wrong", base_url=f"{server.url}/bot")
        with pytest.raises(InvalidToken):
            await bot.initialize()
        await bot.shutdown()


async def test_json_and_multipart_bodies_are_accepted(
    server: FakeServer, fake: FakeTelegram
) -> None:
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    async with httpx.AsyncClient(base_url=f"{server.url}/bot{TOKEN}") as client:
        as_json = await client.post(
            "/sendMessage",
            json={
                "chat_id": CHAT,
                "text": "<i>json</i>",
                "parse_mode": "HTML",
                "reply_markup": markup,
            },
        )
        as_multipart = await client.post(
            "/sendMessage",
            data={"chat_id": str(CHAT), "text": "123", "reply_markup": json.dumps(markup)},
            files={"unused": ("a.txt", b"file body")},
        )
        unknown = await client.post("/noSuchMethod")

    assert as_json.json()["result"]["text"] == "json"
    assert as_multipart.headers["content-type"] == "application/json"
    assert as_multipart.json()["result"]["reply_markup"] == markup
    assert unknown.status_code == 404
    assert unknown.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert [(m["plain"], m["reply_markup"]) for m in fake.messages(CHAT)] == [
        ("json", markup),
        ("123", markup),  # a numeric-looking text stays a string
    ]


# --- update builders and the whole Application path -------------------------------------


async def test_update_builders_parse_with_the_library(bot: Bot) -> None:
    update = Update.de_json(text_update(5, CHAT, USER, "/start hello", username="ada"), bot)
    assert update.message is not None
    assert update.message.text == "/start hello"
    assert update.effective_user is not None
    assert update.effective_user.id == USER
    assert update.effective_user.username == "ada"
    assert update.effective_chat is not None
    assert update.effective_chat.id == CHAT
    assert update.message.parse_entities([MessageEntity.BOT_COMMAND]) == {
        MessageEntity(MessageEntity.BOT_COMMAND, 0, 6): "/start"
    }
    assert Update.de_json(text_update(6, CHAT, USER, "plain"), bot).message.entities == ()  # type: ignore[union-attr]

    pressed = Update.de_json(callback_update(7, CHAT, USER, "approve:7", message_id=3), bot)
    assert pressed.callback_query is not None
    assert pressed.callback_query.data == "approve:7"
    assert pressed.callback_query.from_user.id == USER
    assert pressed.callback_query.message is not None
    assert pressed.callback_query.message.message_id == 3
    assert pressed.effective_chat is not None
    assert pressed.effective_chat.id == CHAT


async def test_application_handles_a_command_and_a_button(
    server: FakeServer, fake: FakeTelegram
) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await context.bot.send_chat_action(update.message.chat_id, ChatAction.TYPING)
        await update.message.reply_text(
            f"Hello <b>{update.message.from_user.first_name}</b>",  # type: ignore[union-attr]
            parse_mode=ParseMode.HTML,
            reply_markup=KEYBOARD,
        )

    async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Approved")
        await query.edit_message_text(f"Chose {query.data}")

    app = (
        Application.builder()
        .token(TOKEN)
        .base_url(f"{server.url}/bot")
        .base_file_url(f"{server.url}/file/bot")
        .updater(None)
        .build()
    )
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(button))
    await app.initialize()
    try:
        await app.process_update(Update.de_json(text_update(1, CHAT, USER, "/start"), app.bot))
        [greeting] = fake.messages(CHAT)
        await app.process_update(
            Update.de_json(
                callback_update(2, CHAT, USER, "approve:7", message_id=greeting["message_id"]),
                app.bot,
            )
        )
    finally:
        await app.shutdown()

    assert greeting["plain"] == "Hello Ada"
    assert greeting["reply_markup"] is not None
    [after] = fake.messages(CHAT)
    assert after["text"] == "Chose approve:7"
    assert after["edits"] == 1
    assert after["reply_markup"] is None
    assert fake.callback_answers[0]["text"] == "Approved"
    assert fake.chat_actions == [{"chat_id": CHAT, "action": "typing"}]
    assert fake.calls == [
        "getMe",
        "sendChatAction",
        "sendMessage",
        "answerCallbackQuery",
        "editMessageText",
    ]


async def test_concurrent_sends_get_distinct_ids(bot: Bot, fake: FakeTelegram) -> None:
    sent = await asyncio.gather(*(bot.send_message(CHAT, f"m{i}") for i in range(5)))

    assert sorted(m.message_id for m in sent) == [1, 2, 3, 4, 5]
    assert len(fake.messages(CHAT)) == 5


async def test_an_open_long_poll_confirms_its_offset_once_on_arrival(
    bot: Bot, fake: FakeTelegram
) -> None:
    # A poller stopped mid-poll leaves its request open on the server; an update that
    # arrives meanwhile (here one resent with an old id) must not be confirmed by it.
    fake.push_update(text_update(7, CHAT, USER, "first"))
    assert [u.update_id for u in await bot.get_updates(offset=8, timeout=0)] == []
    poll = asyncio.create_task(bot.get_updates(offset=8, timeout=1))
    await asyncio.sleep(0.1)
    fake.push_update(text_update(7, CHAT, USER, "again"))
    await poll
    assert [u["update_id"] for u in fake.pending_updates] == [7]
