"""An agent turn, split like a SCAR step: load and commit, think with nothing held, apply
each round's tool calls in a short transaction of its own.

The person's message is stored with a pending turn by the job that received it; this
job answers it. One project's turns run one at a time (a lease per project, renewed each
round), so the model always sees the answers before; other projects never wait on it.
No transaction and no lock is open while the model thinks. A decision that arrives
meanwhile (a /approve, a /hold) wins: a tool that would act on the old picture is refused
and says so to the model, which then sees the new one.

When the AI cannot be reached the turn is not left to the person: it is tried again with
backoff for up to AI_RETRY_WINDOW_SECONDS, and the answer arrives without their asking
again. A newer message from them supersedes it, and its answer covers both.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pgqueuer.errors import RetryRequested
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.agent import prompts, turn_store
from project_orchestrator.agent.conversation import (
    AgentConversation,
    History,
    alternating,
    plain_reply,
)
from project_orchestrator.agent.llm import AIUnavailable, TokenUsage, add_usage
from project_orchestrator.agent.models import (
    AgentTurn,
    ConversationSummary,
    TurnStatus,
)
from project_orchestrator.agent.protocol import ReplyTo
from project_orchestrator.agent.status import record_ai
from project_orchestrator.agent.tools import BY_NAME, ToolContext, call_tool
from project_orchestrator.db import leases
from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.budget import WAITING_FOR_BUDGET
from project_orchestrator.projects.lookup import status_text
from project_orchestrator.projects.models import Identity, Project
from project_orchestrator.projects.service import Actor, lock_project

log = get_logger(__name__)

# Longer than a model call with its SDK retries; renewed at every round.
TURN_LEASE = timedelta(minutes=5)
FIRST_RETRY = timedelta(seconds=5)
LONGEST_RETRY = timedelta(minutes=5)

STILL_TRYING = (
    "My assistant brain is not answering right now. Your message is saved, and I will "
    "answer here as soon as it is back: there is no need to send it again. Commands like "
    "/status, /approve and /hold work meanwhile."
)
GAVE_UP = (
    "I could not reach my assistant brain for a long while, so I stopped trying for this "
    "message. It is saved: say something when you like and I will pick up from there."
)
CHANGED_MEANWHILE = (
    "Not done: while you were thinking, the project changed (someone decided or "
    "changed something). It stands now as follows:\n{status}\nTell the person what "
    "changed, and act only on this new picture."
)

UNREADABLE_ARGUMENTS = (
    "Not done: your call to {tool} could not be read, {why}. Call it again with its "
    "arguments as one JSON object that fits the tool's schema."
)


class LeaseLost(Exception):
    """The turn's lease ran out while it worked; whoever took it answers instead."""


@dataclass(frozen=True)
class LoadedTurn:
    """What the turn needs, read in one short transaction and then committed."""

    turn_id: int
    project_id: uuid.UUID
    actor_id: uuid.UUID
    channel: Channel
    reply_to: ReplyTo
    created_at: datetime
    attempts: int
    history: History
    context: str
    picture: str  # what the tools would act on; see `_picture`


