"""A local fake of the Telegram Bot API that the real python-telegram-bot talks to.

Serve `FakeTelegram().app` with `tests.support.fake_http.FakeServer` and point the library
at it:

    fake = FakeTelegram()
    with FakeServer(fake.app) as server:
        app = (
            Application.builder().token(TOKEN)
            .base_url(f"{server.url}/bot").base_file_url(f"{server.url}/file/bot")
            .updater(None).build()
        )

Requests arrive as `POST /bot<token>/<method>` (GET works too, as on Telegram), with
`application/x-www-form-urlencoded` bodies in which non-string values (`reply_markup`,
`reply_parameters`, `allowed_updates`, numbers, booleans) are JSON texts; JSON and multipart
bodies are accepted as well. Method names are case-insensitive, as on Telegram. Answers are
`{"ok": true, "result": ...}` or `{"ok": false, "error_code": N, "description": "..."}`.

Behaviour modelled on the real API:
- `sendMessage` parses `parse_mode="HTML"` like Telegram (supported tags only, entities
  `&lt; &gt; &amp; &quot;` and numeric ones), answers 400 "Bad Request: can't parse
  entities: ..." for malformed markup, trims surrounding whitespace, rejects empty texts and
  texts over 4096 characters after parsing, and returns a Message with the plain text and
  its `entities` (UTF-16 offsets). Message ids count up per chat (past ids of messages pushed
  with `push_update`). Only inline keyboards are echoed back in `reply_markup`.
  `MarkdownV2`/`Markdown` texts are counted as sent, without markup validation.
- `editMessageText` without `reply_markup` removes the inline keyboard (as Telegram does);
  an edit that changes neither text nor markup is 400 "message is not modified".
- `getUpdates` confirms updates below `offset` (a negative offset keeps only the last
  |offset| updates), honours `limit` and `allowed_updates`, long-polls for at most
  `max_long_poll_seconds`, and is 409 while a webhook is set.
- `setWebhook` insists on an HTTPS URL on ports 80/88/443/8443 unless
  `strict_webhook_url=False`; `secret_token` must be 1-256 of `A-Z a-z 0-9 _ -`.

State for assertions (copies, read under a `threading.Lock`, since the server runs in another
thread): `messages(chat_id)`, `callback_answers`, `chat_actions`, `webhook`, `commands`,
`deleted`, `calls`, `requests`, `pending_updates`.

Faults: `rate_limit_next(n, retry_after=1, method=None)` answers 429 with
`parameters.retry_after` (python-telegram-bot raises `RetryAfter`); `fail_next(n,
status=502)`; `block_chat(chat_id)` makes sends to that chat 403 "bot was blocked by the
user". Every call, faulted or not, is recorded in `calls`/`requests`; faulted calls change
no other state.

Builders `text_update(...)` and `callback_update(...)` make real-shaped Update JSON that
`telegram.Update.de_json(data, bot)` accepts.
"""

from __future__ import annotations

