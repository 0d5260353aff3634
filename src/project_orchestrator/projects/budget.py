"""AI budgets: where the agent stops, and the owner's `/budget <tokens>` that raises one.

Two caps: the project's in all (`AI_MAX_TOKENS_PER_PROJECT`, or the owner's own figure)
and one build's (`AI_MAX_TOKENS_PER_RUN`, or the owner's for that build). At a cap the
agent stops: the person's message is kept and waits as a turn, one budget request asks
the owner, and `/budget` answers it, audited `budget_raised`, and lets the waiting
messages be answered.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.agent.models import AgentTurn, TurnStatus
from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.db import raw
from project_orchestrator.db.enqueue import enqueue_turn
from project_orchestrator.errors import ConflictError, ForbiddenError
from project_orchestrator.projects.models import (
    AiUsage,
    BudgetRequest,
    BudgetScope,
    Project,
)
from project_orchestrator.projects.service import Actor, lock_project
from project_orchestrator.workflow.models import (
    ACTIVE_RUN_STATUSES,
    ACTIVE_RUN_STATUSES_SQL,
    WorkflowRun,
)

MAX_BUDGET = 10**12
# A turn kept while over budget is due at this date: never, until /budget makes it due now.
WAITING_FOR_BUDGET = datetime(9999, 1, 1, tzinfo=UTC)
_AMOUNT = re.compile(r"^\s*([\d][\d,_ ]*)\s*([km]?)\s*(?:tokens?)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    per_project: int
    per_run: int


@dataclass(frozen=True)
class Standing:
    """Where a project stands against its budgets."""

    project_used: int
    project_limit: int
    run: WorkflowRun | None
    run_used: int
    run_limit: int | None

    def over(self) -> BudgetScope | None:
        if self.project_used >= self.project_limit:
            return BudgetScope.PROJECT
        if self.run_limit is not None and self.run_used >= self.run_limit:
            return BudgetScope.RUN
        return None


def parse_amount(argument: str) -> int | None:
    """`/budget 3000000`, `3,000,000`, `3m`, `500k tokens`: the number of tokens."""
    found = _AMOUNT.match(argument)
    if found is None:
        return None
    digits = re.sub(r"[,_ ]", "", found.group(1))
    if not digits.isdigit():
        return None
    amount = int(digits) * {"": 1, "k": 1_000, "m": 1_000_000}[found.group(2).lower()]
    return amount if 0 < amount <= MAX_BUDGET else None


def suggested_budget(used: int, limit: int) -> int:
    """What the owner is offered: twice the cap, and at least 100,000 tokens more."""
    return min(MAX_BUDGET, max(limit * 2, used + 100_000))


# Whether a project, and its build in progress, are within their caps, in one statement:
# the same figures as `Budgets.standing` (an owner's limit of 0 counts as none set).
_WITHIN = f"""
    SELECT p.ai_tokens_used < COALESCE(NULLIF(p.ai_token_limit, 0), $2)
       AND (r.id IS NULL OR COALESCE(
               (SELECT sum(u.input_tokens + u.output_tokens + u.cache_read_tokens
                           + u.cache_write_tokens)
                  FROM ai_usage u WHERE u.run_id = r.id), 0)
           < COALESCE(NULLIF(r.ai_token_limit, 0), $3))
      FROM projects p
      LEFT JOIN workflow_runs r ON r.project_id = p.id
           AND r.status IN {ACTIVE_RUN_STATUSES_SQL}
     WHERE p.id = $1
