"""What the channels need from the agent: a person's message taken in, and where its
answer goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.channels.staging import stage_comment, stage_message
from project_orchestrator.db.types import Channel
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import Actor


@dataclass(frozen=True)
class ReplyTo:
    """Where a turn's answer goes, and the key that makes it said once."""

    channel: Channel
    key: str
    repo: str | None = None
    number: int | None = None
    chat_id: int | None = None

    @classmethod
    def github(cls, repo: str, number: int, key: str) -> ReplyTo:
        return cls(Channel.GITHUB, key, repo=repo, number=number)

    @classmethod
    def telegram(cls, chat_id: int, key: str) -> ReplyTo:
        return cls(Channel.TELEGRAM, key, chat_id=chat_id)

    def encode(self) -> dict[str, Any]:
        return {
            "channel": self.channel.value,
            "key": self.key,
            "repo": self.repo,
            "number": self.number,
            "chat_id": self.chat_id,
        }

    @classmethod
    def decode(cls, data: dict[str, Any]) -> ReplyTo:
        return cls(
            Channel(data["channel"]),
            str(data["key"]),
            repo=data.get("repo"),
            number=data.get("number"),
            chat_id=data.get("chat_id"),
        )

    async def stage(
        self,
        session: AsyncSession,
        text: str,
        *,
        suffix: str | None = None,
        budget: tuple[object, int] | None = None,
    ) -> None:
        """Say `text` there once the session commits (the outbox). In a chat, `budget`
        (a budget request and an amount) adds the button that raises it in one tap; a
        comment thread has no buttons, its text names the command."""
        key = self.key if suffix is None else f"{self.key}:{suffix}"
        if self.repo is not None and self.number is not None:
            await stage_comment(session, self.repo, self.number, key, text)
        elif self.chat_id is not None:
            await stage_message(session, self.chat_id, key, text, budget=budget)


class Conversation(Protocol):
    async def respond(
        self, session: AsyncSession, project: Project, actor: Actor, text: str, reply_to: ReplyTo
    ) -> str | None:
        """Store the message and queue the agent's turn; its answer follows by `reply_to`.

        Returns an answer that needs no model (none configured, budget spent) at once."""
