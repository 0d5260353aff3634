"""The conversation: a person's message stored with a turn for the agent to answer.

The job that receives a message stores it and queues its turn, in its own transaction;
`agent.turns` answers it with no transaction open while the model thinks.

Every message is kept. The model sees the project's context, a summary of everything
older than the recent turns, and as many recent turns as fit the budget; when the
unsummarised part grows past the budget, its older half is summarised and the summary
stored, so nothing said is ever lost to the model, however long the conversation.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from project_orchestrator import metrics
from project_orchestrator.agent import prompts, turn_store
from project_orchestrator.agent.llm import AIUnavailable, ModelGateway, TokenUsage
from project_orchestrator.agent.protocol import ReplyTo
from project_orchestrator.agent.tools import TOOLS
from project_orchestrator.agent.turn_store import Said
from project_orchestrator.audit import AuditLog
from project_orchestrator.channels.base import Notifier
from project_orchestrator.db import raw
from project_orchestrator.db.enqueue import enqueue_turn
from project_orchestrator.effects import after_commit
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.budget import WAITING_FOR_BUDGET, Budgets
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import Actor
from project_orchestrator.workflow.models import ACTIVE_RUN_STATUSES_SQL
from project_orchestrator.workflow.service import Workflow

log = get_logger(__name__)

# Tool rounds per message: enough for note, check, generate, ask; bounded against loops.
MAX_TOOL_ROUNDS = 6
# Recent history the model sees verbatim, in estimated tokens (about 4 characters each).
HISTORY_TOKEN_BUDGET = 6000

NOT_CONFIGURED = (
    "The assistant is not set up on this server yet (no AI key), so I can only follow "
    "commands such as /status, /build and /approve. Your message is saved."
)
# The project's total and the ledger line (by model, with the run in progress) in one
# statement: one round trip per charge, as before the ledger.
_CHARGE = f"""
    WITH charged AS (
        UPDATE projects SET ai_tokens_used = ai_tokens_used + $2, updated_at = now()
         WHERE id = $1 RETURNING ai_tokens_used
    ), ledger AS (
        INSERT INTO ai_usage (project_id, run_id, model, input_tokens, output_tokens,
                              cache_read_tokens, cache_write_tokens)
        SELECT $1,
               (SELECT id FROM workflow_runs WHERE project_id = $1
                   AND status IN {ACTIVE_RUN_STATUSES_SQL}),
               $3, $4, $5, $6, $7
          FROM charged WHERE $2::bigint > 0
    )
    SELECT ai_tokens_used FROM charged
