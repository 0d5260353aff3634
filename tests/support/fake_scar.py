"""A local fake of SCAR's HTTP test adapter, for the real `HttpScarClient` to talk to.

Serve `FakeScar().app` with `tests.support.fake_http.FakeServer`. It behaves like SCAR
(gpt153/scar) does:
- `POST /test/message` records the message as `received`, answers at once and processes it
  in the background, one message at a time per conversation (later ones queue); the running
  conversation is listed in `GET /health/concurrency` `activeConversationIds`, waiting ones
  in `queuedByConversation`.
- Built-ins answer in a few ms with SCAR's wording: `/clone <url>` adds the repository to
  `workspace`; `/repo <name>` opens a workspace folder (SCAR also takes a prefix: "/repo app"
  opens "app-server" when there is no "app"); `/command-invoke` needs an open repository and
  a command the repository has (`commands`).
- AI commands send "The agent is on the case..." (batch mode only, as SCAR does), `progress`
  heartbeats, then the result: one message in batch mode, one per paragraph in stream mode.
  SCAR starts in stream mode; clients switch it with `PUT /test/mode`.

Default results (`default_result`) are realistic enough for end-to-end tests:
`plan-feature-github` names `.agents/plans/<slug>.md`; `execute-github` says "Created branch
`feature/<slug>`" (or the branch given as second argument) and links
`<web_url>/<owner>/<repo>/pull/<next_pr_number>`; `validate` says "All checks passed ✅";
`merge-pr` says "Merged PR #<n>"; `prime` gives a short summary.

Switches for SCAR versions and faults: `concurrency_route=False` / `mode_route=False` make
those routes 404; `list_received=False` lists only SCAR's own messages; `queued_format="list"`
gives `queuedByConversation` as SCAR's `[{conversationId, queuedMessages}]`;
`fail_next(n, status)` answers the next n requests with a server error; `hang(command)` never
finishes a command. State is guarded by a `threading.Lock`: the server runs in another thread.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

ACK = "The agent is on the case..."
NO_CODEBASE = (
    "No codebase configured. Use /clone for a new repo or /repos to list your current repos "
    "you can switch to."
)
NO_REPOSITORIES = "No repositories found. Use /clone <repo-url> first."
DEFAULT_COMMANDS = frozenset(
    {"prime", "plan-feature-github", "execute-github", "validate", "merge-pr"}
)
_ARGUMENT = re.compile(r"\"[^\"]+\"|'[^']+'|\S+")


def _timestamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def split_args(text: str) -> list[str]:
    """SCAR's own argument split: quoted strings or runs of non-space, quotes removed."""
    return [
        a[1:-1] if len(a) > 1 and a[0] == a[-1] and a[0] in "\"'" else a
        for a in _ARGUMENT.findall(text)
    ]


def slugify(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words[:6]) or "feature"


@dataclass
class _Script:
    result: str | Callable[[str], str] | None  # None: the default result
    delay: float = 0.0
    progress: int = 0
    fail: bool = False
    hang: bool = False


@dataclass
class _Conversation:
    messages: list[dict[str, str]] = field(default_factory=list)
    codebase: str | None = None  # a workspace folder
    queue: deque[str] = field(default_factory=deque)
    active: bool = False


