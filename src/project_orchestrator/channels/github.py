"""Replies on GitHub through PyGithub, each posted at most once whatever crashes.

Replies and the status comment are written to the outbox with the change they report
(`stage_comment`) and posted by the delivery job after commit. Every comment carries a
hidden marker with its idempotency key. Before posting, the outbound row says whether an
earlier attempt may already have posted it; if so, the thread is searched for the marker
instead of posting again. A worker killed between GitHub's answer and our commit
therefore never produces a second comment.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from github import Auth, Github, GithubException, RateLimitExceededException
from pgqueuer.errors import RetryRequested

from project_orchestrator.channels import outbox
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
class GitHubPoster:
    """Posting and editing comments, each comment at most once whatever crashes."""

    comments: GitHubComments

    async def post(
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
        `comment_id` is known; with `edit`, an existing one is brought up to `text`."""
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
        log.info("github.comment_posted", target=f"{repo}#{number}", comment_id=comment_id)
        return comment_id


@dataclass
class GitHubReplier:
    """A comment posted at once, for a sender that needs its id (SCAR's commands)."""

    db: Database
    poster: GitHubPoster

    async def reply(self, repo: str, number: int, key: str, text: str) -> int:
        """Post `text` on repo#number once for `key`; returns the comment id."""
        found = await outbox.claim(self.db, Channel.GITHUB, key, f"{repo}#{number}", text)
        if found.sent and found.external_id:
            return int(found.external_id)
        try:
            comment_id = await self.poster.post(
                repo, number, key, text, None, search=found.maybe_sent, edit=False
            )
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
