"""How a run addresses SCAR: one conversation per run, and the web address of the
GitHub the repositories live on."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.scar.models import ScarCommand
from project_orchestrator.workflow.models import WorkflowRun


def web_url(api_url: str) -> str:
    """github.com for the public API; the host of a GitHub Enterprise API otherwise."""
    base = api_url.rstrip("/")
    if base == "https://api.github.com":
        return "https://github.com"
    return base.removesuffix("/api/v3")


def conversation_id(run: WorkflowRun) -> str:
    """One SCAR conversation per run: its commands share SCAR's AI session."""
    return f"po-run-{run.id}"


async def conversation_started(
    session: AsyncSession, run: WorkflowRun, command: ScarCommand
) -> bool:
    """Whether an earlier command of the conversation went to SCAR (it has the repository)."""
    earlier = select(ScarCommand.id).where(
        ScarCommand.run_id == run.id,
        ScarCommand.conversation_id == command.conversation_id,
        ScarCommand.id != command.id,
        ScarCommand.sent_at.is_not(None),
    )
    return bool((await session.execute(select(exists(earlier)))).scalar())
