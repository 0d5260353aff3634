"""A local fake of an OpenAI-compatible chat completions server (vLLM, llama.cpp server,
Ollama) that the real `openai` SDK can talk to.

Serve `FakeOpenAI(model="llama3.2").app` with `tests.support.fake_http.FakeServer`, and
point the SDK at `server.url + "/v1"`, as an operator sets LLM_BASE_URL.

Answers come from a FIFO of scripted turns (`reply_text`, `reply_tool`, `reply_raw_tool`);
when it is empty, a short friendly text. `reply_raw_tool` sends an arguments string as
given: small self-hosted models do send JSON that does not parse, and the servers pass it
through untouched.

It checks what these servers check and a client could get wrong: the model is one it
serves (404 otherwise, as vLLM and Ollama answer), the roles, and, as OpenAI and vLLM do,
that each assistant `tool_calls` entry is answered by a `tool` message right after it and
that no `tool` message answers a call that was not made. With `api_key` set, only that
bearer token is accepted (llama.cpp's and vLLM's `--api-key`); otherwise any or none is.

How the servers differ, as options:
- `report_usage = False`: no `usage` in the answer (some builds and proxies leave it out).
- `tool_finish_reason = "stop"`: Ollama's finish reason even after tool calls.
- `cached_tokens`: reported in `usage.prompt_tokens_details` (llama.cpp and vLLM with
  prefix caching count a cached prefix; OpenAI counts it inside `prompt_tokens`).
Faults: `fail_next(n, status=503)`; `down = True` answers 500 to everything. Errors come
in OpenAI's envelope (`{"error": {"message", "type", "param", "code"}}`, as vLLM 0.11
sends them; older vLLM put the same fields at the top level with `"object": "error"`):
the SDK raises by the status either way, so the client reads nothing from the body.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

DEFAULT_REPLY = "Hello! What would you like to build?"
_ROLES = ("system", "user", "assistant", "tool")


def _tokens(value: Any) -> int:
    return max(1, len(json.dumps(value, ensure_ascii=False)) // 4)


class _Invalid(Exception):
    pass


class FakeOpenAI:
    def __init__(self, *, model: str = "llama3.2", api_key: str | None = None) -> None:
        self.model = model
        self.api_key = api_key
        self.report_usage = True
        self.tool_finish_reason = "tool_calls"
        self.cached_tokens: int | None = None
        self.down = False
        self._lock = threading.Lock()
        self._script: deque[dict[str, Any]] = deque()
        self._requests: list[dict[str, Any]] = []
        self._last_headers: dict[str, str] = {}
        self._failing = 0
        self._fail_status = 503
        self._router = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # --- scripting ----------------------------------------------------------------------

    def reply_text(self, text: str) -> None:
        with self._lock:
            self._script.append({"content": text, "tool_calls": None})

    def reply_tool(self, name: str, arguments: dict[str, Any], *, text: str | None = None) -> str:
        return self.reply_raw_tool(name, json.dumps(arguments), text=text)

    def reply_raw_tool(self, name: str, arguments: str, *, text: str | None = None) -> str:
        """A tool call whose arguments string is sent exactly as given; returns its id."""
        call_id = "call_" + secrets.token_hex(8)
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        with self._lock:
            self._script.append({"content": text, "tool_calls": [call]})
        return call_id

    def fail_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._failing = n
            self._fail_status = status

    # --- introspection ------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Bodies of every `POST /v1/chat/completions` received, failed ones too."""
        with self._lock:
            return list(self._requests)

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def last_headers(self) -> dict[str, str]:
        with self._lock:
            return dict(self._last_headers)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._router(scope, receive, send)

    # --- internals ----------------------------------------------------------------------

    @staticmethod
    def _error(status: int, message: str, kind: str) -> JSONResponse:
        body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
        return JSONResponse(body, status_code=status)

    def _denied(self, request: Request) -> JSONResponse | None:
        if self.api_key is None:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.api_key:
            return self._error(401, "Invalid API Key", "authentication_error")
        return None

    async def _models(self, request: Request) -> Response:
        if self.down:
            return self._error(500, "Internal Server Error", "server_error")
        denied = self._denied(request)
        if denied is not None:
            return denied
        entry = {"id": self.model, "object": "model", "created": 1764547200, "owned_by": "local"}
        return JSONResponse({"object": "list", "data": [entry]})

    async def _completions(self, request: Request) -> Response:
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
        if self.down:
            return self._error(500, "Internal Server Error", "server_error")
        if failing:
            return self._error(self._fail_status, "Service Unavailable", "server_error")
        denied = self._denied(request)
        if denied is not None:
            return denied
        if not isinstance(body, dict):
            return self._error(400, "The request body is not valid JSON.", "BadRequestError")
        if body.get("model") != self.model:
            return self._error(
                404, f"The model `{body.get('model')}` does not exist.", "NotFoundError"
            )
        try:
            _validate(body)
        except _Invalid as exc:
            return self._error(400, str(exc), "BadRequestError")
        return JSONResponse(self._answer(body))

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            turn = self._script.popleft() if self._script else None
        turn = turn or {"content": DEFAULT_REPLY, "tool_calls": None}
        message: dict[str, Any] = {"role": "assistant", "content": turn["content"]}
        if turn["tool_calls"]:
            message["tool_calls"] = turn["tool_calls"]
        answer: dict[str, Any] = {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": self.tool_finish_reason if turn["tool_calls"] else "stop",
                }
            ],
        }
        if self.report_usage:
            prompt = _tokens(body["messages"]) + _tokens(body.get("tools") or [])
            completion = _tokens(message)
            usage: dict[str, Any] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            if self.cached_tokens is not None:
                usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
            answer["usage"] = usage
        return answer


def _validate(body: dict[str, Any]) -> None:
    if body.get("stream"):
        raise _Invalid("stream: streaming is not supported by the fake")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages: at least one message is required")
    for i, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict):
            raise _Invalid(f"tools[{i}]: expected a function tool")
        if not function.get("name") or not isinstance(function.get("parameters"), dict):
            raise _Invalid(f"tools[{i}].function: a name and a parameters schema are required")
    unanswered: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            raise _Invalid(f"messages[{i}].role: must be one of {', '.join(_ROLES)}")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in unanswered:
                raise _Invalid(
                    f"messages[{i}]: Invalid parameter: messages with role 'tool' must be a "
                    "response to a preceeding message with 'tool_calls'."
                )
            unanswered.discard(call_id)
            if not isinstance(message.get("content"), str):
                raise _Invalid(f"messages[{i}].content: a tool message needs text content")
            continue
        if unanswered:
            raise _Invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(sorted(unanswered))}"
            )
        content = message.get("content")
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if content is None and not calls:
                raise _Invalid(f"messages[{i}]: an assistant message needs content or tool_calls")
            for call in calls:
                try:  # servers that render earlier calls through a chat template (vLLM)
                    json.loads(call["function"]["arguments"])
                except (KeyError, TypeError, ValueError):
                    raise _Invalid(
                        f"messages[{i}].tool_calls: function.arguments must be a JSON string"
                    ) from None
                unanswered.add(call["id"])
        if content is not None and not isinstance(content, str | list):
            raise _Invalid(f"messages[{i}].content: must be a string or a list of parts")
    if unanswered:
        raise _Invalid(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'."
        )