@dataclass
class TurnRunner:
    db: Database
    agent: AgentConversation
    retry_window: timedelta = timedelta(seconds=1800)
    first_retry: timedelta = FIRST_RETRY
    longest_retry: timedelta = LONGEST_RETRY
    # Shows "typing…" in a chat while the model thinks (best effort).
    typing: Callable[[int], Awaitable[None]] | None = None

    async def run(self, project_id: uuid.UUID, holder: str) -> None:
        """Answer the project's pending turn(s) while holding its lease."""
        key = keys.agent_turns(project_id)
        async with self.db.session_scope() as session:
            if not await leases.take(session, key, holder, TURN_LEASE):
                log.debug("agent.turn_lease_held", project_id=str(project_id))
                return  # its holder answers this turn too
            loaded = await self._next_or_release(session, project_id, key, holder, just_taken=True)
        while loaded is not None:
            try:
                loaded = await self._answer(loaded, key, holder)
            except LeaseLost:
                log.warning("agent.turn_lease_lost", project_id=str(project_id))
                return
            except RetryRequested:
                raise  # the lease is already given up
            except BaseException:
                # Given back, so the next message need not wait for the lease to expire.
                async with self.db.session_scope() as session:
                    await leases.release(session, key, holder)
                raise

    async def _next_or_release(
        self,
        session: AsyncSession,
        project_id: uuid.UUID,
        key: str,
        holder: str,
        *,
        newer_than: int | None = None,
        just_taken: bool = False,
    ) -> LoadedTurn | None:
        """The newest pending turn (newer than `newer_than`, when given), loaded, with the
        lease kept; older pending ones are superseded (its answer covers them). With none
        due, the lease is given up: released before looking, as `leases.release` explains,
        except that with the lease `just_taken` in this transaction it looks first (there
        is usually a turn, and the lease is kept for it) and releases and looks again only
        when there is none."""
        pending = await turn_store.pending_turns(session, project_id) if just_taken else []
        kept = _due(pending, newer_than)
        if not kept:
            await leases.release(session, key, holder)
            pending = await turn_store.pending_turns(session, project_id)
            if not _due(pending, newer_than):
                return None
        standing = await turn_store.standing(session, project_id)
        if standing is None:
            await leases.release(session, key, holder)
            return None
        if not kept:
            await leases.take(session, key, holder, TURN_LEASE)
        newest, older = pending[0], pending[1:]
        await turn_store.supersede(session, [turn.id for turn in older])
        if await self._stopped_since_stored(session, project_id, standing, newest):
            await leases.release(session, key, holder)
            return None
        history = await self.agent.history(session, project_id, newest.message_id)
        return LoadedTurn(
            turn_id=newest.id,
            project_id=project_id,
            actor_id=newest.actor_id,
            channel=newest.channel,
            reply_to=ReplyTo.decode(newest.reply_to),
            created_at=newest.created_at,
            attempts=newest.attempts,
            history=history,
            context=standing.context(history.summary),
            picture=standing.picture,
        )

    async def _stopped_since_stored(
        self,
        session: AsyncSession,
        project_id: uuid.UUID,
        standing: turn_store.Standing,
        turn: turn_store.PendingTurn,
    ) -> bool:
        """Whether a budget was reached after `turn`'s message was checked against it (an
        earlier turn, still thinking then, was charged since): the turn then waits for
        the owner, as a message arriving now would. The project row's `updated_at` moves
        with every charge, so the common case costs no statement, and one within its
        budgets costs one."""
        budgets = self.agent.budgets
        if standing.updated_at <= turn.created_at or await budgets.within(session, project_id):
            return False
        project = await session.get(Project, project_id)
        if project is None:
            return False
        stopped = await budgets.stop_if_over(session, project)
        if stopped is None:
            return False
        await session.execute(
            update(AgentTurn).where(AgentTurn.id == turn.id).values(not_before=WAITING_FOR_BUDGET)
        )
        # In a chat the owner raises it with one tap, as when a message arrives over it.
        reply_to = ReplyTo.decode(turn.reply_to)
        button = (
            await budgets.raise_button(session, project) if reply_to.chat_id is not None else None
        )
        await reply_to.stage(session, stopped, suffix="budget", budget=button)
        log.warning("ai.budget_reached", project_id=str(project_id), turn_id=turn.id)
        return True

    # --- one turn ------------------------------------------------------------------

    async def _answer(self, loaded: LoadedTurn, key: str, holder: str) -> LoadedTurn | None:
        """Answer `loaded`; the project's next turn (None: the lease is given up)."""
        if loaded.history.to_summarise:
            loaded = await self._summarised(loaded)
        if self.typing is not None and loaded.reply_to.chat_id is not None:
            await self.typing(loaded.reply_to.chat_id)
        try:
            answer, blocks, used, uncharged = await self._think(loaded, key, holder)
        except AIUnavailable as exc:
            return await self._unavailable(loaded, key, holder, exc)
        answer = plain_reply(answer)
        async with self.db.session_scope() as session:
            if not await leases.renew(session, key, holder, TURN_LEASE):
                raise LeaseLost
            # Locked and pending, the turn has its project and person: deleting either
            # deletes the turn, and would wait for this transaction.
            if await turn_store.lock_if_pending(session, loaded.turn_id):
                await self.agent.charge_by_id(session, loaded.project_id, uncharged)
                await turn_store.store_answer(
                    session,
                    loaded.turn_id,
                    loaded.project_id,
                    loaded.channel,
                    answer,
                    blocks,
                    used.total,
                )
                await record_ai(session, healthy=True)
                await loaded.reply_to.stage(session, answer)
            return await self._next_or_release(session, loaded.project_id, key, holder)

    async def _summarised(self, loaded: LoadedTurn) -> LoadedTurn:
        """Summarise the older half with nothing held, then store the summary."""
        history = loaded.history
        older = history.to_summarise
        text, used = await self.agent.summarise(history.summary, older)
        if text is None:
            if used.total:
                async with self.db.session_scope() as session:
                    await self.agent.charge_by_id(session, loaded.project_id, used)
            return replace(loaded, history=replace(history, to_summarise=[]))
        async with self.db.session_scope() as session:
            # Summaries cost tokens too: charged with the summary they bought.
            await self.agent.charge_by_id(session, loaded.project_id, used)
            already = (
                await session.execute(
                    select(ConversationSummary.id).where(
                        ConversationSummary.project_id == loaded.project_id,
                        ConversationSummary.through_message_id == older[-1].id,
                    )
                )
            ).scalar_one_or_none()
            if already is None:
                session.add(
                    ConversationSummary(
                        project_id=loaded.project_id,
                        through_message_id=older[-1].id,
                        summary=text,
                    )
                )
        summarised = replace(history, summary=text, to_summarise=[])
        async with self.db.session_scope() as session:
            standing = await turn_store.standing(session, loaded.project_id)
            if standing is None:
                raise LookupError("the project was deleted during its turn")
        return replace(loaded, history=summarised, context=standing.context(text))

    async def _think(
        self, loaded: LoadedTurn, key: str, holder: str
    ) -> tuple[str, list[dict[str, Any]], TokenUsage, TokenUsage]:
        """The model's rounds: the answer, the turn's blocks, its usage, and the usage of
        the last round, not yet charged (the answer's transaction charges it)."""
        gateway = self.agent.gateway
        if gateway is None:
            raise AIUnavailable("the AI is not configured")
        system = prompts.system_blocks(loaded.context)
        messages = alternating(loaded.history.messages)
        turn_blocks: list[dict[str, Any]] = []
        used = TokenUsage(0, 0)
        picture = loaded.picture
        text = ""
        for _ in range(self.agent.tool_rounds):
            reply = await gateway.create(system=system, messages=messages, tools=self.agent.tools)
            used = add_usage(used, reply.usage)
            turn_blocks.extend(reply.content)
            text = reply.text or text
            if not reply.tool_calls:
                return text, turn_blocks, used, reply.usage
            async with self.db.session_scope() as session:
                if not await leases.renew(session, key, holder, TURN_LEASE):
                    raise LeaseLost
                project = await lock_project(session, loaded.project_id)
                await self.agent.charge(session, project, reply.usage)
                actor = await self._actor(session, loaded)
                ctx = ToolContext(
                    session,
                    project,
                    actor,
                    self.agent.workflow,
                    self.agent.notifier,
                    self.agent.audit,
                )
                results, picture = await self._apply(session, ctx, reply.tool_calls, picture)
            turn_blocks.extend(results)
            messages.append({"role": "assistant", "content": reply.content})
            messages.append({"role": "user", "content": results})
        log.warning("agent.tool_rounds_exhausted", project_id=str(loaded.project_id))
        return (
            text or "I have done what I can for now. What would you like next?",
            turn_blocks,
            used,
            TokenUsage(0, 0),
        )

    async def _apply(
        self, session: AsyncSession, ctx: ToolContext, calls: list[Any], picture: str
    ) -> tuple[list[dict[str, Any]], str]:
        """The round's tool calls, unless what they act on changed while the model thought."""
        now = await _picture(session, ctx.project.id)
        results = []
        for call in calls:
            tool = BY_NAME.get(call.name)
            if call.arguments_error is not None:
                output = UNREADABLE_ARGUMENTS.format(tool=call.name, why=call.arguments_error)
                is_error = True
                log.info("agent.tool_arguments_unreadable", tool=call.name)
            elif now != picture and tool is not None and not tool.reads_only:
                output = CHANGED_MEANWHILE.format(status=await status_text(session, ctx.project))
                is_error = True
                log.info("agent.tool_refused_stale", tool=call.name)
            else:
                output, is_error = await call_tool(ctx, call.name, call.input)
                log.info("agent.tool", tool=call.name, error=is_error)
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": output,
                    "is_error": is_error,
                }
            )
        # The model has now been told the new picture; what it does next acts on it.
        return results, await _picture(session, ctx.project.id)

    async def _unavailable(
        self, loaded: LoadedTurn, key: str, holder: str, error: AIUnavailable
    ) -> LoadedTurn | None:
        """Try again later, by itself, within the retry window; then say so plainly. A
        newer message that arrived meanwhile is answered now instead (it covers this)."""
        log.warning("ai.turn_unavailable", project_id=str(loaded.project_id), error=str(error))
        attempts = loaded.attempts + 1
        waited = datetime.now(UTC) - loaded.created_at
        delay = min(self.first_retry * 2 ** (attempts - 1), self.longest_retry)
        retrying = waited + delay <= self.retry_window
        async with self.db.session_scope() as session:
            await record_ai(session, healthy=False, detail=str(error)[:300])
            await session.execute(
                update(AgentTurn)
                .where(AgentTurn.id == loaded.turn_id, AgentTurn.status == TurnStatus.PENDING)
                .values(
                    attempts=attempts,
                    not_before=datetime.now(UTC) + delay,
                    status=TurnStatus.PENDING if retrying else TurnStatus.FAILED,
                )
            )
            if retrying and attempts == 1:
                await loaded.reply_to.stage(session, STILL_TRYING, suffix="still-trying")
            if not retrying:
                await loaded.reply_to.stage(session, GAVE_UP)
            following = await self._next_or_release(
                session, loaded.project_id, key, holder, newer_than=loaded.turn_id
            )
        if following is None and retrying:
            raise RetryRequested(delay=delay, reason="the AI is unavailable")
        return following

    async def _actor(self, session: AsyncSession, loaded: LoadedTurn) -> Actor:
        identity = await session.get(Identity, loaded.actor_id)
        if identity is None:  # deleting an identity deletes its turns too
            raise LookupError("the turn's person no longer exists")
        return Actor(identity, loaded.channel)


def _due(pending: list[turn_store.PendingTurn], newer_than: int | None) -> bool:
    """Whether the newest pending turn is to be answered now (not waiting for its retry,
    whose job comes back then; newer than `newer_than` when given)."""
    if not pending or pending[0].not_before > datetime.now(UTC):
        return False
    return newer_than is None or pending[0].id > newer_than


async def _picture(session: AsyncSession, project_id: uuid.UUID) -> str:
    """What the tools act on now, the ORM's changes of this transaction included."""
    await session.flush()  # the raw connection sees only what was sent
    standing = await turn_store.standing(session, project_id)
    if standing is None:
        raise LookupError("the project was deleted during its turn")
    return standing.picture
