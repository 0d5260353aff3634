"""SCAR over its HTTP test adapter (`/test/*`), as the real SCAR behaves (gpt153/scar).

One conversation per workflow run: SCAR keeps one AI session per conversation and `/repo`
starts a new one, so the repository is opened only by the run's first command and what
`prime` read is still known to `plan`. Each command:
1. sets batch mode (SCAR forgets it when it restarts) and waits until the conversation is
   idle;
2. opens the repository when the conversation has none: `/repo <folder> pull`, else
   `/clone <url>` (the folder is read from SCAR's answer, never guessed from the name),
   then makes sure the workflow's commands are loaded (`/load-commands .agents/commands`
   for SCAR's own project template);
3. clears the conversation's listing, records that the command is being handed over
   (`on_send`), sends it, and waits until SCAR no longer lists the conversation.
SCAR lists only what it sent, and the listing was cleared just before the command went
out, so everything in it afterwards is the command's doing. A retry whose command may
have gone out reads the listing first: answers there are the command's; an empty listing
means SCAR never got it or lost it in a restart, and it is sent again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from project_orchestrator.config import Settings
from project_orchestrator.logging import get_logger
from project_orchestrator.scar import answers
from project_orchestrator.scar.parsing import failure_reason, is_progress
from project_orchestrator.scar.protocol import (
    ScarCommandFailed,
    ScarInvocation,
    ScarOutput,
    ScarTimedOut,
    ScarUnavailable,
    SendHook,
)

log = get_logger(__name__)

# A blip while waiting (SCAR busy, a proxy hiccup) should not throw away a long wait.
_POLL_FAILURES_TOLERATED = 3
_REQUEST_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# Built-ins answer in 50-100 ms: the first look comes soon, later ones back off.
_FIRST_POLL_SECONDS = 0.05
_EAGER_SECONDS = 1.0


class _Vanished(ScarUnavailable):
    """SCAR restarted while it had the command: its messages are gone and so is the work."""


@dataclass
class _Poll:
    """Adaptive polling: every 50 ms for the first second (built-ins answer in 50-100 ms),
    then half as often again each time, up to the configured interval."""

    interval: float
    started: float = field(default_factory=time.monotonic)
    delay: float = _FIRST_POLL_SECONDS

    def next(self) -> float:
        if time.monotonic() - self.started >= _EAGER_SECONDS:
            self.delay = min(self.delay * 1.5, self.interval)
        return min(self.delay, self.interval)


class HttpScarClient:
    """`ScarClient` over SCAR's HTTP adapter (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float,
        poll_interval: float = 2.0,
        quiet_period: float = 10.0,
        ai_retries: int = 3,
        ai_retry_backoff: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_seconds = timeout_seconds
        self._poll_interval = poll_interval
        self._quiet_period = quiet_period
        self._ai_retries = ai_retries
        self._ai_retry_backoff = ai_retry_backoff
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=_REQUEST_TIMEOUT)
        # False once SCAR answered 404 (an older SCAR): then a quiet period stands in.
        self._has_concurrency_route: bool | None = None
        self._has_mode_route = True

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def run(
        self, invocation: ScarInvocation, *, on_send: SendHook | None = None
    ) -> ScarOutput:
        deadline = time.monotonic() + self._timeout_seconds
        started = time.monotonic()
        cid = invocation.conversation_id
        try:
            output = await self._run(invocation, on_send, deadline)
        except ScarUnavailable as exc:
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

    async def _run(
        self, invocation: ScarInvocation, on_send: SendHook | None, deadline: float
    ) -> ScarOutput:
        cid = invocation.conversation_id
        # Every time: a restarted SCAR is back in stream mode and says so to nobody.
        await self._set_batch_mode()
        await self._settle(invocation, deadline)
        codebase = invocation.codebase
        opened = False
        if invocation.sent_before:
            earlier = await self._messages(cid)
            if earlier:
                log.info("scar.resuming", conversation_id=cid, command=invocation.command)
                return await self._read(invocation, on_send, earlier, codebase, deadline)
            log.info("scar.sending_again", conversation_id=cid, command=invocation.command)
        if invocation.open_repository:
            codebase = await self._open_repository(invocation, deadline)
            opened = True
        return await self._command(invocation, on_send, codebase, deadline, opened=opened)

    async def _command(
        self,
        invocation: ScarInvocation,
        on_send: SendHook | None,
        codebase: str | None,
        deadline: float,
        *,
        opened: bool,
        ai_failures: int = 0,
    ) -> ScarOutput:
        """Send the command itself and read its result, recovering what can be recovered."""
        while True:
            await self._request("DELETE", f"/test/messages/{_path(invocation.conversation_id)}")
            if on_send is not None:
                await on_send()
            messages = await self._exchange(invocation, invocation.text, deadline, ai=True)
            recovery = _needs(messages)
            if recovery == "repository" and not opened:
                # SCAR lost the conversation's repository (or never had it): open it again.
                codebase = await self._open_repository(invocation, deadline)
                opened = True
                continue
            if recovery == "commands" and not opened:
                await self._ensure_commands(invocation, deadline)
                opened = True
                continue
            if recovery == "ai" and ai_failures < self._ai_retries:
                ai_failures += 1
                await self._back_off(invocation, ai_failures, deadline)
                continue
            return _output(messages, codebase)

    async def _read(
        self,
        invocation: ScarInvocation,
        on_send: SendHook | None,
        messages: list[str],
        codebase: str | None,
        deadline: float,
    ) -> ScarOutput:
        """An earlier attempt's answers: its result, or the retry its failure calls for."""
        recovery = _needs(messages)
        if recovery == "ai" and self._ai_retries > 0:
            await self._back_off(invocation, 1, deadline)
            return await self._command(
                invocation, on_send, codebase, deadline, opened=False, ai_failures=1
            )
        if recovery == "repository":
            codebase = await self._open_repository(invocation, deadline)
            return await self._command(invocation, on_send, codebase, deadline, opened=True)
        if recovery == "commands":
            await self._ensure_commands(invocation, deadline)
            return await self._command(invocation, on_send, codebase, deadline, opened=True)
        return _output(messages, codebase)

    async def _back_off(self, invocation: ScarInvocation, failures: int, deadline: float) -> None:
        delay = self._ai_retry_backoff * 2 ** (failures - 1)
        log.warning(
            "scar.ai_failed_retrying",
            conversation_id=invocation.conversation_id,
            command=invocation.command,
            retry=failures,
            of=self._ai_retries,
            in_seconds=delay,
        )
        if time.monotonic() + delay >= deadline:
            raise ScarTimedOut.after(invocation.command, self._timeout_seconds)
        await asyncio.sleep(delay)

    # --- opening the repository -----------------------------------------------------------

    async def _open_repository(self, invocation: ScarInvocation, deadline: float) -> str:
        """Open the run's repository in the conversation; returns SCAR's folder for it."""
        folder = invocation.codebase or invocation.repo_name
        # `pull`: the orchestrator committed the approved vision since SCAR last looked.
        answer = await self._builtin(invocation, f"/repo {folder} pull", deadline)
        state = answers.repo_state(answer, folder)
        if state == "pull_failed":
            log.warning("scar.pull_failed", repo=invocation.repo, answer=answer[:200])
            answer = await self._builtin(invocation, f"/repo {folder}", deadline)
            state = answers.repo_state(answer, folder)
        if state == "missing":
            log.info(
                "scar.cloning", conversation_id=invocation.conversation_id, repo=invocation.repo
            )
            answer = await self._builtin(invocation, f"/clone {invocation.repo_url}", deadline)
            cloned = answers.cloned_codebase(answer)
            if cloned is None:
                raise ScarCommandFailed(_repo_failure(invocation, answer), answer=answer)
            folder, state = cloned, "open"  # a clone also opens it in the conversation
        if state != "open":
            raise ScarCommandFailed(_repo_failure(invocation, answer), answer=answer)
        await self._ensure_commands(invocation, deadline)
        return folder

    async def _ensure_commands(self, invocation: ScarInvocation, deadline: float) -> None:
        """SCAR loads `.claude/commands` only; its template keeps ours in `.agents/commands`."""
        needed = {invocation.command, *answers.WORKFLOW_COMMANDS}
        listed = answers.registered_commands(await self._builtin(invocation, "/commands", deadline))
        have = listed or set()
        if needed <= have:
            return
        folder = answers.TEMPLATE_COMMANDS_FOLDER
        loaded = await self._builtin(invocation, f"/load-commands {folder}", deadline)
        have |= answers.loaded_commands(loaded)
        log.info(
            "scar.commands_loaded",
            repo=invocation.repo,
            folder=folder,
            missing=sorted(needed - have),
        )
        if invocation.command not in have:
            raise ScarCommandFailed(
                f"The repository {invocation.repo} has no '{invocation.command}' command "
                f"for SCAR, neither in .claude/commands nor in {folder}. Add SCAR's command "
                "files to the repository (SCAR's project template has them), then approve "
                "to try again.",
                answer=loaded,
            )

    async def _builtin(self, invocation: ScarInvocation, text: str, deadline: float) -> str:
        """Send one of SCAR's built-in commands and return its answer."""
        messages = await self._exchange(invocation, text, deadline, ai=False)
        said = [m for m in messages if not is_progress(m)]
        return said[0] if said else ""

    # --- one message and its answers ------------------------------------------------------

    async def _exchange(
        self, invocation: ScarInvocation, text: str, deadline: float, *, ai: bool
    ) -> list[str]:
        """Send `text` and wait until SCAR is done with it; returns what SCAR said to it."""
        cid = invocation.conversation_id
        before = len(await self._messages(cid))
        await self._request("POST", "/test/message", json={"conversationId": cid, "message": text})
        log.info(
            "scar.sent", conversation_id=cid, command=invocation.command, step=text.split(" ", 1)[0]
        )
        messages = await self._wait(invocation, before, deadline, single_answer=not ai)
        said = messages[before:]
        # SCAR lists a conversation as busy before its POST returns and answers every
        # built-in, and in batch mode acknowledges every AI command: silence, or a
        # listing shorter than before, means SCAR restarted and lost the message.
        if len(messages) < before or (not said and (not ai or self._has_mode_route)):
            raise _Vanished(
                f"SCAR restarted while it had {invocation.command} and lost it; "
                "it will be sent again."
            )
        return said

    async def _wait(
        self, invocation: ScarInvocation, before: int, deadline: float, *, single_answer: bool
    ) -> list[str]:
        """Wait until SCAR is done with the conversation; returns its listing then."""
        cid = invocation.conversation_id
        poll = _Poll(self._poll_interval)
        failures = 0
        seen = -1
        quiet_since = time.monotonic()
        while True:
            await self._pause(invocation, deadline, poll.next())
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
                    answered = any(not is_progress(m) for m in messages[before:])
                    if answered and (single_answer or now - quiet_since >= self._quiet_period):
                        return messages
                failures = 0
            except ScarUnavailable:
                failures += 1
                if failures > _POLL_FAILURES_TOLERATED:
                    raise

    async def _settle(self, invocation: ScarInvocation, deadline: float) -> None:
        """Let whatever an earlier attempt left running finish before reading its traces."""
        poll = _Poll(self._poll_interval)
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
            await self._pause(invocation, deadline, poll.next())

    async def _pause(self, invocation: ScarInvocation, deadline: float, seconds: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ScarTimedOut.after(invocation.command, self._timeout_seconds)
        await asyncio.sleep(min(seconds, remaining))

    # --- SCAR's routes --------------------------------------------------------------------

    async def _set_batch_mode(self) -> None:
        if not self._has_mode_route:
            return
        # Batch mode: one result message per command instead of a stream of chunks.
        answer = await self._request("PUT", "/test/mode", json={"mode": "batch"}, allow_404=True)
        if answer is None:
            log.warning("scar.mode_unsupported", base_url=self._base_url)
            self._has_mode_route = False

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

    async def _messages(self, conversation_id: str) -> list[str]:
        """What SCAR sent in the conversation, oldest first (SCAR lists only its own)."""
        body = await self._request("GET", f"/test/messages/{_path(conversation_id)}")
        raw = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(raw, list):
            raise ScarUnavailable("SCAR's list of messages had an unexpected shape.")
        messages = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("message"), str):
                raise ScarUnavailable("SCAR's list of messages had an unexpected shape.")
            if item.get("direction", "sent") == "sent":
                messages.append(item["message"])
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
        ai_retries=settings.scar_ai_retries,
        ai_retry_backoff=settings.scar_ai_retry_backoff_seconds,
    )


