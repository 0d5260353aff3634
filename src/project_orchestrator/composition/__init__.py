"""The service's outbound side, built in one place for the worker and the API alike: the
GitHub replier, the Telegram sender, and the notifier over every configured channel.

A decision made through the API is announced on exactly the channels a chat decision
would use, so a project that lives only on Telegram hears of it there too.
"""

from __future__ import annotations

from dataclasses import dataclass

from project_orchestrator.channels.base import Notifier, ProjectChannel
from project_orchestrator.channels.github import (
    GitHubChannel,
    GitHubComments,
    GitHubReplier,
    PyGithubComments,
)
from project_orchestrator.channels.telegram import TelegramChannel, TelegramSender
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database
from project_orchestrator.ingress.telegram.bot import build_bot


class GitHubNotConfigured(RuntimeError):
    pass


@dataclass
class _NoGitHub:
    """Without a token nothing can be posted; the event fails visibly and can be replayed."""

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
    notifier: Notifier
    replier: GitHubReplier
    telegram: TelegramChannel | None

    async def aclose(self) -> None:
        if self.telegram is not None:
            await self.telegram.sender.bot.shutdown()


def build_outbound(settings: Settings, db: Database) -> Outbound:
    replier = GitHubReplier(db, github_comments(settings))
    channels: list[ProjectChannel] = [GitHubChannel(replier, settings.github_bot_mention)]
    telegram = None
    if settings.telegram_bot_token is not None:
        telegram = TelegramChannel(db, TelegramSender(build_bot(settings)))
        channels.append(telegram)
    return Outbound(Notifier(channels), replier, telegram)
