"""The one outbound interface the workflow and the agent talk through.

The workflow does not know which channel it talks to: it hands every message to each
channel, and each channel writes it to the outbox for where the project lives on it (an
issue thread, a chat) or skips it when the project has no address there. The message is
written in the caller's transaction and delivered after it commits, so nobody hears of a
change that rolled back. Every message carries an idempotency key, so a retried job never
says the same thing twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.projects.models import Project


@dataclass(frozen=True)
class ProjectAddress:
    """Where a project lives on each channel; a snapshot, safe outside any session."""

    project_id: uuid.UUID
    name: str
    github_repo: str | None
    github_issue_number: int | None
    telegram_chat_id: int | None

    @classmethod
    def of(cls, project: Project) -> ProjectAddress:
        return cls(
            project_id=project.id,
            name=project.name,
            github_repo=project.github_repo,
            github_issue_number=project.github_issue_number,
            telegram_chat_id=project.telegram_chat_id,
        )


@dataclass(frozen=True)
class GateQuestion:
    gate_id: uuid.UUID
    text: str


class ProjectChannel(Protocol):
    """Every method writes to the outbox in `session`: the message leaves after it commits."""

    async def send(self, session: AsyncSession, to: ProjectAddress, key: str, text: str) -> None:
        """Say `text` once for `key`."""

    async def progress(
        self, session: AsyncSession, to: ProjectAddress, key: str, text: str, *, stage: str
    ) -> None:
        """The progress message for `key`, created once and then edited in place.

        `stage` names the step the run is in; a channel where old messages scroll out of
        sight (a chat) starts a new message per stage, a comment thread keeps one.
        """

    async def ask(
        self, session: AsyncSession, to: ProjectAddress, key: str, question: GateQuestion
    ) -> None:
        """Ask for a decision once for `key` (a channel may add buttons)."""


@dataclass
class Notifier:
    """Every channel the service has; each one decides whether the project is on it."""

    channels: list[ProjectChannel]

    async def send(self, session: AsyncSession, to: ProjectAddress, key: str, text: str) -> None:
        for channel in self.channels:
            await channel.send(session, to, key, text)

    async def progress(
        self, session: AsyncSession, to: ProjectAddress, key: str, text: str, *, stage: str
    ) -> None:
        for channel in self.channels:
            await channel.progress(session, to, key, text, stage=stage)

    async def ask(
        self, session: AsyncSession, to: ProjectAddress, key: str, question: GateQuestion
    ) -> None:
        for channel in self.channels:
            await channel.ask(session, to, key, question)
