"""Writing outbound messages: what the workflow, the agent and the desks say, staged in
the outbox of their own transaction, per channel.

Nothing here talks to GitHub or Telegram (so the API process, which only writes, needs
neither client library); `channels.delivery` sends what committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.channels import outbox
from project_orchestrator.channels.base import GateQuestion, ProjectAddress
from project_orchestrator.channels.models import OutboundKind
from project_orchestrator.db.types import Channel


async def stage_comment(
    session: AsyncSession, repo: str, number: int, key: str, text: str, *, status: bool = False
) -> None:
    """A comment on repo#number, posted after the session commits; with `status`, the one
    comment for `key`, edited in place."""
    await outbox.stage(
        session,
        channel=Channel.GITHUB,
        kind=OutboundKind.GITHUB_STATUS if status else OutboundKind.GITHUB_COMMENT,
        key=key,
        conversation=keys.github_conversation(repo, number),
        target=f"{repo}#{number}",
        body=text,
        payload={"repo": repo, "number": number},
        replace=status,
    )


@dataclass
class GitHubChannel:
    """The project's GitHub issue: replies, one status comment edited in place, questions."""

    mention: str = "@orchestrator"

    async def send(self, session: AsyncSession, to: ProjectAddress, key: str, text: str) -> None:
        if to.github_repo and to.github_issue_number:
            await stage_comment(session, to.github_repo, to.github_issue_number, key, text)

    async def progress(
        self, session: AsyncSession, to: ProjectAddress, key: str, text: str, *, stage: str
    ) -> None:
        if to.github_repo and to.github_issue_number:
            await stage_comment(
                session, to.github_repo, to.github_issue_number, key, text, status=True
            )

    async def ask(
        self, session: AsyncSession, to: ProjectAddress, key: str, question: GateQuestion
    ) -> None:
        # In a comment thread the bot only hears what mentions it.
        hint = f"(Here, mention me: `{self.mention} /approve` or `{self.mention} /reject ...`.)"
        await self.send(session, to, key, f"{question.text}\n\n{hint}")


async def stage_message(
    session: AsyncSession,
    chat_id: int,
    key: str,
    text: str,
    *,
    gate_id: object | None = None,
    progress: bool = False,
    budget: tuple[object, int] | None = None,
) -> None:
    """A message to the chat, sent after the session commits: with the gate's buttons when
    `gate_id` is given, a button raising the budget request to the amount in `budget`;
    with `progress`, one message per key edited in place."""
    payload: dict[str, Any] = {"chat_id": chat_id}
    if gate_id is not None:
        payload["gate_id"] = str(gate_id)
    if budget is not None:
        payload["budget"] = {"request_id": str(budget[0]), "amount": budget[1]}
    await outbox.stage(
        session,
        channel=Channel.TELEGRAM,
        kind=OutboundKind.TELEGRAM_PROGRESS if progress else OutboundKind.TELEGRAM_MESSAGE,
        key=key,
        conversation=keys.telegram_conversation(chat_id),
        target=str(chat_id),
        body=text,
        payload=payload,
        replace=progress,
    )


async def stage_button_answer(
    session: AsyncSession,
    update_id: int,
    chat_id: int,
    query_id: str,
    text: str,
    *,
    alert: bool = False,
) -> None:
    """The little notification a button tap gets (Telegram shows at most 200 characters)."""
    await outbox.stage(
        session,
        channel=Channel.TELEGRAM,
        kind=OutboundKind.TELEGRAM_ANSWER,
        key=keys.telegram_button_answer(update_id),
        conversation=keys.telegram_conversation(chat_id),
        target=str(chat_id),
        body=text if len(text) <= 190 else text[:189] + "…",
        payload={"chat_id": chat_id, "query_id": query_id, "alert": alert},
    )


async def stage_drop_buttons(session: AsyncSession, chat_id: int, message_id: int) -> None:
    """A decided question's buttons go away."""
    await outbox.stage(
        session,
        channel=Channel.TELEGRAM,
        kind=OutboundKind.TELEGRAM_DROP_BUTTONS,
        key=keys.telegram_buttons_dropped(chat_id, message_id),
        conversation=keys.telegram_conversation(chat_id),
        target=str(chat_id),
        body="",
        payload={"chat_id": chat_id, "message_id": message_id},
    )


@dataclass
class TelegramChannel:
    """A project's Telegram chat. Each message is keyed so a retried job does not repeat it.

    Keys are per channel: the same notice goes once to GitHub and once to Telegram.
    """

    async def send(self, session: AsyncSession, to: ProjectAddress, key: str, text: str) -> None:
        if to.telegram_chat_id is not None:
            await stage_message(session, to.telegram_chat_id, keys.telegram_message(key), text)

    async def ask(
        self, session: AsyncSession, to: ProjectAddress, key: str, question: GateQuestion
    ) -> None:
        if to.telegram_chat_id is not None:
            await stage_message(
                session,
                to.telegram_chat_id,
                keys.telegram_message(key),
                question.text,
                gate_id=question.gate_id,
            )

    async def progress(
        self, session: AsyncSession, to: ProjectAddress, key: str, text: str, *, stage: str
    ) -> None:
        if to.telegram_chat_id is not None:
            # One message per stage, edited while the stage lasts: progress stays in view.
            await stage_message(
                session,
                to.telegram_chat_id,
                keys.telegram_message(key, stage),
                text,
                progress=True,
            )
