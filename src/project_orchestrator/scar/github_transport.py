"""SCAR over GitHub comments: post `@scar /command-invoke ...`, read SCAR's replies.

SCAR's replies reach us as ordinary webhook deliveries, already stored durably by the
ingress. So the command's output is read straight from the stored events: comments by
SCAR on the project's issue (GitHub comment ids only grow). SCAR works through one
issue's commands one at a time, in order, so its results are matched to our commands in
order too: a late answer to a command that timed out belongs to that command, not to the
one posted after it.
Nothing is kept in memory, so a worker that dies while waiting loses nothing: the next
attempt finds our comment by its key (never posting it twice) and reads on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.channels.github import GitHubReplier
from project_orchestrator.channels.models import OutboundMessage
from project_orchestrator.db.engine import Database
from project_orchestrator.events.models import EventSource, InboundEvent
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.models import Project
from project_orchestrator.scar.answers import transient_ai_failure
from project_orchestrator.scar.models import ScarCommand
from project_orchestrator.scar.parsing import failure_reason, is_progress
from project_orchestrator.scar.protocol import (
    ScarCommandFailed,
    ScarInvocation,
    ScarOutput,
    ScarTimedOut,
    SendHook,
)

log = get_logger(__name__)


@dataclass
class GitHubScarClient:
    db: Database
    replier: GitHubReplier
    mention: str
    timeout_seconds: float
    poll_interval: float = 2.0
    ai_retries: int = 3
    ai_retry_backoff: float = 10.0

    @property
    def scar_logins(self) -> frozenset[str]:
        login = self.mention.lstrip("@").lower()
        return frozenset({login, f"{login}[bot]"})

    async def run(
        self, invocation: ScarInvocation, *, on_send: SendHook | None = None
    ) -> ScarOutput:
        repo, number = await self._thread_of(invocation)
        deadline = time.monotonic() + self.timeout_seconds
        failures = 0
        while True:
            # Each retry is a comment of its own, keyed by its number: a job that runs
            # again finds the comments already posted and reads their answers.
            key = keys.scar_comment(invocation.key, failures)
            if on_send is not None:
                await on_send()
            comment_id = await self.replier.reply(
                repo, number, key, f"{self.mention} {invocation.text}"
            )
            log.info(
                "scar.sent", transport="github", command=invocation.command, comment=comment_id
            )
            results = await self._wait(invocation, repo, number, comment_id, deadline)
            if any(transient_ai_failure(m) for m in results) and failures < self.ai_retries:
                failures += 1
                delay = self.ai_retry_backoff * 2 ** (failures - 1)
                log.warning(
                    "scar.ai_failed_retrying",
                    command=invocation.command,
                    retry=failures,
                    in_seconds=delay,
                )
                if time.monotonic() + delay >= deadline:
                    raise ScarTimedOut.after(invocation.command, self.timeout_seconds)
                await asyncio.sleep(delay)
                continue
            for message in results:
                reason = failure_reason(message)
                if reason is not None:
                    raise ScarCommandFailed(reason)
            return ScarOutput(text="\n\n".join(results), messages=tuple(results))

    async def _wait(
        self, invocation: ScarInvocation, repo: str, number: int, comment_id: int, deadline: float
    ) -> list[str]:
        while True:
            results = await self._results(repo, number, comment_id)
            if results:
                return results
            if time.monotonic() >= deadline:
                raise ScarTimedOut.after(invocation.command, self.timeout_seconds)
            await asyncio.sleep(self.poll_interval)

    async def _thread_of(self, invocation: ScarInvocation) -> tuple[str, int]:
        async with self.db.session_scope() as session:
            found = (
                await session.execute(
                    select(Project.github_repo, Project.github_issue_number)
                    .join(ScarCommand, ScarCommand.project_id == Project.id)
                    .where(ScarCommand.conversation_id == invocation.conversation_id)
                )
            ).first()
        if found is None or found[0] is None or found[1] is None:
            raise ScarCommandFailed(
                "This project has no GitHub issue to talk to SCAR on. Mention me in an issue "
                "of the repository first."
            )
        return str(found[0]), int(found[1])

    async def _results(self, repo: str, number: int, command_comment: int) -> list[str]:
        """SCAR's result for our command: the first result not taken by an earlier command."""
        async with self.db.session_scope() as session:
            ours = await _command_comments(session, repo, number)
            first = min([command_comment, *ours])
            replies = await scar_replies(session, repo, number, first - 1, self.scar_logins)
        waiting: deque[int] = deque()
        timeline = sorted([(cid, None) for cid in {*ours, command_comment}] + list(replies.items()))
        for cid, body in timeline:
            if body is None:
                waiting.append(cid)
            elif not is_progress(body) and waiting:
                answered = waiting.popleft()  # this result completes the oldest command
                if answered == command_comment:
                    return [body]
        return []


async def _command_comments(session: AsyncSession, repo: str, number: int) -> list[int]:
    """Our `@scar` command comments on repo#number (their replies' keys start with scar:)."""
    rows = await session.execute(
        select(OutboundMessage.external_id).where(
            OutboundMessage.idempotency_key.startswith(keys.SCAR_COMMENT_PREFIX),
            OutboundMessage.target == f"{repo}#{number}",
            OutboundMessage.external_id.is_not(None),
        )
    )
    return [int(value) for value in rows.scalars() if value and value.isdigit()]


async def scar_replies(
    session: AsyncSession, repo: str, number: int, after_comment: int, logins: frozenset[str]
) -> dict[int, str]:
    """SCAR's comments on repo#number after `after_comment` by id, each edit's last text."""
    payload = InboundEvent.payload
    comment_id = cast(payload["comment"]["id"].as_string(), BigInteger)
    rows = await session.execute(
        select(comment_id, payload["comment"]["body"].as_string())
        .where(
            # The serial key is the repository: the index narrows the search to it.
            InboundEvent.serial_key == keys.github_serial(repo),
            InboundEvent.source == EventSource.GITHUB,
            InboundEvent.event_type == "issue_comment",
            cast(payload["issue"]["number"].as_string(), Integer) == number,
            func.lower(payload["comment"]["user"]["login"].as_string()).in_(sorted(logins)),
            comment_id > after_comment,
        )
        .order_by(comment_id, InboundEvent.id)
    )
    latest: dict[int, str] = {}
    for cid, body in rows:
        latest[int(cid)] = body or ""
    return latest
