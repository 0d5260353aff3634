"""The worker's outbound side: the clients the outbox is delivered with (PyGithub, the
Telegram bot), and the direct replier SCAR's command comments go through."""

from __future__ import annotations

from dataclasses import dataclass

from project_orchestrator.channels.base import Notifier
from project_orchestrator.channels.delivery import OutboxDelivery
from project_orchestrator.channels.github import (
    GitHubComments,
    GitHubPoster,
    GitHubReplier,
    PyGithubComments,
)
from project_orchestrator.channels.telegram import TelegramSender
from project_orchestrator.composition import build_notifier
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database
from project_orchestrator.ingress.telegram.bot import build_bot


class GitHubNotConfigured(RuntimeError):
    pass


@dataclass
class _NoGitHub:
    """Without a token nothing can be posted: the message fails visibly (its outbound row
    ends `failed` after its retries), and the event that caused it stays handled."""

    def create(self, repo: str, number: int, body: str) -> int:
        raise GitHubNotConfigured("GITHUB_ACCESS_TOKEN is not set, so replies cannot be posted")

    def find_marked(self, repo: str, number: int, mark: str) -> int | None:
        raise GitHubNotConfigured("GITHUB_ACCESS_TOKEN is not set, so replies cannot be posted")

    def edit(self, repo: str, number: int, comment_id: int, body: str) -> None:
        raise GitHubNotConfigured("GITHUB_ACCESS_TOKEN is not set, so replies cannot be posted")


def github_comments(settings: Settings) -> GitHubComments:
    if settings.github_access_token is None:
        return _NoGitHub()
    return PyGithubComments.connect(
        settings.github_api_url, settings.github_access_token.get_secret_value()
    )


@dataclass
class Outbound:
    """The worker's outbound side: the notifier, the clients the outbox is delivered
    with, and the direct replier SCAR's command comments go through."""

    notifier: Notifier
    replier: GitHubReplier
    delivery: OutboxDelivery
    telegram: TelegramSender | None

    async def aclose(self) -> None:
        if self.telegram is not None:
            await self.telegram.bot.shutdown()


def build_outbound(settings: Settings, db: Database) -> Outbound:
    poster = GitHubPoster(github_comments(settings))
    telegram = None
    if settings.telegram_bot_token is not None:
        telegram = TelegramSender(build_bot(settings))
    return Outbound(
        notifier=build_notifier(settings),
        replier=GitHubReplier(db, poster),
        delivery=OutboxDelivery(db, poster, telegram),
        telegram=telegram,
    )
