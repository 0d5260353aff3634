"""Wiring the worker: which handler takes which source, with which clients."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

from project_orchestrator.audit import AuditLog
from project_orchestrator.channels.github import GitHubComments, GitHubReplier, PyGithubComments
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database, create_database
from project_orchestrator.events.models import EventSource
from project_orchestrator.events.processor import EventProcessor, SourceHandler
from project_orchestrator.ingress.github.handlers import GitHubEventHandler
from project_orchestrator.logging import get_logger
from project_orchestrator.queue.worker import WorkerOptions, options_from, run_worker_supervised

log = get_logger(__name__)


class GitHubNotConfigured(RuntimeError):
    pass


@dataclass
class _NoGitHub:
    """Without a token nothing can be posted; the event fails visibly and can be replayed."""

    def create(self, repo: str, number: int, body: str) -> int:
        raise GitHubNotConfigured("GITHUB_ACCESS_TOKEN is not set, so replies cannot be posted")

    def find_marked(self, repo: str, number: int, mark: str) -> int | None:
        raise GitHubNotConfigured("GITHUB_ACCESS_TOKEN is not set, so replies cannot be posted")


def github_comments(settings: Settings) -> GitHubComments:
    if settings.github_access_token is None:
        return _NoGitHub()
    return PyGithubComments.connect(
        settings.github_api_url, settings.github_access_token.get_secret_value()
    )


def build_processor(settings: Settings, db: Database, audit: AuditLog) -> EventProcessor:
    replier = GitHubReplier(db, github_comments(settings))
    handlers: dict[EventSource, SourceHandler] = {
        EventSource.GITHUB: GitHubEventHandler(settings, replier, audit),
    }
    return EventProcessor(db, handlers)


async def worker_main(
    settings: Settings, database_url: str, options: WorkerOptions | None = None
) -> None:
    """`orchestrator worker`: run until SIGTERM/SIGINT, then drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    db = create_database(database_url, pool_size=10, max_overflow=5)
    audit = AuditLog(settings.audit_log_path, known_secrets=settings.secret_values())
    try:
        await run_worker_supervised(
            database_url,
            build_processor(settings, db, audit),
            stop,
            options or options_from(settings),
        )
    finally:
        await db.dispose()
