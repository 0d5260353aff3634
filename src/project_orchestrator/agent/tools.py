"""The agent's tools: thin wrappers over the services.

Who is asking comes from the job (`ToolContext.actor`), never from the model's arguments,
and the services check that person's rights exactly as for a typed command. No tool
decides a gate, and none runs SCAR: starting a run only queues the workflow's own
read-only first step, and code changes wait for the person's approvals.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.audit import AuditAction, AuditLog
from project_orchestrator.channels.base import Notifier
from project_orchestrator.errors import OrchestratorError
from project_orchestrator.projects.lookup import status_text
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import Actor, create_project
from project_orchestrator.scar.models import ScarCommand
from project_orchestrator.vision import service as vision
from project_orchestrator.vision.models import NoteTopic
from project_orchestrator.workflow.notices import announce
from project_orchestrator.workflow.service import Workflow

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


@dataclass
class ToolContext:
    session: AsyncSession
    project: Project
    actor: Actor
    workflow: Workflow
    notifier: Notifier
    audit: AuditLog


Handler = Callable[[ToolContext, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    schema: dict[str, Any]
    handler: Handler
    # Reads only: still answered when the project changed while the model was thinking.
    reads_only: bool = False

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.schema}


def _object(
    properties: dict[str, Any] | None = None, required: list[str] | None = None
) -> dict[str, Any]:
    return {"type": "object", "properties": properties or {}, "required": required or []}


def _text(value: object, field: str, limit: int = 2000) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OrchestratorError(f"{field} must be non-empty text", status_code=422)
    return value.strip()[:limit]


async def _status(ctx: ToolContext, _: dict[str, Any]) -> str:
    readiness = await vision.readiness(ctx.session, ctx.project.id)
    missing = ", ".join(readiness.missing) or "nothing"
    return f"{await status_text(ctx.session, ctx.project)}\nVision still missing: {missing}"


async def _rename(ctx: ToolContext, args: dict[str, Any]) -> str:
    name = " ".join(_text(args.get("name"), "name", 200).split())
    ctx.project.name = name
    await ctx.session.flush()
    return f"Renamed the project to {name}."


async def _link_repo(ctx: ToolContext, args: dict[str, Any]) -> str:
    repo = _text(args.get("repo"), "repo", 200).removeprefix("https://github.com/").strip("/")
    if not _REPO.match(repo):
        return "That is not a repository name; it looks like owner/name."
    taken = (
        await ctx.session.execute(
            select(Project.id).where(
                func.lower(Project.github_repo) == repo.lower(), Project.id != ctx.project.id
            )
        )
    ).scalar_one_or_none()
    if taken is not None:
        return f"{repo} already belongs to another project."
    if (ctx.project.github_repo or "").lower() == repo.lower():
        return f"{repo} is already the project's repository."
    if ctx.project.github_repo and ctx.project.github_issue_number is not None:
        # The project's conversation is that repository's issue; replies, the progress
        # comment and the commands heard there all belong to it.
        return (
            f"This project lives on issue #{ctx.project.github_issue_number} of "
            f"{ctx.project.github_repo}, so it builds there. For another repository, start "
            "a project from an issue of that repository."
        )
    await ctx.workflow.repository_changing(ctx.session, ctx.project)
    ctx.project.github_repo = repo
    ctx.project.scar_codebase = None  # SCAR's folder belonged to the old repository
    await ctx.session.flush()
    ctx.audit.record(
        AuditAction.REPOSITORY_LINKED,
        user_id=ctx.actor.audit_id,
        project_id=ctx.project.id,
        details={"repository": repo},
    )
    run = await ctx.workflow.active_run(ctx.session, ctx.project.id)
    if run is not None:
        await announce(ctx.session, ctx.notifier, run.id)
    return f"Linked {repo} to the project."


async def _create(ctx: ToolContext, args: dict[str, Any]) -> str:
    project = await create_project(
        ctx.session,
        ctx.audit,
        name=_text(args.get("name"), "name", 200),
        owner=ctx.actor,
        github_repo=args.get("github_repo") or None,
        telegram_chat_id=ctx.project.telegram_chat_id,
    )
    return f"Created the project {project.name}."


async def _note(ctx: ToolContext, args: dict[str, Any]) -> str:
    try:
        topic = NoteTopic(str(args.get("topic")))
    except ValueError:
        return "Unknown topic; use one of: " + ", ".join(t.value for t in NoteTopic)
    await vision.record_note(
        ctx.session, ctx.project.id, topic, _text(args.get("text"), "text"), ctx.actor.identity.id
    )
    readiness = await vision.readiness(ctx.session, ctx.project.id)
    if readiness.ready:
        return "Noted. The vision has everything it needs now."
    return "Noted. Still missing: " + ", ".join(readiness.missing)


async def _readiness(ctx: ToolContext, _: dict[str, Any]) -> str:
    readiness = await vision.readiness(ctx.session, ctx.project.id)
    if readiness.ready:
        return "Ready: the vision can be written."
    return "Not ready. Still missing: " + ", ".join(readiness.missing)


async def _generate(ctx: ToolContext, _: dict[str, Any]) -> str:
    result = await vision.generate_vision(
        ctx.session,
        ctx.project,
        author_id=ctx.actor.identity.id,
        audit=ctx.audit,
        user_id=ctx.actor.audit_id,
    )
    document = result.document
    state = "Wrote" if result.created else "Unchanged:"
    return f"{state} vision version {document.version}.\n\n{document.markdown}"


async def _request_approval(ctx: ToolContext, _: dict[str, Any]) -> str:
    run = await ctx.workflow.active_run(ctx.session, ctx.project.id)
    if run is not None:
        gate = await ctx.workflow.pending_gate(ctx.session, run.id)
        if gate is not None:
            await announce(ctx.session, ctx.notifier, run.id)
            return "The person has been asked (again) to decide the pending step."
    document = await vision.latest_vision(ctx.session, ctx.project.id)
    if document is None:
        return "There is no vision yet; generate it first."
    gate = await ctx.workflow.open_vision_gate(ctx.session, ctx.project, ctx.actor, document)
    await announce(ctx.session, ctx.notifier, gate.run_id)
    return "Asked the person to approve the vision; they will answer /approve or /reject."


async def _start_run(ctx: ToolContext, args: dict[str, Any]) -> str:
    run, started = await ctx.workflow.request_build(
        ctx.session, ctx.project, ctx.actor, _text(args.get("feature"), "feature", 1000)
    )
    await announce(ctx.session, ctx.notifier, run.id)
    if not started:
        return f"Build #{run.number} is still agreeing on the vision; its request is updated."
    return f"Started build #{run.number} ({run.kind.value})."


async def _hold(ctx: ToolContext, _: dict[str, Any]) -> str:
    run = await ctx.workflow.hold(ctx.session, ctx.project, ctx.actor)
    await announce(ctx.session, ctx.notifier, run.id)
    return f"Build #{run.number} is on hold."


async def _resume(ctx: ToolContext, _: dict[str, Any]) -> str:
    run = await ctx.workflow.resume(ctx.session, ctx.project, ctx.actor)
    await announce(ctx.session, ctx.notifier, run.id)
    return f"Build #{run.number} continues."


async def _cancel(ctx: ToolContext, _: dict[str, Any]) -> str:
    run = await ctx.workflow.cancel(ctx.session, ctx.project, ctx.actor)
    await announce(ctx.session, ctx.notifier, run.id)
    return f"Build #{run.number} is cancelled."


async def _scar_output(ctx: ToolContext, args: dict[str, Any]) -> str:
    limit = max(1, min(int(args.get("limit") or 3), 10))
    rows = (
        await ctx.session.execute(
            select(ScarCommand)
            .where(ScarCommand.project_id == ctx.project.id)
            .order_by(ScarCommand.created_at.desc())
            .limit(limit)
        )
    ).scalars()
    parts = [
        f"{c.command} ({c.status.value}): {(c.output or c.error or 'no output yet')[:1500]}"
        for c in rows
    ]
    return "\n\n".join(parts) or "SCAR has not run anything for this project yet."


TOOLS: tuple[Tool, ...] = (
    Tool(
        "get_project_status",
        "Where the project and its build stand.",
        _object(),
        _status,
        reads_only=True,
    ),
    Tool(
        "create_project",
        "Start a new project for the person (they own it).",
        _object({"name": {"type": "string"}, "github_repo": {"type": "string"}}, ["name"]),
        _create,
    ),
    Tool(
        "rename_project",
        "Rename the current project.",
        _object({"name": {"type": "string"}}, ["name"]),
        _rename,
    ),
    Tool(
        "link_github_repo",
        "Link the current project to its GitHub repository (owner/name).",
        _object({"repo": {"type": "string"}}, ["repo"]),
        _link_repo,
    ),
    Tool(
        "record_brainstorm_note",
        "Write down one thing learned about the idea, in the person's words.",
        _object(
            {
                "topic": {"type": "string", "enum": [t.value for t in NoteTopic]},
                "text": {"type": "string"},
            },
            ["topic", "text"],
        ),
        _note,
    ),
    Tool(
        "check_vision_readiness",
        "What the vision still needs before it can be written.",
        _object(),
        _readiness,
        reads_only=True,
    ),
    Tool("generate_vision", "Write the vision document from the notes.", _object(), _generate),
    Tool(
        "request_approval",
        "Ask the person to decide the current step (the vision, or any pending step).",
        _object(),
        _request_approval,
    ),
    Tool(
        "start_feature_run",
        "Start building something the person asked for.",
        _object({"feature": {"type": "string"}}, ["feature"]),
        _start_run,
    ),
    Tool(
        "hold_build",
        "Pause the current build when the person asks to (they resume it later).",
        _object(),
        _hold,
    ),
    Tool("resume_build", "Continue a paused build when the person asks to.", _object(), _resume),
    Tool(
        "cancel_build",
        "Stop the current build for good, only when the person clearly asks to.",
        _object(),
        _cancel,
    ),
    Tool(
        "read_scar_output",
        "Read what SCAR said in its most recent commands.",
        _object({"limit": {"type": "integer", "minimum": 1, "maximum": 10}}),
        _scar_output,
        reads_only=True,
    ),
)

BY_NAME = {tool.name: tool for tool in TOOLS}


async def call_tool(ctx: ToolContext, name: str, args: dict[str, Any]) -> tuple[str, bool]:
    """The tool's answer for the model, and whether it was an error."""
    tool = BY_NAME.get(name)
    if tool is None:
        return f"There is no tool called {name}.", True
    try:
        async with ctx.session.begin_nested():
            return await tool.handler(ctx, args), False
    except OrchestratorError as exc:
        return exc.message, True