import asyncio
import copy
import email.parser
import email.policy
import html
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEFAULT_BOT_ID = 7000000001
DEFAULT_BOT_USERNAME = "orchestrator_bot"
DEFAULT_BOT_FIRST_NAME = "Orchestrator"
MAX_MESSAGE_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
UPDATE_TYPES = frozenset(
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
# Parameters that are plain strings on the wire; everything else in a form body is JSON text.
_STRING_PARAMS = frozenset(
    {
        "text",
        "parse_mode",
        "url",
        "secret_token",
        "ip_address",
        "callback_query_id",
        "action",
        "data",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "language_code",
        "caption",
        "name",
        "description",
        "short_description",
    }
)
_WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_BOT_COMMAND = re.compile(r"[a-z0-9_]{1,32}")


class TelegramApiError(Exception):
    """An error answer: `{"ok": false, "error_code": status, "description": ...}`."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad_request(detail: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {detail}")


class ApiCall(NamedTuple):
    """One request as the fake understood it: canonical method name and decoded params."""

    method: str
    params: dict[str, Any]


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: int | None
    method: str | None

    def matches(self, method: str) -> bool:
        return self.method is None or self.method.lower() == method.lower()


@dataclass
class StoredMessage:
    """A message the bot sent, as the fake keeps it."""

    chat_id: int | str
    message_id: int
    text: str
    plain: str
    entities: list[dict[str, Any]]
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    reply_to_message_id: int | None
    date: int
    edits: int = 0
    edit_date: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "text": self.text,
            "plain": self.plain,
            "entities": copy.deepcopy(self.entities),
            "parse_mode": self.parse_mode,
            "reply_markup": copy.deepcopy(self.reply_markup),
            "reply_to_message_id": self.reply_to_message_id,
            "date": self.date,
            "edits": self.edits,
        }


@dataclass
class _Chat:
    next_message_id: int = 1
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    incoming: dict[int, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] | None = None  # the `chat` object of the latest pushed message


# --- HTML parse mode, following Telegram's (tdlib's) parser ------------------------------

_HTML_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED_HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_NUMERIC_ENTITY = re.compile(r"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")
_NAMED_ENTITY = re.compile(r"&([a-zA-Z]{2,5});")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def _decode_html_entity(text: str, at: int) -> tuple[str, int] | None:
    """The character an `&...;` at `at` stands for and its length, or None (kept literally)."""
    numeric = _NUMERIC_ENTITY.match(text, at)
    if numeric is not None:
        code = int(numeric.group(1), 16) if numeric.group(1) else int(numeric.group(2))
        if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
            return chr(code), numeric.end() - at
        return None
    named = _NAMED_ENTITY.match(text, at)
    if named is not None and named.group(1) in _NAMED_HTML_ENTITIES:
        return _NAMED_HTML_ENTITIES[named.group(1)], named.end() - at
    return None


@dataclass
class _OpenTag:
    name: str
    offset: int  # UTF-16 offset in the plain text
    attributes: dict[str, str]


def _parse_error(detail: str) -> TelegramApiError:
    return _bad_request(f"can't parse entities: {detail}")


def _read_attributes(text: str, i: int, tag: str, begin: int) -> tuple[dict[str, str], int]:
    """Attributes of a start tag from `i` up to its `>`; returns them and the index after it."""
    n = len(text)
    attributes: dict[str, str] = {}
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise _parse_error(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        if text[i] == ">":
            return attributes, i + 1
        name_start = i
        while i < n and not text[i].isspace() and text[i] not in "=>":
            i += 1
        name = text[name_start:i].lower()
        if not name:
            raise _parse_error(
                f'Empty attribute name in the tag "{tag}" at byte offset '
                f"{_byte_offset(text, begin)}"
            )
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=":
            attributes[name] = ""  # e.g. <blockquote expandable>
            continue
        i += 1
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise _parse_error(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        if text[i] in "\"'":
            quote = text[i]
            end = text.find(quote, i + 1)
            if end < 0:
                raise _parse_error(
                    f"Unclosed end of attribute value at byte offset {_byte_offset(text, i)}"
                )
            raw_value = text[i + 1 : end]
            i = end + 1
        else:
            value_start = i
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            raw_value = text[value_start:i]
        attributes[name] = html.unescape(raw_value)


def _entity_for(tag: _OpenTag, end: int) -> dict[str, Any] | None:
    length = end - tag.offset
    kind = _HTML_ENTITY_TYPES[tag.name]
    entity: dict[str, Any] = {"type": kind, "offset": tag.offset, "length": length}
    if kind == "text_link":
        href = tag.attributes.get("href", "").strip()
        if not href:
            return None
        entity["url"] = href
    elif kind == "custom_emoji":
        entity["custom_emoji_id"] = tag.attributes.get("emoji-id", "")
    elif kind == "blockquote" and "expandable" in tag.attributes:
        entity["type"] = "expandable_blockquote"
    return entity


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parse mode: the plain text and its entities (UTF-16 offsets).

    Raises TelegramApiError (400 "can't parse entities: ...") for markup Telegram rejects.
    """
    plain: list[str] = []
    position = 0  # UTF-16 length of `plain`
    stack: list[_OpenTag] = []
    entities: list[dict[str, Any]] = []
    n = len(text)
    i = 0
    while i < n:
        char = text[i]
        if char == "&":
            decoded = _decode_html_entity(text, i)
            piece, step = decoded if decoded is not None else ("&", 1)
            plain.append(piece)
            position += _utf16_len(piece)
            i += step
            continue
        if char != "<":
            plain.append(char)
            position += _utf16_len(char)
            i += 1
            continue
        begin = i
        i += 1
        if i < n and text[i] == "/":
            close = text.find(">", i)
            if close < 0:
                raise _parse_error(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
            name = text[i + 1 : close].strip().lower()
            i = close + 1
            if not stack:
                raise _parse_error(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
            opened = stack.pop()
            if name != opened.name:
                raise _parse_error(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{opened.name}>", found "</{name}>"'
                )
            language = opened.attributes.get("class", "")
            if (
                opened.name == "code"
                and stack
                and stack[-1].name == "pre"
                and language.startswith("language-")
            ):
                stack[-1].attributes["language"] = language.removeprefix("language-")
                continue
            entity = _entity_for(opened, position)
            if entity is not None and entity["length"] > 0:
                if opened.name == "pre" and opened.attributes.get("language"):
                    entity["language"] = opened.attributes["language"]
                entities.append(entity)
            continue
        name_start = i
        while i < n and not text[i].isspace() and text[i] not in ">/":
            i += 1
        name = text[name_start:i].lower()
        if name not in _HTML_ENTITY_TYPES:
            raise _parse_error(
                f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, begin)}'
            )
        attributes, i = _read_attributes(text, i, name, begin)
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise _parse_error(
                f'Tag "span" must have class "tg-spoiler" at byte offset '
                f"{_byte_offset(text, begin)}"
            )
        stack.append(_OpenTag(name=name, offset=position, attributes=attributes))
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(plain), entities


def _strip_text(plain: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Trim surrounding whitespace as Telegram does, moving and clipping the entities."""
    stripped = plain.strip()
    if stripped == plain:
        return plain, entities
    shift = _utf16_len(plain[: len(plain) - len(plain.lstrip())])
    size = _utf16_len(stripped)
    kept: list[dict[str, Any]] = []
    for entity in entities:
        start = max(entity["offset"] - shift, 0)
        end = min(entity["offset"] + entity["length"] - shift, size)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


def strip_html(text: str) -> str:
    """The text Telegram shows for an HTML-formatted message (raises on malformed markup)."""
    return _strip_text(*parse_html(text))[0]


# --- the fake ----------------------------------------------------------------------------


Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class FakeTelegram:
    """Telegram Bot API state plus a Starlette app serving it (see the module docstring)."""

    def __init__(
        self,
        *,
        token: str | None = None,
        bot_id: int = DEFAULT_BOT_ID,
        username: str = DEFAULT_BOT_USERNAME,
        first_name: str = DEFAULT_BOT_FIRST_NAME,
        strict_webhook_url: bool = True,
        max_long_poll_seconds: float = 1.0,
    ) -> None:
        # When set, only this token is accepted; others get 401 Unauthorized (InvalidToken).
        self.token = token
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.strict_webhook_url = strict_webhook_url
        self.max_long_poll_seconds = max_long_poll_seconds
        self._lock = threading.Lock()
        self._chats: dict[int | str, _Chat] = {}
        self._updates: list[dict[str, Any]] = []
        self._calls: list[ApiCall] = []
        self._callback_answers: list[dict[str, Any]] = []
        self._chat_actions: list[dict[str, Any]] = []
        self._deleted: list[tuple[int | str, int]] = []
        self._commands: list[dict[str, Any]] = []
        self._blocked: set[int | str] = set()
        self._faults: list[_Fault] = []
        self._webhook: dict[str, Any] = self._no_webhook()
        self._handlers: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler)
            for name, handler in {
                "getMe": self._get_me,
                "logOut": self._true,
                "close": self._true,
                "getWebhookInfo": self._get_webhook_info,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getUpdates": self._get_updates,
                "sendMessage": self._send_message,
                "editMessageText": self._edit_message_text,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "answerCallbackQuery": self._answer_callback_query,
                "sendChatAction": self._send_chat_action,
                "deleteMessage": self._delete_message,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
            }.items()
        }
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self._no_file, methods=["GET"]),
            ]
        )

    # --- helpers for tests ------------------------------------------------------------

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; assigns `update_id` when missing. Returns the id."""
        with self._lock:
            update = copy.deepcopy(update)
            if "update_id" not in update:
                last = max((u["update_id"] for u in self._updates), default=0)
                update["update_id"] = last + 1
            for kind in ("message", "edited_message"):
                message = update.get(kind)
                if isinstance(message, dict) and "chat" in message and "message_id" in message:
                    chat = self._chat(message["chat"]["id"])
                    chat.incoming[message["message_id"]] = message
                    chat.info = dict(message["chat"])
                    chat.next_message_id = max(chat.next_message_id, message["message_id"] + 1)
            self._updates.append(update)
            self._updates.sort(key=lambda u: u["update_id"])
            return int(update["update_id"])

    def messages(self, chat_id: int | str) -> list[dict[str, Any]]:
        """The bot's messages in a chat (deleted ones left out), oldest first.

        Each: message_id, text (raw, as sent), plain (what users see), entities, parse_mode,
        reply_markup (dict or None), reply_to_message_id, date, edits (count), chat_id.
        """
        with self._lock:
            chat = self._chats.get(self._chat_key(chat_id))
            if chat is None:
                return []
            return [m.as_dict() for _, m in sorted(chat.messages.items())]

    def block_chat(self, chat_id: int | str) -> None:
        """Sends to this chat answer 403 "Forbidden: bot was blocked by the user"."""
        with self._lock:
            self._blocked.add(self._chat_key(chat_id))

    def rate_limit_next(self, n: int, retry_after: int = 1, method: str | None = None) -> None:
        """The next n calls (of `method`, or of any method) answer 429 with retry_after."""
        with self._lock:
            self._faults.append(_Fault(n, 429, retry_after, method))

    def fail_next(self, n: int, status: int = 502, method: str | None = None) -> None:
        """The next n calls (of `method`, or of any method) answer with `status`."""
        with self._lock:
            self._faults.append(_Fault(n, status, None, method))

    @property
    def callback_answers(self) -> list[dict[str, Any]]:
        """answerCallbackQuery calls: callback_query_id, text, show_alert, url, cache_time."""
        with self._lock:
            return [dict(a) for a in self._callback_answers]

    @property
    def chat_actions(self) -> list[dict[str, Any]]:
        """sendChatAction calls: chat_id, action."""
        with self._lock:
            return [dict(a) for a in self._chat_actions]

    @property
    def webhook(self) -> dict[str, Any]:
        """url ("" when none), secret_token, allowed_updates, drop_pending_updates, ..."""
        with self._lock:
            return copy.deepcopy(self._webhook)

    @property
    def commands(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._commands]

    @property
    def deleted(self) -> list[tuple[int | str, int]]:
        """(chat_id, message_id) of deleted messages."""
        with self._lock:
            return list(self._deleted)

    @property
    def calls(self) -> list[str]:
        """Canonical method names in arrival order (faulted calls included)."""
        with self._lock:
            return [c.method for c in self._calls]

    @property
    def requests(self) -> list[ApiCall]:
        """(method, params) per call, params decoded (JSON texts in forms parsed)."""
        with self._lock:
            return [ApiCall(c.method, copy.deepcopy(c.params)) for c in self._calls]

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._lock:
            return copy.deepcopy(self._updates)

    # --- HTTP plumbing ----------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        token = request.path_params["token"]
        if self.token is not None and token != self.token:
            return self._error(TelegramApiError(401, "Unauthorized"))
        entry = self._handlers.get(request.path_params["method"].lower())
        if entry is None:
            return self._error(TelegramApiError(404, "Not Found"))
        name, handler = entry
        try:
            params = await self._params(request)
        except TelegramApiError as exc:
            return self._error(exc)
        with self._lock:
            self._calls.append(ApiCall(name, params))
            fault = self._take_fault(name)
        if fault is not None:
            return self._error(fault)
        try:
            result = await handler(params)
        except TelegramApiError as exc:
            return self._error(exc)
        return JSONResponse({"ok": True, "result": result})

    async def _no_file(self, request: Request) -> Response:
        return self._error(TelegramApiError(404, "Not Found"))

    @staticmethod
    def _error(exc: TelegramApiError) -> JSONResponse:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": exc.status,
            "description": exc.description,
        }
        if exc.parameters:
            body["parameters"] = exc.parameters
        return JSONResponse(body, status_code=exc.status)

    def _take_fault(self, method: str) -> TelegramApiError | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.matches(method):
                fault.remaining -= 1
                if fault.retry_after is not None:
                    return TelegramApiError(
                        429,
                        f"Too Many Requests: retry after {fault.retry_after}",
                        {"retry_after": fault.retry_after},
                    )
                return TelegramApiError(fault.status, _status_phrase(fault.status))
        self._faults = [f for f in self._faults if f.remaining > 0]
        return None

    async def _params(self, request: Request) -> dict[str, Any]:
        raw: dict[str, Any] = dict(parse_qsl(request.url.query, keep_blank_values=True))
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        kind = content_type.split(";")[0].strip().lower()
        if not body:
            pass
        elif kind == "application/json":
            try:
                decoded = json.loads(body)
            except ValueError as exc:
                raise _bad_request("can't parse JSON object") from exc
            if not isinstance(decoded, dict):
                raise _bad_request("can't parse JSON object")
            raw.update(decoded)
        elif kind == "multipart/form-data":
            raw.update(_multipart_fields(content_type, body))
        else:
            raw.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return {key: _decode_param(key, value) for key, value in raw.items()}

    # --- state helpers (call with the lock held) --------------------------------------

    @staticmethod
    def _chat_key(chat_id: int | str) -> int | str:
        if isinstance(chat_id, str):
            try:
                return int(chat_id)
            except ValueError:
                return chat_id
        return chat_id

    def _chat(self, chat_id: int | str) -> _Chat:
        key = self._chat_key(chat_id)
        chat = self._chats.get(key)
        if chat is None:
            chat = self._chats[key] = _Chat()
        return chat

    @staticmethod
    def _no_webhook() -> dict[str, Any]:
        return {
            "url": "",
            "secret_token": None,
            "allowed_updates": None,
            "drop_pending_updates": False,
            "max_connections": None,
            "ip_address": None,
        }

    def _chat_json(self, chat_id: int | str) -> dict[str, Any]:
        known = self._chats.get(self._chat_key(chat_id))
        if known is not None and known.info is not None:
            return dict(known.info)
        if isinstance(chat_id, str):
            return {"id": -1001000000000, "type": "channel", "title": chat_id, "username": chat_id}
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "User"}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": f"Chat {chat_id}"}

    def _message_json(self, message: StoredMessage) -> dict[str, Any]:
        result: dict[str, Any] = {
            "message_id": message.message_id,
            "from": dict(self.bot_user),
            "chat": self._chat_json(message.chat_id),
            "date": message.date,
            "text": message.plain,
        }
        if message.entities:
            result["entities"] = [dict(e) for e in message.entities]
        if message.edit_date is not None:
            result["edit_date"] = message.edit_date
        if message.reply_markup is not None and "inline_keyboard" in message.reply_markup:
            result["reply_markup"] = message.reply_markup
        if message.reply_to_message_id is not None:
            chat = self._chat(message.chat_id)
            replied = chat.incoming.get(message.reply_to_message_id)
            if replied is None and message.reply_to_message_id in chat.messages:
                replied = self._message_json(chat.messages[message.reply_to_message_id])
            result["reply_to_message"] = replied or {
                "message_id": message.reply_to_message_id,
                "chat": self._chat_json(message.chat_id),
                "date": message.date,
            }
        return result

    def _stored(self, params: dict[str, Any], missing: str) -> StoredMessage:
        if "inline_message_id" in params:
            raise _bad_request(missing)
        chat_id = _require(params, "chat_id")
        message_id = params.get("message_id")
        chat = self._chats.get(self._chat_key(chat_id))
        if not isinstance(message_id, int) or chat is None or message_id not in chat.messages:
            raise _bad_request(missing)
        return chat.messages[message_id]

    # --- methods --------------------------------------------------------------------------

    async def _true(self, params: dict[str, Any]) -> bool:
        return True

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(self.bot_user)

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            info: dict[str, Any] = {
                "url": self._webhook["url"],
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }
            if self._webhook["url"]:
                info["max_connections"] = self._webhook["max_connections"] or 40
                if self._webhook["ip_address"]:
                    info["ip_address"] = self._webhook["ip_address"]
                if self._webhook["allowed_updates"] is not None:
                    info["allowed_updates"] = list(self._webhook["allowed_updates"])
            return info

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url", "")).strip()
        secret = params.get("secret_token")
        allowed = params.get("allowed_updates")
        if url and self.strict_webhook_url:
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname:
                raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
            if (parts.port or 443) not in _WEBHOOK_PORTS:
                raise _bad_request(
                    "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
                )
        if secret is not None and not _SECRET_TOKEN.fullmatch(str(secret)):
            raise _bad_request("secret token contains unallowed characters")
        if allowed is not None and (
            not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed)
        ):
            raise _bad_request("can't parse allowed updates")
        drop = bool(params.get("drop_pending_updates", False))
        with self._lock:
            if not url:
                self._webhook = self._no_webhook()
            else:
                self._webhook = {
                    "url": url,
                    "secret_token": secret,
                    "allowed_updates": allowed,
                    "drop_pending_updates": drop,
                    "max_connections": params.get("max_connections"),
                    "ip_address": params.get("ip_address"),
                }
            if drop:
                self._updates.clear()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self._webhook = self._no_webhook()
            if params.get("drop_pending_updates"):
                self._updates.clear()
        return True

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        allowed = params.get("allowed_updates")
        deadline = time.monotonic() + min(timeout, self.max_long_poll_seconds)
        confirmed = False
        while True:
            with self._lock:
                if self._webhook["url"]:
                    raise TelegramApiError(
                        409,
                        "Conflict: can't use getUpdates method while webhook is active; "
                        "use deleteWebhook to delete the webhook first",
                    )
                # The offset confirms what came before it once, when the request arrives,
                # as Telegram does: a long poll still open does not keep confirming.
                if not confirmed and offset < 0:
                    self._updates = self._updates[offset:]
                elif not confirmed and offset > 0:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                confirmed = True
                if allowed:
                    self._updates = [u for u in self._updates if _update_type(u) in allowed]
                if self._updates or time.monotonic() >= deadline:
                    return copy.deepcopy(self._updates[:limit])
            await asyncio.sleep(0.02)

    def _text_and_entities(self, params: dict[str, Any]) -> tuple[str, str, list[Any]]:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad_request("message text is empty")
        parse_mode = params.get("parse_mode")
        entities: list[Any] = []
        if parse_mode is None or parse_mode == "":
            plain = text
            given = params.get("entities")
            entities = given if isinstance(given, list) else []
        elif str(parse_mode).lower() == "html":
            plain, entities = parse_html(text)
        elif str(parse_mode).lower() in {"markdown", "markdownv2"}:
            plain = text
        else:
            raise _bad_request("unsupported parse_mode")
        plain, entities = _strip_text(plain, entities)
        if not plain:
            raise _bad_request("message text is empty")
        if len(plain) > MAX_MESSAGE_LENGTH:
            raise _bad_request("message is too long")
        return text, plain, entities

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _require(params, "chat_id")
        text, plain, entities = self._text_and_entities(params)
        markup = _reply_markup(params)
        reply_to = params.get("reply_to_message_id")
        reply_parameters = params.get("reply_parameters")
        if isinstance(reply_parameters, dict):
            reply_to = reply_parameters.get("message_id", reply_to)
        with self._lock:
            if self._chat_key(chat_id) in self._blocked:
                raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
            chat = self._chat(chat_id)
            message = StoredMessage(
                chat_id=self._chat_key(chat_id),
                message_id=chat.next_message_id,
                text=text,
                plain=plain,
                entities=entities,
                parse_mode=params.get("parse_mode"),
                reply_markup=markup,
                reply_to_message_id=int(reply_to) if reply_to is not None else None,
                date=int(time.time()),
            )
            chat.next_message_id += 1
            chat.messages[message.message_id] = message
            return self._message_json(message)

    async def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        text, plain, entities = self._text_and_entities(params)
        markup = _reply_markup(params)
        with self._lock:
            message = self._stored(params, "message to edit not found")
            if (
                message.plain == plain
                and message.entities == entities
                and message.reply_markup == markup
            ):
                raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
            message.text = text
            message.plain = plain
            message.entities = entities
            message.parse_mode = params.get("parse_mode")
            message.reply_markup = markup
            message.edits += 1
            message.edit_date = int(time.time())
            return self._message_json(message)

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        markup = _reply_markup(params)
        with self._lock:
            message = self._stored(params, "message to edit not found")
            if message.reply_markup == markup:
                raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
            message.reply_markup = markup
            message.edits += 1
            message.edit_date = int(time.time())
            return self._message_json(message)

    async def _delete_message(self, params: dict[str, Any]) -> bool:
        with self._lock:
            message = self._stored(params, "message to delete not found")
            del self._chats[message.chat_id].messages[message.message_id]
            self._deleted.append((message.chat_id, message.message_id))
        return True

    async def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = params.get("callback_query_id")
        if not query_id:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        answer = {
            "callback_query_id": str(query_id),
            "text": params.get("text"),
            "show_alert": bool(params.get("show_alert", False)),
            "url": params.get("url"),
            "cache_time": params.get("cache_time"),
        }
        with self._lock:
            self._callback_answers.append(answer)
        return True

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat_id = _require(params, "chat_id")
        action = params.get("action")
        if action not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        with self._lock:
            if self._chat_key(chat_id) in self._blocked:
                raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
            self._chat_actions.append({"chat_id": self._chat_key(chat_id), "action": action})
        return True

    async def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse BotCommand JSON object")
            if not _BOT_COMMAND.fullmatch(str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        with self._lock:
            self._commands = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._commands]

    async def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self._commands = []
        return True


