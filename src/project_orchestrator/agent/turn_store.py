"""The statements every agent turn runs, prebuilt, on the session's asyncpg connection.

A turn loads its pending messages, the project's standing (the build in progress, the
question waiting, the vision) and the history the model sees, then stores the answer.
Built and loaded through the ORM these cost the worker most of its CPU per message; as
text on the raw connection, inside the same transaction (`raw.in_transaction`), they cost
a fraction, and fewer of them are needed (one for the standing instead of four).
Everything else in a turn (tools, budgets, summaries) stays with the ORM.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.agent import prompts
from project_orchestrator.agent.models import MessageRole
from project_orchestrator.db import raw
from project_orchestrator.db.types import Channel
from project_orchestrator.vision.render import summarize_vision
from project_orchestrator.workflow.models import ACTIVE_RUN_STATUSES_SQL, GateKind
from project_orchestrator.workflow.notices import gate_name


@dataclass(frozen=True)
class PendingTurn:
    id: int
    message_id: int
    actor_id: uuid.UUID
    channel: Channel
    reply_to: dict[str, Any]
    created_at: datetime
    attempts: int
    not_before: datetime


@dataclass(frozen=True)
class Said:
    """One message of the history, as the model sees it."""

    id: int
    role: MessageRole
    content: str


@dataclass(frozen=True)
class Standing:
    """The project as a turn sees it: what the model is told, and what tools act on."""

    name: str
    repo: str | None
    updated_at: datetime
    run_id: uuid.UUID | None
    run_number: int | None
    feature_request: str | None
    run_status: str | None
    phase: str | None
    gate_id: uuid.UUID | None
    gate_kind: str | None
    vision_markdown: str | None

    @property
    def picture(self) -> str:
        return picture(self.repo, self.run_id, self.run_status, self.phase, self.gate_id)

    def context(self, summary: str | None) -> str:
        run = None
        if self.run_id is not None:
            run = f"#{self.run_number}: {self.feature_request} ({self.run_status})"
        return prompts.project_context(
            name=self.name,
            repo=self.repo,
            phase=self.phase,
            run=run,
            pending_gate=gate_name(GateKind(self.gate_kind)) if self.gate_kind else None,
            vision_summary=summarize_vision(self.vision_markdown) if self.vision_markdown else None,
            summary_of_earlier=summary,
        )


def picture(
    repo: str | None, run_id: object, run_status: object, phase: object, gate_id: object
) -> str:
    """What a tool acts on: the run in progress, its phase, the question waiting, the
    repository. When it changes during a model call, the model's plan is out of date.
    Enum members and their values read the same here (StrEnum)."""
    return "|".join(str(part) for part in (repo, run_id, run_status, phase, gate_id))


_PENDING = """
    SELECT id, message_id, actor_id, channel::text AS channel, reply_to, created_at,
           attempts, not_before
      FROM agent_turns
     WHERE project_id = $1 AND status = 'pending'
     ORDER BY id DESC
       FOR UPDATE
"""
_SUPERSEDE = (
    "UPDATE agent_turns SET status = 'superseded', updated_at = now() WHERE id = ANY($1::bigint[])"
)
# At most one run in progress per project and one question per run (unique indexes).
_STANDING = f"""
    SELECT p.name, p.github_repo, p.updated_at,
           r.id AS run_id, r.number, r.feature_request, r.status::text AS run_status,
           r.current_phase::text AS phase, g.id AS gate_id, g.kind::text AS gate_kind,
           (SELECT v.markdown FROM vision_documents v WHERE v.project_id = p.id
             ORDER BY v.version DESC LIMIT 1) AS vision
      FROM projects p
      LEFT JOIN workflow_runs r ON r.project_id = p.id
           AND r.status IN {ACTIVE_RUN_STATUSES_SQL}
      LEFT JOIN approval_gates g ON g.run_id = r.id AND g.status = 'pending'
     WHERE p.id = $1
"""  # noqa: S608 - the statuses are our own constant, not input
# The latest summary and every message after it (the person's only through $2, when
# given), in one statement: the one-row base keeps the summary when no message follows.
_HISTORY = """
    WITH latest AS (
        SELECT through_message_id, summary FROM conversation_summaries
         WHERE project_id = $1 ORDER BY through_message_id DESC LIMIT 1
    )
    SELECT latest.summary, m.id, m.role::text AS role, m.content
      FROM (SELECT 1) AS one
      LEFT JOIN latest ON true
      LEFT JOIN conversation_messages m
        ON m.project_id = $1 AND m.id > COALESCE(latest.through_message_id, 0)
       AND ($2::bigint IS NULL OR m.id <= $2 OR m.role = 'assistant')
     ORDER BY m.id
