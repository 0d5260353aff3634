"""What a run and a project have spent: AI tokens (and their estimated cost) and SCAR time.

The price list is set once per process from settings (`configure_prices`, called where
the app and the worker are put together): prices are configuration, read wherever a
cost is shown, and do not change while the process runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.projects.cost import Cost, PriceList, Usage
from project_orchestrator.projects.models import AiUsage
from project_orchestrator.scar.models import ScarCommand
from project_orchestrator.workflow.models import WorkflowPhase

_prices = PriceList.with_overrides({})


def configure_prices(overrides: Mapping[str, Mapping[str, float]]) -> PriceList:
    """Use the published prices with `AI_PRICES` over them, in this process."""
    global _prices
    _prices = PriceList.with_overrides(overrides)
    return _prices


def prices() -> PriceList:
    return _prices


@dataclass(frozen=True)
class RunSpending:
    ai: Cost
    # SCAR's working time by phase, in seconds, for the phases that ran a command.
    scar_seconds: dict[str, float] = field(default_factory=dict)

    def words(self) -> str:
        """'12,345 AI tokens (about $0.08); SCAR worked 14 min (plan 2 min, build 12 min)'."""
        text = self.ai.words()
        total = sum(self.scar_seconds.values())
        if total > 0:
            parts = ", ".join(f"{phase} {minutes(s)}" for phase, s in self.scar_seconds.items())
            text += f"; SCAR worked {minutes(total)} ({parts})"
        return text


def minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"


_LEDGER_COLUMNS = (
    AiUsage.model,
    func.sum(AiUsage.input_tokens),
    func.sum(AiUsage.output_tokens),
    func.sum(AiUsage.cache_read_tokens),
    func.sum(AiUsage.cache_write_tokens),
)


def _usage(row: tuple[object, ...]) -> Usage:
    model, *counts = row
    return Usage(str(model), *(int(c or 0) for c in counts))  # type: ignore[call-overload]


async def project_costs(
    session: AsyncSession, project_id: uuid.UUID
) -> tuple[Cost, dict[uuid.UUID, Cost]]:
    """The project's AI cost, and each run's (chatting outside a build is only in the
    project's)."""
    rows = await session.execute(
        select(AiUsage.run_id, *_LEDGER_COLUMNS)
        .where(AiUsage.project_id == project_id)
        .group_by(AiUsage.run_id, AiUsage.model)
    )
    everything: list[Usage] = []
    by_run: dict[uuid.UUID, list[Usage]] = {}
    for run_id, *rest in rows.all():
        usage = _usage(tuple(rest))
        everything.append(usage)
        if run_id is not None:
            by_run.setdefault(run_id, []).append(usage)
    price_list = prices()
    return price_list.cost(everything), {
        run: price_list.cost(usages) for run, usages in by_run.items()
    }


async def scar_seconds(
    session: AsyncSession, run_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, float]]:
    """SCAR's working time per run and phase, phases in the order they first ran."""
    if not run_ids:
        return {}
    rows = await session.execute(
        select(ScarCommand.run_id, WorkflowPhase.phase, func.sum(ScarCommand.duration_seconds))
        .join(WorkflowPhase, WorkflowPhase.id == ScarCommand.phase_id)
        .where(ScarCommand.run_id.in_(run_ids), ScarCommand.duration_seconds.is_not(None))
        .group_by(ScarCommand.run_id, WorkflowPhase.phase)
        .order_by(ScarCommand.run_id, func.min(ScarCommand.created_at))
    )
    found: dict[uuid.UUID, dict[str, float]] = {}
    for run_id, phase, seconds in rows.all():
        if run_id is not None:
            found.setdefault(run_id, {})[phase.value] = float(seconds or 0)
    return found


async def run_spending(session: AsyncSession, run_id: uuid.UUID) -> RunSpending:
    usage = await session.execute(
        select(*_LEDGER_COLUMNS).where(AiUsage.run_id == run_id).group_by(AiUsage.model)
    )
    return RunSpending(
        ai=prices().cost(_usage(tuple(row)) for row in usage.all()),
        scar_seconds=(await scar_seconds(session, [run_id])).get(run_id, {}),
    )
