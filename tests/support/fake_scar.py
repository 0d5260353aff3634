"""A local fake of SCAR's HTTP test adapter (gpt153/scar at b28c35e), for `HttpScarClient`.

Serve `FakeScar().app` with `tests.support.fake_http.FakeServer`. It behaves as SCAR does:
- `POST /test/message` answers `{success, conversationId, message}` at once; the message is
  processed in the background, one at a time per conversation (at most `max_concurrent`
  conversations at once), listed in `GET /health/concurrency` before the POST returns.
- `GET /test/messages/{id}` lists only what SCAR sent. `PUT /test/mode` sets the global
  stream/batch mode (stream at start). Bad bodies and unknown routes answer as Express does.
- Built-ins (`/help /status /getcwd /clone /repos /repo /reset /reset-context /load-commands
  /commands /templates`) answer after `builtin_delay` with SCAR's wording (see
  `fake_scar_texts`). The workspace holds folders of files; codebases (with their commands),
  conversation links and AI sessions live in SCAR's database and survive `restart()`.
- AI commands (`/command-invoke`, a global template such as `/plan`, any plain text, which
  SCAR's `router` template handles) resume the conversation's session: batch mode sends
  "The agent is on the case...", a heartbeat per simulated minute, then one joined answer;
  stream mode sends each text block and a `🔧 TOOL` message per tool call.
State is guarded by a lock: the server runs in another thread than the test.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tests.support import fake_scar_texts as texts
from tests.support.fake_scar_state import Layout, ScarState, slugify
from tests.support.fake_scar_texts import (
    ACK,
    CLAUDE_FAILURE,
    DEFAULT_COMMANDS,
    ENOENT_SCANDIR,
    NO_CODEBASE,
    NO_REPOSITORIES,
    UNEXPECTED,
)

__all__ = [
    "ACK",
    "CLAUDE_FAILURE",
    "DEFAULT_COMMANDS",
    "ENOENT_SCANDIR",
    "NO_CODEBASE",
    "NO_REPOSITORIES",
    "AiRun",
    "FakeScar",
    "Layout",
    "slugify",
    "split_args",
]

Mode = Literal["stream", "batch"]
ToolInput = str | dict[str, Any] | None  # a str: the main input (see format_tool_call)
Turn = str | tuple[str, ToolInput]  # a text block, or a tool call (name, input)
_ARGUMENT = re.compile(r"\"[^\"]+\"|'[^']+'|\S+")


def _timestamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _unquote(arg: str) -> str:
    quoted = any(arg.startswith(q) and arg.endswith(q) for q in "\"'")
    return arg[1:-1] if quoted else arg


def split_args(text: str) -> list[str]:
    """SCAR's own argument split: quoted strings or runs of non-space, quotes removed."""
    return [_unquote(a) for a in _ARGUMENT.findall(text)]


@dataclass(frozen=True)
class AiRun:
    """One AI command as SCAR started it."""

    conversation_id: str
    command: str  # the command-invoke name, a template name, or "router" for plain text
    args: tuple[str, ...]  # SCAR's parsed arguments ($1, $2, ...)
    args_text: str  # the raw text after the command name
    session: int  # SCAR's session id
    session_commands: tuple[str, ...]  # AI commands completed earlier in the same session
    files: dict[str, str]  # the codebase folder's files when it started
    codebase: str | None
    mode: Mode


@dataclass
class _Script:
    result: str | Callable[[str], str] | None = None  # None: `default_result`
    delay: float = 0.0
    progress: int = 0
    fail: bool = False
    turns: list[Turn] | None = None
    tools: tuple[tuple[str, ToolInput], ...] = ()
    hang: bool = False


@dataclass(frozen=True)
class _Job:
    cid: str
    text: str
    generation: int


