"""The service's composition root: the parts built in one place for the worker and the API
alike. This module is what the API needs, the notifier over every configured channel
(it only writes to the outbox, so it needs no client library); `composition.outbound`
adds the clients that deliver the outbox, and `composition.worker` the whole workload.

A decision made through the API is announced on exactly the channels a chat decision
would use, so a project that lives only on Telegram hears of it there too.
"""

from __future__ import annotations

from project_orchestrator.channels.base import Notifier, ProjectChannel
from project_orchestrator.channels.staging import GitHubChannel, TelegramChannel
from project_orchestrator.config import Settings


def build_notifier(settings: Settings) -> Notifier:
    """Every configured channel, writing to the outbox: the worker and the API use this
    one, so a decision made through the API is told wherever a chat decision would be."""
    channels: list[ProjectChannel] = [GitHubChannel(settings.github_bot_mention)]
    if settings.telegram_bot_token is not None:
        channels.append(TelegramChannel())
    return Notifier(channels)
