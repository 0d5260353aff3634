"""SCAR over its HTTP test adapter (`/test/*`), built to survive a worker dying mid-command.

SCAR keeps each conversation's messages in memory and processes them one at a time. The
conversation id is fixed per stored command, so a retry first looks at what that
conversation already holds: if our command was received, an earlier attempt sent it and
we only wait and read; otherwise we start clean (clear, select the repository, send).
A command that changes code is therefore never sent twice.

Some SCAR versions list only their own (`sent`) messages. Then "our command was
received" is read from the answers instead: anything after SCAR confirmed the switch to
our repository can only be the command's doing, because nothing else is sent after it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from project_orchestrator.config import Settings
from project_orchestrator.logging import get_logger
from project_orchestrator.scar.parsing import failure_reason, is_progress
from project_orchestrator.scar.protocol import (
    ScarCommandFailed,
    ScarInvocation,
    ScarOutput,
    ScarTimedOut,
    ScarUnavailable,
)

log = get_logger(__name__)

# A blip while waiting (SCAR busy, a proxy hiccup) should not throw away a long wait.
_POLL_FAILURES_TOLERATED = 3
_REQUEST_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_SWITCHED = "Switched to:"
_REPO_MISSING = ("No repositories found", "Repository not found")


@dataclass(frozen=True)
class _Message:
    text: str
    sent: bool  # SCAR's own answer; anything else is what SCAR received


class HttpScarClient:
    """`ScarClient` over SCAR's HTTP adapter (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float,
        poll_interval: float = 2.0,
        quiet_period: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_seconds = timeout_seconds
        self._poll_interval = poll_interval
        self._quiet_period = quiet_period
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=_REQUEST_TIMEOUT)
        self._batch_mode_set = False
        # None until asked; False once SCAR answered 404 (then a quiet period stands in).
        self._has_concurrency_route: bool | None = None

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def run(self, invocation: ScarInvocation) -> ScarOutput:
        deadline = time.monotonic() + self._timeout_seconds
        started = time.monotonic()
        cid = invocation.conversation_id
        try:
            await self._ensure_batch_mode()
            await self._settle(invocation, deadline)
            messages = await self._messages(cid)
            start = _resume_point(messages, invocation)
            if start is not None:
                log.info("scar.resuming", conversation_id=cid, command=invocation.command)
            else:
                await self._request("DELETE", f"/test/messages/{_path(cid)}")
                await self._open_repository(invocation, deadline)
                start = await self._send(invocation, invocation.text)
            messages = await self._wait(invocation, invocation.text, start, deadline)
            output = _output(messages[_start_of(messages, invocation.text, start) :])
        except ScarUnavailable as exc:
            # SCAR may have restarted, which resets its mode to streaming.
            self._batch_mode_set = False
            log.warning("scar.unavailable", conversation_id=cid, error=str(exc))
            raise
        except (ScarCommandFailed, ScarTimedOut) as exc:
            log.warning(
                "scar.failed", conversation_id=cid, command=invocation.command, error=str(exc)
            )
            raise
        log.info(
            "scar.finished",
            conversation_id=cid,
            command=invocation.command,
            messages=len(output.messages),
            duration_seconds=round(time.monotonic() - started, 3),
        )
        return output

    # --- steps --------------------------------------------------------------------------

    async def _ensure_batch_mode(self) -> None:
        if self._batch_mode_set:
            return
        # Batch mode: one result message per command instead of a stream of chunks.
        answer = await self._request("PUT", "/test/mode", json={"mode": "batch"}, allow_404=True)
        if answer is None:
            log.warning("scar.mode_unsupported", base_url=self._base_url)
        self._batch_mode_set = True

    async def _settle(self, invocation: ScarInvocation, deadline: float) -> None:
        """Let whatever an earlier attempt left running finish before reading its traces."""
        failures = 0
        while True:
            try:
                busy = await self._busy(invocation.conversation_id)
            except ScarUnavailable:
                failures += 1
                if failures > _POLL_FAILURES_TOLERATED:
                    raise
                busy = True
            if not busy:  # idle, or no way to tell
                return
            await self._pause(invocation, deadline)

    async def _open_repository(self, invocation: ScarInvocation, deadline: float) -> None:
        name = invocation.repo_name
        answer = await self._builtin(invocation, f"/repo {name}", deadline)
        state = _repo_state(answer, name)
        if state == "open":
            return
        if state == "failed":
            raise ScarCommandFailed(_repo_failure(invocation, answer), answer=answer)
        log.info("scar.cloning", conversation_id=invocation.conversation_id, repo=invocation.repo)
        answer = await self._builtin(invocation, f"/clone {invocation.repo_url}", deadline)
        if failure_reason(answer) is not None or answer.lstrip().startswith("Failed"):
            raise ScarCommandFailed(_repo_failure(invocation, answer), answer=answer)
        answer = await self._builtin(invocation, f"/repo {name}", deadline)
        if _repo_state(answer, name) != "open":
            raise ScarCommandFailed(
                f"SCAR cloned {invocation.repo} but still could not open it. "
                + _repo_failure(invocation, answer),
                answer=answer,
            )

    async def _builtin(self, invocation: ScarInvocation, text: str, deadline: float) -> str:
        """Send one of SCAR's built-in commands and return its (single) answer."""
        start = await self._send(invocation, text)
        messages = await self._wait(invocation, text, start, deadline, single_answer=True)
        answers = [
            m.text
            for m in messages[_start_of(messages, text, start) :]
            if m.sent and not is_progress(m.text)
        ]
        return answers[0] if answers else ""

    async def _send(self, invocation: ScarInvocation, text: str) -> int:
        """Post `text`; returns where its answers will start in the conversation's listing."""
        cid = invocation.conversation_id
        before = len(await self._messages(cid))
        await self._request("POST", "/test/message", json={"conversationId": cid, "message": text})
        log.info(
            "scar.sent",
            conversation_id=cid,
            command=invocation.command,
            step=text.split(" ", 1)[0],
        )
        return before

    async def _wait(
        self,
        invocation: ScarInvocation,
        text: str,
        start: int,
        deadline: float,
        *,
        single_answer: bool = False,
    ) -> list[_Message]:
        """Wait until SCAR is done with the conversation; returns its messages then."""
        cid = invocation.conversation_id
        failures = 0
        seen = -1
        quiet_since = time.monotonic()
        while True:
            try:
                if self._has_concurrency_route is not False:
                    busy = await self._busy(cid)
                    if busy is False:
                        return await self._messages(cid)
                if self._has_concurrency_route is False:
                    messages = await self._messages(cid)
                    now = time.monotonic()
                    if len(messages) != seen:
                        seen, quiet_since = len(messages), now
                    answered = any(
                        m.sent and not is_progress(m.text)
                        for m in messages[_start_of(messages, text, start) :]
                    )
                    if answered and (single_answer or now - quiet_since >= self._quiet_period):
                        return messages
                failures = 0
            except ScarUnavailable:
                failures += 1
                if failures > _POLL_FAILURES_TOLERATED:
                    raise
            await self._pause(invocation, deadline)

    async def _pause(self, invocation: ScarInvocation, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ScarTimedOut.after(invocation.command, self._timeout_seconds)
        await asyncio.sleep(min(self._poll_interval, remaining))

    # --- SCAR's routes --------------------------------------------------------------------

    async def _busy(self, conversation_id: str) -> bool | None:
        """Whether SCAR is processing or queueing the conversation; None if it cannot say."""
        if self._has_concurrency_route is False:
            return None
        stats = await self._request("GET", "/health/concurrency", allow_404=True)
        if stats is None:
            log.warning("scar.concurrency_route_missing", base_url=self._base_url)
            self._has_concurrency_route = False
            return None
        self._has_concurrency_route = True
        if not isinstance(stats, dict):
            raise ScarUnavailable("SCAR's status report had an unexpected shape.")
        active = stats.get("activeConversationIds") or []
        return (isinstance(active, list) and conversation_id in active) or _queued(
            stats.get("queuedByConversation"), conversation_id
        )

    async def _messages(self, conversation_id: str) -> list[_Message]:
        body = await self._request("GET", f"/test/messages/{_path(conversation_id)}")
        raw = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(raw, list):
            raise ScarUnavailable("SCAR's list of messages had an unexpected shape.")
        messages = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("message"), str):
                raise ScarUnavailable("SCAR's list of messages had an unexpected shape.")
            messages.append(_Message(item["message"], item.get("direction", "sent") == "sent"))
        return messages

    async def _request(
        self, method: str, path: str, *, json: Any = None, allow_404: bool = False
    ) -> Any:
        url = f"{self._base_url}{path}"
        try:
            response = await self._http.request(method, url, json=json)
        except httpx.HTTPError as exc:
            raise ScarUnavailable(
                f"SCAR could not be reached at {self._base_url} ({type(exc).__name__}). "
                "It may be restarting; the command can be tried again later."
            ) from exc
        status = response.status_code
        if status == 404 and allow_404:
            return None
        if status >= 500:
            raise ScarUnavailable(
                f"SCAR had a problem of its own (HTTP {status}); "
                "the command can be tried again later."
            )
        if status == 400:
            error = _error_text(response)
            raise ScarCommandFailed(f"SCAR refused the request: {error}", answer=error)
        if status >= 400:
            raise ScarUnavailable(
                f"SCAR answered HTTP {status} for {path}; check that SCAR_BASE_URL points at "
                "SCAR and that its test adapter is enabled."
            )
        try:
            return response.json()
        except ValueError as exc:
            raise ScarUnavailable(
                "SCAR answered with something that is not JSON; "
                "the command can be tried again later."
            ) from exc