"""  # noqa: S608 - the statuses are our own constant, not input


@dataclass
class Budgets:
    audit: AuditLog
    limits: Limits

    async def within(self, session: AsyncSession, project_id: uuid.UUID) -> bool:
        """Whether no cap is reached (a deleted project is within): one raw statement,
        for the turn that checks again (see `agent.turns`); `stop_if_over` says what
        to do when one is."""
        connection = await raw.in_transaction(session)
        within = await connection.fetchval(
            _WITHIN, project_id, self.limits.per_project, self.limits.per_run
        )
        return within is not False

    async def standing(self, session: AsyncSession, project: Project) -> Standing:
        run = (
            await session.execute(
                select(WorkflowRun).where(
                    WorkflowRun.project_id == project.id,
                    WorkflowRun.status.in_(ACTIVE_RUN_STATUSES),
                )
            )
        ).scalar_one_or_none()
        run_used = 0
        if run is not None:
            run_used = int(
                (
                    await session.execute(
                        select(
                            func.coalesce(
                                func.sum(
                                    AiUsage.input_tokens
                                    + AiUsage.output_tokens
                                    + AiUsage.cache_read_tokens
                                    + AiUsage.cache_write_tokens
                                ),
                                0,
                            )
                        ).where(AiUsage.run_id == run.id)
                    )
                ).scalar_one()
            )
        return Standing(
            project_used=project.ai_tokens_used,
            project_limit=project.ai_token_limit or self.limits.per_project,
            run=run,
            run_used=run_used,
            run_limit=(run.ai_token_limit or self.limits.per_run) if run is not None else None,
        )

    async def stop_if_over(self, session: AsyncSession, project: Project) -> str | None:
        """At a cap: ask the owner (once) and say so; None while within budget."""
        standing = await self.standing(session, project)
        scope = standing.over()
        if scope is None:
            return None
        request = await self._open_request(session, project.id)
        if request is None:
            run = standing.run if scope is BudgetScope.RUN else None
            limit = standing.project_limit if run is None else standing.run_limit or 0
            session.add(
                BudgetRequest(
                    project_id=project.id,
                    run_id=run.id if run is not None else None,
                    scope=scope,
                    limit_tokens=limit,
                    used_tokens=standing.run_used if run is not None else standing.project_used,
                )
            )
            await session.flush()
            self.audit.record(
                AuditAction.APPROVAL_REQUESTED,
                project_id=project.id,
                details={"gate": "budget", "scope": scope.value, "limit": limit},
            )
        return self._stopped_text(standing, scope)

    def _stopped_text(self, standing: Standing, scope: BudgetScope) -> str:
        if scope is BudgetScope.PROJECT:
            used, limit, what = standing.project_used, standing.project_limit, "This project"
        else:
            used, limit, what = standing.run_used, standing.run_limit or 0, "This build"
        suggestion = suggested_budget(used, limit)
        return (
            f"{what} has used its AI budget ({used:,} of {limit:,} tokens), so I have "
            "stopped here. Your message is saved, and I will answer it as soon as the "
            f"project's owner raises the budget, for example `/budget {suggestion}`. "
            "Commands like /status and /approve still work."
        )

    async def raise_budget(
        self, session: AsyncSession, project: Project, actor: Actor, argument: str
    ) -> str:
        """`/budget <tokens>`, the owner only: the new cap of the open request's scope (or
        of the project, with none open); the waiting messages are then answered."""
        amount = parse_amount(argument)
        if amount is None:
            raise ConflictError(
                "Tell me the new budget in tokens, for example `/budget 3000000` or `/budget 3m`."
            )
        project = await lock_project(session, project.id)
        if project.owner_id != actor.identity.id:
            self.audit.record(
                AuditAction.UNAUTHORIZED_ACCESS,
                result=AuditResult.DENIED,
                user_id=actor.audit_id,
                project_id=project.id,
                details={"attempted": "budget"},
            )
            raise ForbiddenError("Only the project's owner can change its AI budget.")
        standing = await self.standing(session, project)
        request = await self._open_request(session, project.id)
        scope = request.scope if request is not None else BudgetScope.PROJECT
        run = standing.run if scope is BudgetScope.RUN else None
        if scope is BudgetScope.RUN and run is None:
            scope = BudgetScope.PROJECT  # the build ended meanwhile
        used = standing.run_used if run is not None else standing.project_used
        before = standing.run_limit if run is not None else standing.project_limit
        if amount <= used:
            raise ConflictError(
                f"That is not more than the {used:,} tokens already used; "
                f"choose a budget above it, for example `/budget {used + 100_000}`."
            )
        if run is not None:
            run.ai_token_limit = amount
        else:
            project.ai_token_limit = amount
        if request is not None:
            request.raised_to = amount
            request.decided_by_id = actor.identity.id
            request.decided_at = datetime.now(UTC)
        await session.flush()
        self.audit.record(
            AuditAction.BUDGET_RAISED,
            user_id=actor.audit_id,
            project_id=project.id,
            details={
                "scope": scope.value,
                "run": run.number if run is not None else None,
                "from": before,
                "to": amount,
                "via": actor.channel.value,
            },
        )
        # The messages that waited are due now, and answered.
        await session.execute(
            update(AgentTurn)
            .where(
                AgentTurn.project_id == project.id,
                AgentTurn.status == TurnStatus.PENDING,
                AgentTurn.not_before >= WAITING_FOR_BUDGET,
            )
            .values(not_before=func.now())
        )
        await enqueue_turn(session, project.id)
        what = f"build #{run.number}" if run is not None else "the project"
        said = f"The AI budget of {what} is now {amount:,} tokens ({used:,} used so far)."
        if request is not None:
            said += " I am answering what you said meanwhile."
        return said

    async def raise_button(
        self, session: AsyncSession, project: Project
    ) -> tuple[uuid.UUID, int] | None:
        """The open request and the figure a one-tap raise offers, if one is open."""
        request = await self._open_request(session, project.id)
        if request is None:
            return None
        return request.id, suggested_budget(request.used_tokens, request.limit_tokens)

    @staticmethod
    async def _open_request(session: AsyncSession, project_id: object) -> BudgetRequest | None:
        return (
            await session.execute(
                select(BudgetRequest).where(
                    BudgetRequest.project_id == project_id, BudgetRequest.raised_to.is_(None)
                )
            )
        ).scalar_one_or_none()