"""  # noqa: S608 - the statuses are our own constant, not input
_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def plain_reply(text: str) -> str:
    """Never code: a code block in a reply to a non-programmer is left out."""
    cleaned = _CODE_BLOCK.sub("(technical details left out)", text).strip()
    return cleaned or "Done."


@dataclass(frozen=True)
class History:
    summary: str | None  # of everything before `messages`
    messages: list[Said]
    # Older messages to fold into the summary first (a model call), when over budget.
    to_summarise: list[Said]


@dataclass
class AgentConversation:
    gateway: ModelGateway | None
    workflow: Workflow
    notifier: Notifier
    audit: AuditLog
    budgets: Budgets
    history_budget: int = HISTORY_TOKEN_BUDGET
    tool_rounds: int = MAX_TOOL_ROUNDS
    tools: list[dict[str, Any]] = field(default_factory=lambda: [t.definition() for t in TOOLS])

    async def respond(
        self, session: AsyncSession, project: Project, actor: Actor, text: str, reply_to: ReplyTo
    ) -> str | None:
        """Store the message and queue the agent's turn; the answer follows by `reply_to`.

        An answer that needs no model (none configured, a budget spent) comes back at
        once instead; past a budget the message still waits as a turn, answered once the
        owner raises it.
        """
        text = text.replace("\x00", "")  # PostgreSQL text cannot hold NUL
        await session.flush()  # the project or the person may be new in this transaction
        message_id = await turn_store.store_message(
            session, project.id, actor.channel, text, actor.identity.id
        )
        # Counted once the message is stored for good, not per attempt of the job.
        after_commit(metrics.orchestrator_conversations_total.labels(actor.channel.value).inc)
        if self.gateway is None:
            return NOT_CONFIGURED
        stopped = None
        if not await self.budgets.within(session, project.id):
            stopped = await self.budgets.stop_if_over(session, project)
        await turn_store.add_turn(
            session,
            project.id,
            message_id,
            actor.identity.id,
            actor.channel,
            reply_to.encode(),
            # Over budget, the turn waits (not due) until the owner raises the budget.
            not_before=WAITING_FOR_BUDGET if stopped is not None else None,
        )
        if stopped is not None:
            log.warning("ai.budget_reached", project_id=str(project.id))
            return stopped  # the turn waits for /budget, which queues it
        await enqueue_turn(session, project.id)
        return None

    async def charge(self, session: AsyncSession, project: Project, usage: TokenUsage) -> None:
        """Add `usage` to the project's tokens, and show the new total on `project`."""
        total = await self.charge_by_id(session, project.id, usage)
        set_committed_value(project, "ai_tokens_used", total)

    async def charge_by_id(
        self, session: AsyncSession, project_id: uuid.UUID, usage: TokenUsage
    ) -> int:
        """Add `usage` to the project's tokens; the new total."""
        # Added in SQL, not in Python: two channels' turns for one project may overlap.
        model = self.gateway.model if self.gateway is not None else "unknown"
        connection = await raw.in_transaction(session)
        total = await connection.fetchval(
            _CHARGE,
            project_id,
            usage.total,
            model,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_creation_tokens,
        )
        if total is None:
            raise LookupError(f"project {project_id} does not exist")
        return int(total)

    async def history(
        self, session: AsyncSession, project_id: uuid.UUID, through_message_id: int | None = None
    ) -> History:
        """The messages the model sees, after the latest summary; over the budget, the
        older half is handed back to be summarised first.

        `through_message_id` is the person's message being answered: their later ones
        are left out (each statement sees what has committed by then, so one stored after
        the turn was chosen would otherwise be answered twice: here and by its own turn).
        The agent's answers are all kept."""
        previous, messages = await turn_store.history(session, project_id, through_message_id)
        if sum(estimate_tokens(m.content) for m in messages) <= self.history_budget:
            return History(previous, messages, [])
        older, recent = _split_for_summary(messages, self.history_budget // 2)
        # Without a summary yet, the model sees what fits; the summary comes first.
        return History(previous, recent, older)

    async def summarise(
        self, previous: str | None, older: list[Said]
    ) -> tuple[str | None, TokenUsage]:
        """A model call: run it with no transaction open. The summary (None when the model
        could not give one) and what the call used, to be charged like any other."""
        if self.gateway is None:
            return None, TokenUsage(0, 0)
        transcript = "\n".join(f"{m.role.value}: {m.content}" for m in older)
        if previous:
            transcript = f"Earlier summary: {previous}\n\n{transcript}"
        try:
            reply = await self.gateway.create(
                system=[{"type": "text", "text": prompts.SUMMARY_INSTRUCTIONS}],
                messages=[{"role": "user", "content": transcript}],
                tools=[],
            )
        except AIUnavailable:
            return None, TokenUsage(0, 0)
        return reply.text.strip() or None, reply.usage


def _split_for_summary(messages: list[Said], keep_tokens: int) -> tuple[list[Said], list[Said]]:
    """The newest messages that fit `keep_tokens` stay verbatim; the rest is summarised."""
    kept = 0
    cut = len(messages)
    while cut > 1 and kept + estimate_tokens(messages[cut - 1].content) <= keep_tokens:
        cut -= 1
        kept += estimate_tokens(messages[cut].content)
    cut = max(1, min(cut, len(messages) - 1))
    return messages[:cut], messages[cut:]


def alternating(history: list[Said]) -> list[dict[str, Any]]:
    """The API wants user and assistant turns to alternate, starting with the user."""
    merged: list[dict[str, Any]] = []
    for message in history:
        role = message.role.value
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += "\n\n" + message.content
        else:
            merged.append({"role": role, "content": message.content})
    while merged and merged[0]["role"] != "user":
        merged.pop(0)
    return merged