def http_scar_client(settings: Settings) -> HttpScarClient:
    return HttpScarClient(
        settings.scar_base_url,
        timeout_seconds=settings.scar_timeout_seconds,
        poll_interval=settings.scar_poll_interval_seconds,
    )


# --- reading a conversation ----------------------------------------------------------------


def _path(conversation_id: str) -> str:
    return quote(conversation_id, safe="")


def _queued(queued: Any, conversation_id: str) -> bool:
    # SCAR lists `[{conversationId, queuedMessages}]`; a mapping id -> count also occurs.
    if isinstance(queued, dict):
        return bool(queued.get(conversation_id))
    if isinstance(queued, list):
        for entry in queued:
            if entry == conversation_id:
                return True
            if isinstance(entry, dict) and entry.get("conversationId") == conversation_id:
                return bool(entry.get("queuedMessages", 1) != 0)
    return False


def _start_of(messages: list[_Message], text: str, fallback: int) -> int:
    """Index just after the last time SCAR received `text`, when the listing shows it."""
    for index in range(len(messages) - 1, -1, -1):
        if not messages[index].sent and messages[index].text == text:
            return index + 1
    return fallback


def _resume_point(messages: list[_Message], invocation: ScarInvocation) -> int | None:
    """Where our command's answers start if an earlier attempt already sent it, else None."""
    if any(not m.sent for m in messages):
        start = _start_of(messages, invocation.text, -1)
        return None if start < 0 else start
    switched = f"{_SWITCHED} {invocation.repo_name}"
    for index in range(len(messages) - 1, -1, -1):
        if _first_line(messages[index].text) == switched:
            return index + 1 if index + 1 < len(messages) else None
    return None