# --- request decoding --------------------------------------------------------------------


def _status_phrase(status: int) -> str:
    phrases = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
    return phrases.get(status, f"Error {status}")


def _decode_param(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, str] = {}
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename():
            continue  # uploaded files are not modelled
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            fields[name] = payload.decode(part.get_content_charset() or "utf-8")
    return fields


def _require(params: dict[str, Any], key: str) -> Any:
    value = params.get(key)
    if value is None or value == "":
        raise _bad_request(f"{key} is empty")
    return value


def _update_type(update: dict[str, Any]) -> str | None:
    return next((key for key in update if key in UPDATE_TYPES), None)


def _reply_markup(params: dict[str, Any]) -> dict[str, Any] | None:
    markup = params.get("reply_markup")
    if markup is None or markup == "":
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    keyboard = markup.get("inline_keyboard")
    if keyboard is None:
        return markup  # reply keyboards, ForceReply, ReplyKeyboardRemove: kept, not echoed
    if not isinstance(keyboard, list) or not all(isinstance(row, list) for row in keyboard):
        raise _bad_request('can\'t parse inline keyboard button: field "inline_keyboard"')
    for row in keyboard:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad_request("can't parse inline keyboard button: Text buttons are unallowed")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise _bad_request("BUTTON_DATA_INVALID")
            url = button.get("url")
            if url is not None and not urlsplit(str(url)).scheme:
                raise _bad_request("BUTTON_URL_INVALID")
    return markup