class FakeScar(ScarState):
    """SCAR's HTTP adapter and state, with a Starlette-level ASGI app (see module docstring)."""

    def __init__(
        self,
        *,
        concurrency_route: bool = True,
        mode_route: bool = True,
        builtin_delay: float = 0.005,
        default_owner: str = "acme",
        web_url: str = "https://github.com",
        files_source: Callable[[str], dict[str, str]] | None = None,
        clone_delay: float | None = None,
        max_concurrent: int = 10,
        bot_name: str = "The agent",
    ) -> None:
        super().__init__(default_owner=default_owner, web_url=web_url, files_source=files_source)
        self.concurrency_route = concurrency_route
        self.mode_route = mode_route
        self.builtin_delay = builtin_delay
        self.clone_delay = builtin_delay if clone_delay is None else clone_delay
        self.max_concurrent = max_concurrent
        self.ack = f"{bot_name} is on the case..."
        self.mode: Mode = "stream"
        self.restarts = 0
        self.errors: list[BaseException] = []  # the fake's own bugs, answered as SCAR would
        self._messages: dict[str, list[dict[str, str]]] = {}
        self._active: dict[str, asyncio.Task[None]] = {}
        self._queues: dict[str, deque[str]] = {}
        self._generation = 0
        self._scripts: dict[str, _Script] = {}
        self._claude_failures = 0
        self._restart_on: set[str] = set()
        self._failing = 0
        self._fail_status = 503
        self._fail_error = "Internal server error"
        self._invocations: list[str] = []
        self._ai_runs: list[AiRun] = []
        self._timings: list[tuple[str, str, float, float]] = []

    # --- setting the scene ----------------------------------------------------------------

    def script(
        self,
        command: str,
        result: str | None = None,
        *,
        delay: float = 0.0,
        progress: int = 0,
        fail: bool = False,
        turns: Sequence[Turn] | None = None,
        tools: Sequence[tuple[str, ToolInput]] = (),
    ) -> None:
        """How AI command `command` runs: `tools` calls, then `turns` text blocks (or one
        block: `result`, None for `default_result`), spread over `delay` seconds, with
        `progress` heartbeats (batch mode). `fail`: Claude dies (tools only, then
        CLAUDE_FAILURE). A turn may itself be a tool call `(name, input)`."""
        with self._lock:
            self._scripts[command] = _Script(
                result, delay, progress, fail, None if turns is None else list(turns), tuple(tools)
            )

    def on_command(self, command: str, fn: Callable[[str], str]) -> None:
        """Answer `command` with `fn(args_text)`."""
        with self._lock:
            self._scripts.setdefault(command, _Script()).result = fn

    def hang(self, command: str) -> None:
        """`command` acknowledges (and sends its heartbeats), then never finishes; a restart
        kills it and forgets the hang."""
        with self._lock:
            self._scripts.setdefault(command, _Script()).hang = True

    def claude_failures(self, n: int) -> None:
        """The next n AI commands answer CLAUDE_FAILURE (after the ACK in batch mode)."""
        with self._lock:
            self._claude_failures = n

    def restart_when(self, command: str) -> None:
        """SCAR restarts once, the next time `command` (an AI command, or a built-in such as
        "clone") starts running: after its ACK in batch mode, before a built-in answers."""
        with self._lock:
            self._restart_on.add(command)

    def restart(self) -> None:
        """SCAR restarts: mode, stored messages, queues and work in flight are gone; the
        workspace, codebases, links and sessions (SCAR's database) stay."""
        with self._lock:
            tasks = self._restart_locked()
        self._cancel(tasks)

    def fail_next(self, n: int, status: int = 503, error: str = "Internal server error") -> None:
        """Answer the next n HTTP requests with `status` and `{"error": error}`."""
        with self._lock:
            self._failing, self._fail_status, self._fail_error = n, status, error

    # --- looking at it --------------------------------------------------------------------

    @property
    def invocations(self) -> list[str]:
        """Every message text SCAR accepted, in order, across conversations and restarts."""
        with self._lock:
            return list(self._invocations)

    @property
    def ai_runs(self) -> list[AiRun]:
        with self._lock:
            return list(self._ai_runs)

    @property
    def timings(self) -> list[tuple[str, str, float, float]]:
        """(conversation, message, start, end) of SCAR's processing of each finished message."""
        with self._lock:
            return list(self._timings)

    def messages(self, conversation_id: str) -> list[dict[str, str]]:
        """The listing `GET /test/messages/{id}` gives: what SCAR sent, oldest first."""
        with self._lock:
            return [dict(m) for m in self._messages.get(conversation_id, [])]

    def sent_texts(self, conversation_id: str) -> list[str]:
        return [m["message"] for m in self.messages(conversation_id)]

    def busy_conversations(self) -> set[str]:
        """Conversations with a message running or waiting."""
        with self._lock:
            return set(self._active) | {cid for cid, q in self._queues.items() if q}

    # --- HTTP -----------------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        with self._lock:
            failing = self._failing > 0
            self._failing -= failing
            status, error = self._fail_status, self._fail_error
        if failing:
            response: Response = JSONResponse({"error": error}, status_code=status)
        else:
            response = await self._route(Request(scope, receive))
        await response(scope, receive, send)

    async def _route(self, request: Request) -> Response:
        method = request.method
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        routes: list[tuple[str, str, Callable[[Request, str | None], Any]]] = [
            ("POST", r"/test/message", self._post_message),
            ("GET", r"/test/messages/([^/]+)", self._get_messages),
            ("DELETE", r"/test/messages(?:/([^/]+))?", self._delete_messages),
            ("GET", r"/health", self._health),
            ("GET", r"/health/db", self._health_db),
        ]
        if self.mode_route:
            routes.append(("PUT", r"/test/mode", self._put_mode))
        if self.concurrency_route:
            routes.append(("GET", r"/health/concurrency", self._concurrency))
        for verb, pattern, handler in routes:
            found = re.fullmatch(pattern + "/?", path, re.IGNORECASE)
            if verb == method and found:
                param = found.group(1) if found.groups() else None
                result: Response = await handler(request, param and unquote(param))
                return result
        return _html(404, f"Cannot {method} {path}")

    async def _json_body(self, request: Request) -> Any:
        """express.json(): the parsed body, None when not JSON, or an error page."""
        mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if mime != "application/json":
            return None
        body = await request.body()
        if len(body) > 100 * 1024:
            return _html(413, "Payload Too Large")
        if not body:
            return {}
        try:
            text = body.decode("utf-8")
            if text.lstrip()[:1] not in ("{", "["):
                raise ValueError("strict mode: objects and arrays only")
            return json.loads(text, parse_constant=_reject_constant)
        except ValueError:
            return _html(400, "Bad Request")

    async def _post_message(self, request: Request, _param: str | None) -> Response:
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        if body is None:  # destructuring an undefined body throws
            return JSONResponse({"error": "Internal server error"}, status_code=500)
        fields = body if isinstance(body, dict) else {}
        cid, text = fields.get("conversationId"), fields.get("message")
        if not isinstance(cid, str) or not isinstance(text, str):
            error = "conversationId and message must be strings"
            return JSONResponse({"error": error}, status_code=400)
        if not cid or not text:
            return JSONResponse({"error": "conversationId and message required"}, status_code=400)
        with self._lock:
            self._invocations.append(text)
            self._acquire(cid, text)
        return JSONResponse({"success": True, "conversationId": cid, "message": text})

    async def _get_messages(self, _request: Request, cid: str | None) -> Response:
        assert cid is not None
        return JSONResponse({"conversationId": cid, "messages": self.messages(cid)})

    async def _delete_messages(self, _request: Request, cid: str | None) -> Response:
        with self._lock:
            if cid is None:
                self._messages.clear()
            else:
                self._messages.pop(cid, None)
        return JSONResponse({"success": True})

    async def _put_mode(self, request: Request, _param: str | None) -> Response:
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        if body is None:
            return _html(500, "Internal Server Error")
        mode = body.get("mode") if isinstance(body, dict) else None
        if mode not in ("stream", "batch"):
            return JSONResponse({"error": 'mode must be "stream" or "batch"'}, status_code=400)
        with self._lock:
            self.mode = mode
        return JSONResponse({"success": True, "mode": mode})

    async def _concurrency(self, _request: Request, _param: str | None) -> Response:
        with self._lock:
            queued = [
                {"conversationId": cid, "queuedMessages": len(q)} for cid, q in self._queues.items()
            ]
            stats = {
                "status": "ok",
                "active": len(self._active),
                "queuedTotal": sum(len(q) for q in self._queues.values()),
                "queuedByConversation": queued,
                "maxConcurrent": self.max_concurrent,
                "activeConversationIds": list(self._active),
            }
        return JSONResponse(stats)

    async def _health(self, _request: Request, _param: str | None) -> Response:
        return JSONResponse({"status": "ok"})

    async def _health_db(self, _request: Request, _param: str | None) -> Response:
        return JSONResponse({"status": "ok", "database": "connected"})

    # --- the conversation lock manager ----------------------------------------------------

    def _acquire(self, cid: str, text: str) -> None:
        if cid in self._active or len(self._active) >= self.max_concurrent:
            self._queues.setdefault(cid, deque()).append(text)
            return
        job = _Job(cid, text, self._generation)
        self._active[cid] = asyncio.get_running_loop().create_task(self._process(job))

    def _finished(self, cid: str) -> None:
        del self._active[cid]
        self._next(cid)
        if len(self._active) < self.max_concurrent:
            waiting = [c for c, q in self._queues.items() if q and c not in self._active]
            if waiting:
                self._next(waiting[0])

    def _next(self, cid: str) -> None:
        queue = self._queues.get(cid)
        if not queue:  # an emptied queue stays listed until its last message is done
            self._queues.pop(cid, None)
            return
        self._acquire(cid, queue.popleft())

    async def _process(self, job: _Job) -> None:
        start = time.monotonic()
        try:
            await self._handle(job)
        except Exception as exc:  # a bug in the fake: answer as SCAR's catch-all would
            self.errors.append(exc)
            self._send(job, UNEXPECTED)
        with self._lock:
            if job.generation == self._generation:
                self._timings.append((job.cid, job.text, start, time.monotonic()))
                self._finished(job.cid)

    def _restart_locked(self) -> list[asyncio.Task[None]]:
        self._generation += 1
        self.restarts += 1
        self.mode = "stream"
        self._messages.clear()
        tasks = list(self._active.values())
        self._active.clear()
        self._queues.clear()
        for script in self._scripts.values():
            script.hang = False
        return tasks

    @staticmethod
    def _cancel(tasks: list[asyncio.Task[None]]) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            current = asyncio.current_task()
        except RuntimeError:
            running, current = None, None
        for task in tasks:
            if task is current:
                continue  # restart_when: the task itself returns at once
            if task.get_loop() is running:
                task.cancel()
            else:
                task.get_loop().call_soon_threadsafe(task.cancel)

    def _restarting(self, name: str) -> bool:
        with self._lock:
            if name not in self._restart_on:
                return False
            self._restart_on.discard(name)
            tasks = self._restart_locked()
        self._cancel(tasks)
        return True

    def _send(self, job: _Job, text: str) -> bool:
        """Store a sent message; False when SCAR restarted since `job` began (it is gone)."""
        with self._lock:
            if job.generation != self._generation:
                return False
            message = {
                "conversationId": job.cid,
                "message": text,
                "timestamp": _timestamp(),
                "direction": "sent",
            }
            self._messages.setdefault(job.cid, []).append(message)
            return True

    def _fail_ai(self, job: _Job, mode: Mode) -> None:
        """Claude Code failing: in stream mode its own error text comes through first (seen
        on the real SCAR with the AI unreachable), then SCAR's one error text."""
        if mode == "stream" and not self._send(job, texts.CLAUDE_STREAM_ERROR):
            return
        self._send(job, CLAUDE_FAILURE)

    # --- handling a message (orchestrator.ts) ---------------------------------------------

    async def _handle(self, job: _Job) -> None:
        text = job.text
        matches = list(_ARGUMENT.finditer(text))
        if not text.startswith("/"):
            with self._lock:
                linked = self._conversation(job.cid).codebase_id is not None
            if not linked:
                await self._reply(job, NO_CODEBASE)
            else:
                await self._run_ai(job, "router", [text], text)
            return
        command = matches[0].group(0)[1:] if matches else ""
        args = [_unquote(m.group(0)) for m in matches[1:]]
        if command in texts.DETERMINISTIC:
            delay = self.clone_delay if command == "clone" else self.builtin_delay
            await asyncio.sleep(delay)
            if not self._restarting(command):
                with self._lock:
                    answer = self._builtin(job.cid, command, args)
                self._send(job, answer)
        elif command == "command-invoke":
            rest = text[matches[1].end() :].strip() if len(matches) > 1 else ""
            await self._invoke(job, args, rest)
        elif command in texts.GLOBAL_TEMPLATES:
            rest = text[matches[0].end() :].strip()
            await self._run_ai(job, command, args, rest)
        else:
            await self._reply(
                job,
                f"Unknown command: /{command}\n\n"
                "Type /help for available commands or /templates for command templates.",
            )

    async def _reply(self, job: _Job, text: str) -> None:
        await asyncio.sleep(self.builtin_delay)
        self._send(job, text)

    async def _invoke(self, job: _Job, args: list[str], rest: str) -> None:
        if not args:
            await self._reply(job, "Usage: /command-invoke <name> [args...]")
            return
        name = args[0]
        with self._lock:
            codebase, path, full, readable = self._command_file(job.cid, name)
        if codebase is None:
            await self._reply(job, NO_CODEBASE)
        elif path is None:
            await self._reply(job, f"Command '{name}' not found. Use /commands to see available.")
        elif not readable:
            error = f"ENOENT: no such file or directory, open '{full}'"
            await self._reply(job, f"Failed to read command file: {error}")
        else:
            await self._run_ai(job, name, args[1:], rest)

    async def _run_ai(self, job: _Job, name: str, args: list[str], args_text: str) -> None:
        with self._lock:
            conversation = self._conversation(job.cid)
            session = self._session_for(conversation, name)
            codebase = self._linked(conversation)
            folder = codebase.cwd.rsplit("/", 1)[-1] if codebase else None
            script = self._scripts.get(name, _Script())
            failing = self._claude_failures > 0
            self._claude_failures -= failing
            mode = self.mode
            self._ai_runs.append(
                AiRun(
                    job.cid,
                    name,
                    tuple(args),
                    args_text,
                    session.id,
                    tuple(session.done),
                    dict(self._folders.get(folder or "", {})),
                    codebase.name if codebase else None,
                    mode,
                )
            )
        if mode == "batch" and not self._send(job, self.ack):
            return
        if self._restarting(name):
            return
        if failing:
            self._fail_ai(job, mode)
            return
        # (when, order, what): tool calls and text blocks spread over the delay, then the
        # heartbeats of each simulated minute (batch mode only). None: the result.
        events: list[Turn | None] = [*script.tools]
        if not script.fail and not script.hang:
            events += script.turns if script.turns is not None else [None]
        timeline = [(script.delay * (i + 1) / len(events), i, e) for i, e in enumerate(events)]
        beats = script.progress if mode == "batch" else 0
        beat_times = [script.delay * k / (beats + 1) for k in range(1, beats + 1)]
        timeline += [(at, -k, None) for k, at in enumerate(beat_times, 1)]
        timeline.sort(key=lambda t: (t[0], t[1] < 0, abs(t[1])))
        blocks: list[str] = []
        tool_calls = 0
        elapsed = 0.0
        for at, order, event in timeline:
            await asyncio.sleep(max(0.0, at - elapsed))
            elapsed = at
            if order < 0:
                note = f"⏱️ Still working... ({-order}m 0s, {tool_calls} tool calls)"
                if not self._send(job, note):
                    return
            elif isinstance(event, tuple):
                tool_calls += 1
                if mode == "stream" and not self._send(job, texts.format_tool_call(*event)):
                    return
            else:
                block = (
                    self._result(script.result, name, args, args_text, codebase)
                    if event is None
                    else event
                )
                if block:
                    blocks.append(block)
                    if mode == "stream" and not self._send(job, block):
                        return
        if script.hang:
            await asyncio.Event().wait()  # until a restart (or the server's end) cancels it
        if script.fail:
            self._fail_ai(job, mode)
            return
        if mode == "batch" and blocks and not self._send(job, texts.batch_message(blocks)):
            return
        with self._lock:
            if job.generation == self._generation:
                session.done.append(name)
                session.last_command = name


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _html(status: int, message: str) -> Response:
    headers = {"Content-Security-Policy": "default-src 'none'", "X-Content-Type-Options": "nosniff"}
    return HTMLResponse(texts.express_error_page(message), status_code=status, headers=headers)