# --- reading a conversation ----------------------------------------------------------------


def _path(conversation_id: str) -> str:
    return quote(conversation_id, safe="")


def _queued(queued: Any, conversation_id: str) -> bool:
    # SCAR lists `[{conversationId, queuedMessages}]`; a mapping id -> count is tolerated.
    if isinstance(queued, dict):
        return bool(queued.get(conversation_id))
    if isinstance(queued, list):
        for entry in queued:
            if isinstance(entry, dict) and entry.get("conversationId") == conversation_id:
                return bool(entry.get("queuedMessages", 1) != 0)
    return False


def _results(messages: list[str]) -> list[str]:
    """The command's result messages: no acknowledgement, heartbeat or tool-call report."""
    return [m for m in messages if m.strip() and not is_progress(m) and not answers.is_tool_call(m)]


def _needs(messages: list[str]) -> str | None:
    """What SCAR's answers call for before the command can be read as done, if anything."""
    for text in _results(messages):
        if answers.no_codebase(text):
            return "repository"
        if answers.missing_command(text) is not None:
            return "commands"
        if answers.transient_ai_failure(text):
            return "ai"
    return None


def _output(messages: list[str], codebase: str | None) -> ScarOutput:
    results = _results(messages)
    for text in results:
        if answers.workspace_missing(text):
            raise ScarCommandFailed(answers.WORKSPACE_MISSING_REASON, answer=text)
        reason = failure_reason(text)
        if reason is not None:
            raise ScarCommandFailed(reason, answer=text)
    if not results:
        raise ScarCommandFailed("SCAR finished without saying anything.")
    return ScarOutput(text="\n\n".join(results), messages=tuple(results), codebase=codebase)


def _repo_failure(invocation: ScarInvocation, answer: str) -> str:
    if answers.workspace_missing(answer):
        return answers.WORKSPACE_MISSING_REASON
    reason = failure_reason(answer)
    if reason is not None:
        return reason
    said = answers.first_line(answer)
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