# --- update builders ---------------------------------------------------------------------


def _user_json(user_id: int, first_name: str, username: str | None) -> dict[str, Any]:
    user: dict[str, Any] = {
        "id": user_id,
        "is_bot": False,
        "first_name": first_name,
        "language_code": "en",
    }
    if username is not None:
        user["username"] = username
    return user


def _private_chat(chat_id: int, first_name: str, username: str | None) -> dict[str, Any]:
    chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": first_name}
    if username is not None:
        chat["username"] = username
    return chat


def text_update(
    update_id: int,
    chat_id: int,
    user_id: int,
    text: str,
    *,
    username: str | None = None,
    first_name: str = "Ada",
    message_id: int | None = None,
    date: int | None = None,
) -> dict[str, Any]:
    """A private-chat text message Update; "/cmd ..." texts carry a bot_command entity."""
    message: dict[str, Any] = {
        "message_id": message_id if message_id is not None else update_id,
        "from": _user_json(user_id, first_name, username),
        "chat": _private_chat(chat_id, first_name, username),
        "date": date if date is not None else int(time.time()),
        "text": text,
    }
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(command)}]
    return {"update_id": update_id, "message": message}


def callback_update(
    update_id: int,
    chat_id: int,
    user_id: int,
    data: str,
    *,
    message_id: int,
    message_text: str = "Choose an option",
    first_name: str = "Ada",
    username: str | None = None,
    callback_query_id: str | None = None,
    bot_id: int = DEFAULT_BOT_ID,
    bot_username: str = DEFAULT_BOT_USERNAME,
) -> dict[str, Any]:
    """A callback_query Update: a user pressed an inline button on the bot's message."""
    return {
        "update_id": update_id,
        "callback_query": {
            "id": callback_query_id or str(4_000_000_000_000_000 + update_id),
            "from": _user_json(user_id, first_name, username),
            "chat_instance": str(-(abs(chat_id) * 7919 + bot_id % 1000)),
            "data": data,
            "message": {
                "message_id": message_id,
                "from": {
                    "id": bot_id,
                    "is_bot": True,
                    "first_name": DEFAULT_BOT_FIRST_NAME,
                    "username": bot_username,
                },
                "chat": _private_chat(chat_id, first_name, username),
                "date": int(time.time()),
                "text": message_text,
            },
        },
    }
