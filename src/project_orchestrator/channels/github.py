"""Replies on GitHub through PyGithub, each posted at most once whatever crashes.

Every comment carries a hidden marker with its idempotency key. Before posting, the
outbound row says whether an earlier attempt may already have posted it; if so, the
thread is searched for the marker instead of posting again. A worker killed between
GitHub's answer and our commit therefore never produces a second comment.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from github import Auth, Github, GithubException, RateLimitExceededException
from pgqueuer.errors import RetryRequested

from project_orchestrator.channels import outbox
from project_orchestrator.channels.base import GateQuestion, ProjectAddress
from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

MARKER_PREFIX = "<!-- orchestrator:"


def marker(key: str) -> str:
    return f"{MARKER_PREFIX}{key} -->"


class GitHubComments(Protocol):
    """The little of the GitHub API the bot needs (blocking; called in a thread)."""

    def create(self, repo: str, number: int, body: str) -> int: ...

    def find_marked(self, repo: str, number: int, mark: str) -> int | None: ...

    def edit(self, repo: str, number: int, comment_id: int, body: str) -> None: ...


@dataclass
class PyGithubComments:
    client: Github

    @classmethod
    def connect(cls, base_url: str, token: str) -> PyGithubComments:
        # retry=None: urllib3 would retry POSTs and duplicate comments; the job queue
        # retries the whole step instead, with backoff, and the marker makes that safe.
        return cls(
            Github(
                base_url=base_url,
                auth=Auth.Token(token),
                retry=None,
                timeout=15,
                seconds_between_requests=None,
                seconds_between_writes=None,
                lazy=True,  # no GET before each comment: the URL is all we need
            )
        )

    def create(self, repo: str, number: int, body: str) -> int:
        issue = self.client.get_repo(repo).get_issue(number)
        return int(issue.create_comment(body).id)

    def find_marked(self, repo: str, number: int, mark: str) -> int | None:
        issue = self.client.get_repo(repo).get_issue(number)
        # Newest first would be cheaper, but the API lists oldest first; `since` bounds it.
        since = datetime.now(UTC) - timedelta(days=7)
        for comment in issue.get_comments(since=since):
            if mark in (comment.body or ""):
                return int(comment.id)
        return None

    def edit(self, repo: str, number: int, comment_id: int, body: str) -> None:
        self.client.get_repo(repo).get_issue(number).get_comment(comment_id).edit(body)


class GitHubRateLimited(RetryRequested):
    pass


@dataclass
class GitHubReplier:
    db: Database
    comments: GitHubComments

    async def reply(self, repo: str, number: int, key: str, text: str) -> int:
        """Post `text` on repo#number once for `key`; returns the comment id."""
        target = f"{repo}#{number}"
        found = await outbox.claim(self.db, Channel.GITHUB, key, target, text)
        if found.sent and found.external_id:
            return int(found.external_id)
        comment_id = await self._post(
            repo, number, key, text, None, search=found.maybe_sent, edit=False
        )
        log.info("github.comment_posted", target=target, comment_id=comment_id)
        return comment_id

    async def upsert(self, repo: str, number: int, key: str, text: str) -> int:
        """One comment per `key`, created once and then edited in place to say `text`."""
        target = f"{repo}#{number}"
        found = await outbox.claim(self.db, Channel.GITHUB, key, target, text, new_body=True)
        known = int(found.external_id) if found.external_id else None
        search = known is None and found.maybe_sent
        return await self._post(repo, number, key, text, known, search=search, edit=True)

    async def _post(
        self,
        repo: str,
        number: int,
        key: str,
        text: str,
        comment_id: int | None,
        *,
        search: bool,
        edit: bool,
    ) -> int:
        """Create the comment, unless `search` finds an earlier attempt's by its marker or
        `comment_id` is known; with `edit`, an existing one is brought up to `text`.
        The outcome is recorded on the outbound row."""
        body = f"{text}\n\n{marker(key)}"
        try:
            if search:
                comment_id = await asyncio.to_thread(
                    self.comments.find_marked, repo, number, marker(key)
                )
            if comment_id is None:
                comment_id = await asyncio.to_thread(self.comments.create, repo, number, body)
            elif edit:
                await asyncio.to_thread(self.comments.edit, repo, number, comment_id, body)
        except RateLimitExceededException as exc:
            delay = _reset_delay(exc)
            log.warning("github.rate_limited", retry_in_seconds=delay.total_seconds())
            raise GitHubRateLimited(delay=delay, reason="GitHub rate limit") from None
        except GithubException as exc:
            await outbox.record_error(self.db, key, f"GitHub answered {exc.status}")
            raise
        await outbox.mark_sent(self.db, key, str(comment_id))
        return comment_id


def _reset_delay(exc: RateLimitExceededException) -> timedelta:
    headers = exc.headers or {}
    reset = headers.get("x-ratelimit-reset") or headers.get("X-RateLimit-Reset")
    retry_after = headers.get("retry-after") or headers.get("Retry-After")
    if retry_after and str(retry_after).isdigit():
        return timedelta(seconds=int(retry_after))
    if reset and str(reset).isdigit():
        wait = int(reset) - int(datetime.now(UTC).timestamp())
        return timedelta(seconds=max(1, min(wait, 3600)))
    return timedelta(seconds=60)


@dataclass
class GitHubChannel:
    """The project's GitHub issue: replies, one status comment edited in place, questions."""

    replier: GitHubReplier
    mention: str = "@orchestrator"

    async def send(self, to: ProjectAddress, key: str, text: str) -> None:
        if to.github_repo and to.github_issue_number:
            await self.replier.reply(to.github_repo, to.github_issue_number, key, text)

    async def progress(self, to: ProjectAddress, key: str, text: str, *, stage: str) -> None:
        if to.github_repo and to.github_issue_number:
            await self.replier.upsert(to.github_repo, to.github_issue_number, key, text)

    async def ask(self, to: ProjectAddress, key: str, question: GateQuestion) -> None:
        # In a comment thread the bot only hears what mentions it.
        hint = f"(Here, mention me: `{self.mention} /approve` or `{self.mention} /reject ...`.)"
        await self.send(to, key, f"{question.text}\n\n{hint}")