def _output(messages: list[_Message]) -> ScarOutput:
    results = [m.text for m in messages if m.sent and m.text.strip() and not is_progress(m.text)]
    for text in results:
        reason = failure_reason(text)
        if reason is not None:
            raise ScarCommandFailed(reason, answer=text)
    if not results:
        raise ScarCommandFailed("SCAR finished without saying anything.")
    return ScarOutput(text="\n\n".join(results), messages=tuple(results))


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def _repo_state(answer: str, name: str) -> Literal["open", "missing", "failed"]:
    """What SCAR's answer to `/repo` means: opened, missing (clone it first) or failed."""
    line = _first_line(answer)
    if line.startswith(_SWITCHED):
        # SCAR also accepts a prefix: "/repo app" may open "app-server". Not ours.
        return "open" if line[len(_SWITCHED) :].strip() == name else "missing"
    if line.startswith(_REPO_MISSING):
        return "missing"
    if not line or line.startswith("Failed") or failure_reason(answer) is not None:
        return "failed"
    return "open"  # wording we do not know; the command itself will tell


def _repo_failure(invocation: ScarInvocation, answer: str) -> str:
    reason = failure_reason(answer)
    if reason is not None:
        return reason
    said = _first_line(answer)
    if not said:
        return f"SCAR did not answer when asked to open {invocation.repo}."
    return f"SCAR could not open {invocation.repo}: {said}"


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return f"HTTP {response.status_code}"