class FakeScar:
    """SCAR's HTTP adapter state plus a Starlette app serving it (see the module docstring)."""

    def __init__(
        self,
        *,
        concurrency_route: bool = True,
        mode_route: bool = True,
        list_received: bool = True,
        queued_format: Literal["dict", "list"] = "dict",
        builtin_delay: float = 0.005,
        default_owner: str = "acme",
        web_url: str = "https://github.com",
    ) -> None:
        self.concurrency_route = concurrency_route
        self.mode_route = mode_route
        self.list_received = list_received
        self.queued_format = queued_format
        self.builtin_delay = builtin_delay
        self.default_owner = default_owner
        self.web_url = web_url
        self.mode: Literal["stream", "batch"] = "stream"
        self.workspace: set[str] = set()  # folder names, as SCAR's /workspace holds them
        self.commands: set[str] = set(DEFAULT_COMMANDS)  # what every repository offers
        self.unclonable: set[str] = set()  # repository names whose clone fails
        self.next_pr_number = 1
        self._full_names: dict[str, str] = {}  # folder -> owner/name
        self._scripts: dict[str, _Script] = {}
        self._conversations: dict[str, _Conversation] = {}
        self._invocations: list[str] = []
        self._failing = 0
        self._fail_status = 503
        self._fail_error = "Internal server error"
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._router = Starlette(
            routes=[
                Route("/test/message", self._post_message, methods=["POST"]),
                Route("/test/messages/{conversation_id}", self._get_messages, methods=["GET"]),
                Route("/test/messages/{conversation_id}", self._delete, methods=["DELETE"]),
                Route("/test/messages", self._delete, methods=["DELETE"]),
                Route("/test/mode", self._put_mode, methods=["PUT"]),
                Route("/health/concurrency", self._concurrency, methods=["GET"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )

    # --- helpers for tests ------------------------------------------------------------

    def add_repo(self, full_name: str) -> None:
        """Put a repository in SCAR's workspace, as if it had been cloned earlier."""
        name = full_name.rsplit("/", 1)[-1]
        with self._lock:
            self.workspace.add(name)
            if "/" in full_name:
                self._full_names[name] = full_name

    def script(
        self,
        command: str,
        result: str | None = None,
        *,
        delay: float = 0.0,
        progress: int = 0,
        fail: bool = False,
    ) -> None:
        """How `command` answers: `result` (None: the default) after `delay` seconds and
        `progress` heartbeats; `fail` turns the result into SCAR's error report."""
        with self._lock:
            self._scripts[command] = _Script(result, delay, progress, fail)
            self.commands.add(command)

    def on_command(self, command: str, fn: Callable[[str], str]) -> None:
        """Answer `command` with `fn(args_text)`."""
        self.script(command)
        with self._lock:
            self._scripts[command].result = fn

    def hang(self, command: str) -> None:
        """`command` acknowledges, then never finishes."""
        with self._lock:
            script = self._scripts.setdefault(command, _Script(None))
            script.hang = True
            self.commands.add(command)

    def fail_next(self, n: int, status: int = 503, error: str = "Internal server error") -> None:
        """Answer the next n HTTP requests with `status` and `{"error": error}`."""
        with self._lock:
            self._failing = n
            self._fail_status = status
            self._fail_error = error

    @property
    def invocations(self) -> list[str]:
        """Every message text SCAR received, in order (across conversations)."""
        with self._lock:
            return list(self._invocations)

    def messages(self, conversation_id: str) -> list[dict[str, str]]:
        """All of a conversation's messages, received and sent, oldest first."""
        with self._lock:
            conversation = self._conversations.get(conversation_id)
            return [dict(m) for m in conversation.messages] if conversation else []

    def sent_texts(self, conversation_id: str) -> list[str]:
        return [m["message"] for m in self.messages(conversation_id) if m["direction"] == "sent"]

    def codebase(self, conversation_id: str) -> str | None:
        with self._lock:
            conversation = self._conversations.get(conversation_id)
            return conversation.codebase if conversation else None

    def busy_conversations(self) -> set[str]:
        with self._lock:
            return {cid for cid, c in self._conversations.items() if c.active}

    # --- ASGI entry point ---------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with self._lock:
                failing = self._failing > 0
                if failing:
                    self._failing -= 1
                status, error = self._fail_status, self._fail_error
            if failing:
                response = JSONResponse({"error": error}, status_code=status)
                await response(scope, receive, send)
                return
        await self._router(scope, receive, send)

    # --- routes -------------------------------------------------------------------------

    async def _post_message(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "Invalid JSON body"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "Invalid JSON body"}, status_code=400)
        cid, text = body.get("conversationId"), body.get("message")
        if not isinstance(cid, str) or not isinstance(text, str):
            return JSONResponse(
                {"error": "conversationId and message must be strings"}, status_code=400
            )
        if not cid or not text:
            return JSONResponse({"error": "conversationId and message required"}, status_code=400)
        # Listed as active before the answer goes out, as SCAR's lock manager does: a client
        # polling right after its POST must not see the conversation idle.
        with self._lock:
            conversation = self._conversations.setdefault(cid, _Conversation())
            conversation.messages.append(self._message(cid, text, "received"))
            self._invocations.append(text)
            start = not conversation.active
            if start:
                conversation.active = True
            else:
                conversation.queue.append(text)
        if start:
            task = asyncio.get_running_loop().create_task(self._drain(cid, text))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return JSONResponse({"success": True, "conversationId": cid, "message": text})

    async def _get_messages(self, request: Request) -> Response:
        cid = request.path_params["conversation_id"]
        messages = self.messages(cid)
        if not self.list_received:
            messages = [m for m in messages if m["direction"] == "sent"]
        return JSONResponse({"conversationId": cid, "messages": messages})

    async def _delete(self, request: Request) -> Response:
        cid = request.path_params.get("conversation_id")
        with self._lock:
            targets = [cid] if cid is not None else list(self._conversations)
            for target in targets:
                if target in self._conversations:
                    self._conversations[target].messages = []
        return JSONResponse({"success": True})

    async def _put_mode(self, request: Request) -> Response:
        if not self.mode_route:
            return PlainTextResponse("Cannot PUT /test/mode", status_code=404)
        try:
            mode = (await request.json()).get("mode")
        except (ValueError, AttributeError):
            mode = None
        if mode not in ("stream", "batch"):
            return JSONResponse({"error": 'mode must be "stream" or "batch"'}, status_code=400)
        with self._lock:
            self.mode = mode
        return JSONResponse({"success": True, "mode": mode})

    async def _concurrency(self, _request: Request) -> Response:
        if not self.concurrency_route:
            return PlainTextResponse("Cannot GET /health/concurrency", status_code=404)
        with self._lock:
            active = [cid for cid, c in self._conversations.items() if c.active]
            waiting = {cid: len(c.queue) for cid, c in self._conversations.items() if c.queue}
        queued: Any = waiting
        if self.queued_format == "list":
            queued = [{"conversationId": k, "queuedMessages": v} for k, v in waiting.items()]
        return JSONResponse(
            {
                "status": "ok",
                "active": len(active),
                "queuedTotal": sum(waiting.values()),
                "queuedByConversation": queued,
                "maxConcurrent": 10,
                "activeConversationIds": active,
            }
        )

    async def _health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # --- processing ---------------------------------------------------------------------

    async def _drain(self, cid: str, text: str) -> None:
        """Process `text`, then whatever queued behind it in the same conversation."""
        current = text
        while True:
            try:
                await self._handle(cid, current)
            except Exception:
                self._send(
                    cid, "⚠️ An unexpected error occurred. Try /reset to start a fresh session."
                )
            with self._lock:
                conversation = self._conversations[cid]
                if not conversation.queue:
                    conversation.active = False
                    return
                current = conversation.queue.popleft()

    async def _handle(self, cid: str, text: str) -> None:
        if not text.startswith("/"):
            if self.codebase(cid) is None:
                await self._answer(cid, NO_CODEBASE)
            else:
                await self._run_ai(cid, "chat", text)
            return
        command, _, rest = text[1:].partition(" ")
        if command == "clone":
            await self._answer(cid, self._clone(cid, rest.strip()))
        elif command == "repo":
            await self._answer(cid, self._repo(cid, rest.strip()))
        elif command == "command-invoke":
            await self._invoke(cid, rest.strip())
        else:
            await self._answer(
                cid,
                f"Unknown command: /{command}\n\n"
                "Type /help for available commands or /templates for command templates.",
            )

    async def _invoke(self, cid: str, rest: str) -> None:
        name, _, args = rest.partition(" ")
        if not name:
            await self._answer(cid, "Usage: /command-invoke <name> [args...]")
            return
        if self.codebase(cid) is None:
            await self._answer(cid, NO_CODEBASE)
            return
        with self._lock:
            known = name in self.commands
        if not known:
            await self._answer(cid, f"Command '{name}' not found. Use /commands to see available.")
            return
        await self._run_ai(cid, name, args.strip())

    async def _run_ai(self, cid: str, name: str, args: str) -> None:
        with self._lock:
            script = self._scripts.get(name) or _Script(None)
            batch = self.mode == "batch"
        if batch:
            self._send(cid, ACK)
        if script.hang:
            await asyncio.Event().wait()  # cancelled when the server shuts down
        step = script.delay / (script.progress + 1)
        for n in range(1, script.progress + 1):
            await asyncio.sleep(step)
            self._send(cid, f"⏱️ Still working... ({n}m 0s, {n * 7} tool calls)")
        await asyncio.sleep(step)
        if callable(script.result):
            result = script.result(args)
        elif script.result is not None:
            result = script.result
        else:
            result = self.default_result(name, args, self._full_name(cid))
        if script.fail:
            result = f"⚠️ Error: {result}. Try /reset if issue persists."
        if not result.strip():
            return  # SCAR sends nothing when the AI said nothing
        if batch:
            self._send(cid, result)
        else:
            for chunk in [c for c in result.split("\n\n") if c.strip()] or [result]:
                self._send(cid, chunk)

    def default_result(self, name: str, args: str, repo: str) -> str:
        """What SCAR plausibly answers to `name` when no script says otherwise."""
        words = split_args(args)
        if name == "prime":
            return (
                f"Primed on {repo}: a small web service with a README, a test suite and CI. "
                "Ready to plan features."
            )
        if name == "plan-feature-github":
            slug = slugify(" ".join(words))
            return (
                f"## Plan: {' '.join(words) or 'feature'}\n\n"
                f"Plan saved to `.agents/plans/{slug}.md` and posted on the issue.\n\n"
                "Steps:\n1. Add the data model\n2. Add the page and its route\n3. Add tests"
            )
        if name == "execute-github":
            plan = words[0] if words else ""
            found = re.search(r"\.agents/plans/([^/\s]+)\.md", plan)
            slug = found.group(1) if found else slugify(" ".join(words))
            branch = words[1] if len(words) > 1 else f"feature/{slug}"
            with self._lock:
                number = self.next_pr_number
                self.next_pr_number += 1
            return (
                f"Implemented the plan.\n\nCreated branch `{branch}` and opened pull request "
                f"{self.web_url}/{repo}/pull/{number}\n\nFiles changed: 4, tests added: 3."
            )
        if name == "validate":
            return "All checks passed ✅"
        if name == "merge-pr":
            merged = words[0].lstrip("#") if words else str(max(1, self.next_pr_number - 1))
            return f"Merged PR #{merged}"
        return f"Done: {name} {args}".strip()

    # --- built-ins ----------------------------------------------------------------------

    def _clone(self, cid: str, url: str) -> str:
        if not url:
            return "Usage: /clone <repo-url>"
        url = url.rstrip("/")
        name = url.rsplit("/", 1)[-1].removesuffix(".git")
        parts = url.removesuffix(".git").split("/")
        with self._lock:
            if name in self.unclonable:
                return (
                    f"Failed to clone repository: Command failed: git clone {url} "
                    f"/workspace/{name}\nfatal: repository '{url}' not found"
                )
            existed = name in self.workspace
            self.workspace.add(name)
            if len(parts) >= 2:
                self._full_names[name] = f"{parts[-2]}/{name}"
            self._conversations.setdefault(cid, _Conversation()).codebase = name
        if existed:
            return (
                f"Repository already cloned.\n\nLinked to existing codebase: {name}\n"
                f"Path: /workspace/{name}\n\nSession reset - starting fresh on next message."
            )
        return (
            f"Repository cloned successfully!\n\nCodebase: {name}\nPath: /workspace/{name}\n"
            f"✓ Loaded {len(self.commands)} commands\n\n"
            "Session reset - starting fresh on next message.\n\n"
            "You can now start asking questions about the code."
        )

    def _repo(self, cid: str, identifier: str) -> str:
        if not identifier:
            return "Usage: /repo <number|name> [pull]"
        name = identifier.split(" ", 1)[0]
        with self._lock:
            folders = sorted(self.workspace)
            if not folders:
                return NO_REPOSITORIES
            target: str | None
            if name.isdigit() and 1 <= int(name) <= len(folders):
                target = folders[int(name) - 1]
            else:
                # SCAR's order: exact name first, then the first folder with that prefix.
                matches = [f for f in folders if f == name] + [
                    f for f in folders if f.startswith(name)
                ]
                target = matches[0] if matches else None
            if target is None:
                return f"Repository not found: {name}\n\nUse /repos to see available repositories."
            self._conversations.setdefault(cid, _Conversation()).codebase = target
        return f"Switched to: {target}\n✓ Loaded {len(self.commands)} commands\n\nReady to work!"

    async def _answer(self, cid: str, text: str) -> None:
        await asyncio.sleep(self.builtin_delay)
        self._send(cid, text)

    def _full_name(self, cid: str) -> str:
        codebase = self.codebase(cid) or "project"
        with self._lock:
            return self._full_names.get(codebase, f"{self.default_owner}/{codebase}")

    def _send(self, cid: str, text: str) -> None:
        with self._lock:
            conversation = self._conversations.setdefault(cid, _Conversation())
            conversation.messages.append(self._message(cid, text, "sent"))

    @staticmethod
    def _message(cid: str, text: str, direction: str) -> dict[str, str]:
        return {
            "conversationId": cid,
            "message": text,
            "timestamp": _timestamp(),
            "direction": direction,
        }
