"""The chat commands that drive the workflow, the same on every channel.

Each returns the plain-language answer for the person; refusals (not allowed, nothing to
decide, already on hold) are answers too, never errors that would retry the job.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.channels.base import Notifier
from project_orchestrator.errors import OrchestratorError
from project_orchestrator.projects.budget import Budgets
from project_orchestrator.projects.lookup import status_text
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.page_links import page_link
from project_orchestrator.projects.service import Actor
from project_orchestrator.workflow.models import GateKind, RunKind
from project_orchestrator.workflow.notices import announce, gate_name
from project_orchestrator.workflow.service import Workflow

WORKFLOW_COMMANDS = frozenset(
    {"build", "approve", "reject", "hold", "resume", "cancel", "budget", "page"}
)
PAGE_NOT_SET_UP = (
    "The project page is not set up on this server yet (whoever runs it sets "
    "PUBLIC_BASE_URL and PAGE_LINK_SECRET). `/status` tells where things stand meanwhile."
)


@dataclass
class CommandDesk:
    workflow: Workflow
    notifier: Notifier
    budgets: Budgets

    async def run(
        self, session: AsyncSession, project: Project, actor: Actor, name: str, argument: str
    ) -> str:
        try:
            return await self._run(session, project, actor, name, argument)
        except OrchestratorError as exc:
            return exc.message

    async def _run(
        self, session: AsyncSession, project: Project, actor: Actor, name: str, argument: str
    ) -> str:
        match name:
            case "status":
                return await status_text(session, project)
            case "build":
                run, started = await self.workflow.request_build(session, project, actor, argument)
                await announce(session, self.notifier, run.id)
                if not started:
                    return (
                        f'Noted: build #{run.number} will be "{run.feature_request}". We are '
                        "still agreeing on the vision; once you approve it, that is what SCAR "
                        "plans and builds."
                    )
                if run.kind is RunKind.INITIAL:
                    return (
                        f"Build #{run.number} has started. First we agree on the vision: "
                        "what it is, who it is for, the problem it solves, its main features, "
                        "how someone uses it, and how we will know it works. Tell me about it!"
                    )
                return f"Build #{run.number} has started: SCAR is reading the project first."
            case "approve" | "reject":
                approve = name == "approve"
                decision = await self.workflow.decide(
                    session, project, actor, approve=approve, feedback=argument or None
                )
                await announce(session, self.notifier, decision.run.id)
                return _decision_answer(decision.gate.kind, approve)
            case "hold":
                run = await self.workflow.hold(session, project, actor)
                await announce(session, self.notifier, run.id)
                return "On hold. Nothing more will happen until you say `/resume`."
            case "resume":
                run = await self.workflow.resume(session, project, actor)
                await announce(session, self.notifier, run.id)
                return "Resumed: picking up where we stopped."
            case "budget":
                return await self.budgets.raise_budget(session, project, actor, argument)
            case "page":
                link = page_link(project.id)
                if link is None:
                    return PAGE_NOT_SET_UP
                return (
                    f"Here is {project.name}'s page: the vision, each build step by step, "
                    f"what waits for you and the cost so far.\n{link}\nThe link works for "
                    "a while; ask `/page` again for a fresh one."
                )
            case "cancel":
                run = await self.workflow.cancel(session, project, actor)
                await announce(session, self.notifier, run.id)
                return f"Build #{run.number} is cancelled. Nothing more will happen for it."
        raise ValueError(f"not a workflow command: {name}")


def _decision_answer(kind: GateKind, approved: bool) -> str:
    if not approved:
        return {
            GateKind.VISION: "Thanks, let's improve the vision. What should change?",
            GateKind.PLAN: "Got it: SCAR will plan again with your feedback.",
            GateKind.MERGE: "Got it: SCAR will change the code with your feedback first.",
            GateKind.ERROR_RESOLUTION: "Understood: the build is paused. `/resume` when ready.",
        }[kind]
    return {
        GateKind.VISION: "Approved! SCAR starts by reading the project, then plans the build.",
        GateKind.PLAN: "Approved! SCAR is building it now.",
        GateKind.MERGE: "Approved! Merging now.",
        GateKind.ERROR_RESOLUTION: "OK, trying to fix it now.",
    }.get(kind, f"Approved {gate_name(kind)}.")
