"""A local fake of the Anthropic Messages API that the real `anthropic` SDK can talk to.

Serve `FakeAnthropic().app` with `tests.support.fake_http.FakeServer` and point the SDK at it:

    fake = FakeAnthropic()
    fake.reply_tool("record_note", {"text": "buy milk"})
    fake.reply_text("Noted!")
    with FakeServer(fake.app) as server:
        client = AsyncAnthropic(api_key="k", base_url=server.url, max_retries=0)
        await client.messages.create(model="m", max_tokens=100, messages=[...])

Answers come from a FIFO of scripted turns (`reply_text`, `reply_tool`, `reply`); when it is
empty, `responder(request_json)` answers (by default a short friendly text).

The fake checks what the real API checks and a client could get wrong: the key (as
`x-api-key` or `Authorization: Bearer`; any key is accepted unless `api_key` is set), the
required fields, message roles and that every `tool_use` is answered by a `tool_result` in
the next message. Streaming is not supported (400).

Usage is an estimate: characters // 4. With a `cache_control` block, everything up to the
last such block (tools, then system, then messages, the API's own order) is the cacheable
prefix: `cache_creation_input_tokens` the first time a prefix is seen, `cache_read_input_tokens`
afterwards; `input_tokens` counts what follows it, as the real API reports. The API's minimum
cacheable length is not modelled.

Faults (each answered with Anthropic's error envelope):
- `fail_next(n, status=529)`: the next n `POST /v1/messages` get `status`.
- `down = True`: every request gets 500 until it is set back to False.
- `delay_seconds`: `POST /v1/messages` answers only after this delay (for client timeouts).
- `retry_after_seconds`: sent as `retry-after-ms` with 429/5xx answers so the SDK's retries
  take milliseconds in tests; set it to None to exercise the SDK's own backoff.

State lives behind a `threading.Lock`: the server runs in another thread than the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

DEFAULT_REPLY = "Hello! I'm here to help you shape your project. What would you like to build?"

Responder = Callable[[dict[str, Any]], dict[str, Any] | str]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    429: "Number of request tokens has exceeded your per-minute rate limit",
    500: "Internal server error",
    529: "Overloaded",
}
_MODELS = (
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-opus-4-6", "Claude Opus 4.6"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
)


def default_responder(request: dict[str, Any]) -> dict[str, Any] | str:
    return DEFAULT_REPLY


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _chars(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _tokens(chars: int) -> int:
    return max(1, chars // 4)


def _has_cache_control(segment: Any) -> bool:
    return isinstance(segment, Mapping) and segment.get("cache_control") is not None


class _Invalid(Exception):
    """A request the real API would refuse with 400 invalid_request_error."""


class FakeAnthropic:
    """Anthropic Messages API state plus a Starlette app serving it (see the module docstring)."""

    def __init__(self, *, api_key: str | None = None, responder: Responder | None = None) -> None:
        # When set, only this key is accepted; otherwise any non-empty key is.
        self.api_key = api_key
        self.responder: Responder = responder or default_responder
        self.down = False
        self.delay_seconds: float = 0.0
        # A per-request delay chosen from the request body (one project's turns slow).
        self.delay_when: Callable[[dict[str, Any]], float] | None = None
        self.retry_after_seconds: float | None = 0.01
        self._lock = threading.Lock()
        self._script: deque[dict[str, Any]] = deque()
        self._requests: list[dict[str, Any]] = []
        self._last_headers: dict[str, str] = {}
        self._failing = 0
        self._fail_status = 529
        self._cached_prefixes: set[str] = set()
        self._router = Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # --- scripting ----------------------------------------------------------------------

    def reply(self, content: list[dict[str, Any]], stop_reason: str = "end_turn") -> None:
        """Queue a turn with these content blocks (tool_use blocks get an id when missing)."""
        blocks = [dict(block) for block in content]
        for block in blocks:
            if block.get("type") == "tool_use":
                block.setdefault("id", _new_id("toolu_"))
        with self._lock:
            self._script.append({"content": blocks, "stop_reason": stop_reason})

    def reply_text(self, text: str) -> None:
        self.reply([{"type": "text", "text": text}])

    def reply_tool(self, name: str, input: dict[str, Any], *, text: str | None = None) -> str:
        """Queue a tool_use turn (optionally preceded by text); returns the tool_use id."""
        tool_use_id = _new_id("toolu_")
        blocks: list[dict[str, Any]] = []
        if text is not None:
            blocks.append({"type": "text", "text": text})
        blocks.append({"type": "tool_use", "id": tool_use_id, "name": name, "input": input})
        self.reply(blocks, stop_reason="tool_use")
        return tool_use_id

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._script)

    # --- faults -------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 529) -> None:
        """Answer the next n `POST /v1/messages` with `status` (529 overloaded, 500 ...)."""
        with self._lock:
            self._failing = n
            self._fail_status = status

    # --- introspection ------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """JSON bodies of every `POST /v1/messages` received (failed ones too), in order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def last_headers(self) -> dict[str, str]:
        """Headers (lower-case names) of the last `POST /v1/messages`."""
        with self._lock:
            return dict(self._last_headers)

    # --- ASGI entry point ---------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._router(scope, receive, send)

    # --- internals ----------------------------------------------------------------------

    def _error(
        self, status: int, message: str | None = None, error_type: str | None = None
    ) -> JSONResponse:
        error_type = error_type or _ERROR_TYPES.get(status, "api_error")
        message = message or _ERROR_MESSAGES.get(status, "Error")
        request_id = _new_id("req_")
        headers = {"request-id": request_id}
        if self.retry_after_seconds is not None and (status == 429 or status >= 500):
            headers["retry-after-ms"] = str(int(self.retry_after_seconds * 1000))
        body = {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
        return JSONResponse(body, status_code=status, headers=headers)

    def _auth_error(self, request: Request) -> JSONResponse | None:
        key = request.headers.get("x-api-key", "")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not key and scheme.lower() == "bearer":
            key = token.strip()
        if not key:
            return self._error(401, "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            return self._error(401, "invalid x-api-key")
        return None

    async def _models(self, request: Request) -> Response:
        if self.down:
            return self._error(500)
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        data = [
            {
                "id": model_id,
                "type": "model",
                "display_name": name,
                "created_at": "2026-02-17T00:00:00Z",
                "lifecycle": "active",
            }
            for model_id, name in _MODELS
        ]
        return JSONResponse(
            {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        )

    async def _messages(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self._requests.append(body if isinstance(body, dict) else {"_raw": raw.decode()})
            self._last_headers = {k.lower(): v for k, v in request.headers.items()}
            failing = self._failing > 0
            if failing:
                self._failing -= 1
            fail_status = self._fail_status
        delay = self.delay_seconds
        if self.delay_when is not None and isinstance(body, dict):
            delay += self.delay_when(body)
        if delay > 0:
            await asyncio.sleep(delay)
        if self.down:
            return self._error(500)
        if failing:
            return self._error(fail_status)
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        if not isinstance(body, dict):
            return self._error(400, "The request body is not valid JSON.")
        try:
            _validate(body)
        except _Invalid as exc:
            return self._error(400, str(exc))
        return JSONResponse(self._answer(body), headers={"request-id": _new_id("req_")})

    def _next_turn(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            return scripted
        answer = self.responder(body)
        if isinstance(answer, str):
            return {"content": [{"type": "text", "text": answer}], "stop_reason": "end_turn"}
        content = [dict(block) for block in answer["content"]]
        for block in content:
            if block.get("type") == "tool_use":
                block.setdefault("id", _new_id("toolu_"))
        uses_tool = any(block.get("type") == "tool_use" for block in content)
        return {
            "content": content,
            "stop_reason": answer.get("stop_reason", "tool_use" if uses_tool else "end_turn"),
        }

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        turn = self._next_turn(body)
        return {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": turn["content"],
            "stop_reason": turn["stop_reason"],
            "stop_sequence": None,
            "usage": self._usage(body, turn["content"]),
        }

    def _usage(self, body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, Any]:
        segments = _prompt_segments(body)
        total = sum(_chars(segment) for segment in segments)
        cache_creation = cache_read = 0
        breakpoints = [i for i, segment in enumerate(segments) if _has_cache_control(segment)]
        prefix_chars = 0
        if breakpoints:
            prefix = segments[: breakpoints[-1] + 1]
            prefix_chars = sum(_chars(segment) for segment in prefix)
            key = hashlib.sha256(json.dumps(prefix, sort_keys=True).encode()).hexdigest()
            with self._lock:
                seen = key in self._cached_prefixes
                self._cached_prefixes.add(key)
            if seen:
                cache_read = _tokens(prefix_chars)
            else:
                cache_creation = _tokens(prefix_chars)
        return {
            "input_tokens": _tokens(total - prefix_chars),
            "output_tokens": _tokens(_chars(content)),
            "cache_creation_input_tokens": cache_creation,
            "cache_read_input_tokens": cache_read,
        }


def _prompt_segments(body: dict[str, Any]) -> list[Any]:
    """The prompt as the API caches it: tools, then system, then message content blocks."""
    segments: list[Any] = list(body.get("tools") or [])
    system = body.get("system")
    if isinstance(system, list):
        segments.extend(system)
    elif system:
        segments.append(system)
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            segments.append({"role": message["role"], "text": content})
        else:
            # The role is part of the prefix: the same block said by the other side differs.
            segments.append({"role": message["role"]})
            segments.extend(content)
    return segments


def _validate(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _Invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _Invalid("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _Invalid("max_tokens: Input should be a valid positive integer")
    if body.get("stream"):
        raise _Invalid("stream: streaming is not supported by the fake")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise _Invalid("system: Input should be a valid string or list of text blocks")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _Invalid("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not tool.get("name") or "input_schema" not in tool:
                raise _Invalid(f"tools.{i}: a tool needs a name and an input_schema")
    messages = body.get("messages")
    if messages is None:
        raise _Invalid("messages: Field required")
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages: at least one message is required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list) or not all(
            isinstance(block, dict) and isinstance(block.get("type"), str) for block in content
        ):
            raise _Invalid(f"messages.{i}.content: Input should be a string or a list of blocks")
    _validate_tool_results(messages)


def _validate_tool_results(messages: list[dict[str, Any]]) -> None:
    """Each tool_use must be answered by a tool_result in the very next message, as the API
    demands; an agent loop that forgets one fails here as it would in production."""

    def blocks(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        content = message["content"]
        if isinstance(content, str):
            return []
        return [block for block in content if block["type"] == kind]

    for i, message in enumerate(messages):
        results = blocks(message, "tool_result")
        if results:
            if message["role"] != "user":
                raise _Invalid(f"messages.{i}: `tool_result` blocks belong in a user message")
            previous = messages[i - 1] if i > 0 else None
            asked = (
                set() if previous is None else {b.get("id") for b in blocks(previous, "tool_use")}
            )
            for result in results:
                if result.get("tool_use_id") not in asked:
                    raise _Invalid(
                        f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` "
                        f"blocks: {result.get('tool_use_id')}. Each `tool_result` block must "
                        "have a corresponding `tool_use` block in the previous message."
                    )
        uses = blocks(message, "tool_use")
        if uses and message["role"] == "assistant" and i + 1 < len(messages):
            answered = {b.get("tool_use_id") for b in blocks(messages[i + 1], "tool_result")}
            missing = [str(b.get("id")) for b in uses if b.get("id") not in answered]
            if missing:
                raise _Invalid(
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