"""
_ANSWERED = """
    WITH said AS (
        INSERT INTO conversation_messages (project_id, role, channel, content, blocks, tokens)
        VALUES ($2, 'assistant', $3::channel, $4, $5::jsonb, $6)
    )
    UPDATE agent_turns SET status = 'answered', answered_at = now(), updated_at = now()
     WHERE id = $1
"""
_STORE_MESSAGE = """
    INSERT INTO conversation_messages (project_id, role, channel, author_id, content)
    VALUES ($1, 'user', $2::channel, $3, $4) RETURNING id
"""
_ADD_TURN = """
    INSERT INTO agent_turns (project_id, message_id, actor_id, channel, reply_to, not_before)
    VALUES ($1, $2, $3, $4::channel, $5::jsonb, COALESCE($6, now()))
"""
_LOCK_PENDING = "SELECT status = 'pending' FROM agent_turns WHERE id = $1 FOR UPDATE"


async def pending_turns(session: AsyncSession, project_id: uuid.UUID) -> list[PendingTurn]:
    """The project's pending turns, newest first, locked."""
    connection = await raw.in_transaction(session)
    return [
        PendingTurn(
            id=row["id"],
            message_id=row["message_id"],
            actor_id=row["actor_id"],
            channel=Channel(row["channel"]),
            reply_to=row["reply_to"],
            created_at=row["created_at"],
            attempts=row["attempts"],
            not_before=row["not_before"],
        )
        for row in await connection.fetch(_PENDING, project_id)
    ]


async def supersede(session: AsyncSession, turn_ids: list[int]) -> None:
    """These turns are covered by a newer one's answer."""
    if turn_ids:
        connection = await raw.in_transaction(session)
        await connection.execute(_SUPERSEDE, turn_ids)


async def standing(session: AsyncSession, project_id: uuid.UUID) -> Standing | None:
    """The project's standing; None when it was deleted."""
    connection = await raw.in_transaction(session)
    row = await connection.fetchrow(_STANDING, project_id)
    if row is None:
        return None
    return Standing(
        name=row["name"],
        repo=row["github_repo"],
        updated_at=row["updated_at"],
        run_id=row["run_id"],
        run_number=row["number"],
        feature_request=row["feature_request"],
        run_status=row["run_status"],
        phase=row["phase"],
        gate_id=row["gate_id"],
        gate_kind=row["gate_kind"],
        vision_markdown=row["vision"],
    )


async def history(
    session: AsyncSession, project_id: uuid.UUID, through_message_id: int | None
) -> tuple[str | None, list[Said]]:
    """The latest summary, and the messages after it (see `AgentConversation.history`)."""
    connection = await raw.in_transaction(session)
    rows = await connection.fetch(_HISTORY, project_id, through_message_id)
    said = [
        Said(row["id"], MessageRole(row["role"]), row["content"])
        for row in rows
        if row["id"] is not None
    ]
    return rows[0]["summary"], said


async def store_message(
    session: AsyncSession,
    project_id: uuid.UUID,
    channel: Channel,
    content: str,
    author_id: uuid.UUID,
) -> int:
    """The person's message kept in the conversation; its id."""
    connection = await raw.in_transaction(session)
    message_id: int = await connection.fetchval(
        _STORE_MESSAGE, project_id, channel.value, author_id, content
    )
    return message_id


async def add_turn(
    session: AsyncSession,
    project_id: uuid.UUID,
    message_id: int,
    actor_id: uuid.UUID,
    channel: Channel,
    reply_to: dict[str, Any],
    *,
    not_before: datetime | None,
) -> None:
    """A turn for the agent to answer `message_id` (due now, or at `not_before`)."""
    connection = await raw.in_transaction(session)
    await connection.execute(
        _ADD_TURN,
        project_id,
        message_id,
        actor_id,
        channel.value,
        raw.json_text(reply_to),
        not_before,
    )


async def lock_if_pending(session: AsyncSession, turn_id: int) -> bool:
    """Lock the turn; whether it still waits for its answer."""
    connection = await raw.in_transaction(session)
    return bool(await connection.fetchval(_LOCK_PENDING, turn_id))


async def store_answer(
    session: AsyncSession,
    turn_id: int,
    project_id: uuid.UUID,
    channel: Channel,
    answer: str,
    blocks: list[dict[str, Any]],
    tokens: int,
) -> None:
    """The agent's answer kept in the conversation, and its turn marked answered."""
    connection = await raw.in_transaction(session)
    await connection.execute(
        _ANSWERED, turn_id, project_id, channel.value, answer, raw.json_text(blocks), tokens
    )
