"""What the worker does with each kind of GitHub event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.channels.github import GitHubReplier
from project_orchestrator.config import Settings
from project_orchestrator.events.models import EventStatus, InboundEvent
from project_orchestrator.ingress.github.commands import parse_comment
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.lookup import project_for_repo, status_text
from project_orchestrator.workflow.models import (
    ApprovalGate,
    GateKind,
    GateStatus,
    WorkflowRun,
)

log = get_logger(__name__)

TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})

HELP_TEXT = """\
Hi! I help you turn an idea into working software, and I check with you at every step.

Mention me with your idea in plain words and we will shape it together. Commands, one per line:
- `/status`: where the project stands
- `/build <what>`: start building something
- `/approve`, `/reject <why>`: decide the step that is waiting for you
- `/hold`, `/resume`, `/cancel`: pause, continue or stop the current build
- `/help`: this message"""

NOT_YET = (
    "I can't do that here yet: building with you arrives soon. "
    "For now I can tell you the `/status` of this project or show `/help`."
)


@dataclass
class GitHubEventHandler:
    settings: Settings
    replier: GitHubReplier
    audit: AuditLog

    @property
    def _bot_login(self) -> str:
        return self.settings.github_bot_mention.lstrip("@").lower()

    async def handle(self, session: AsyncSession, event: InboundEvent) -> EventStatus:
        payload: dict[str, Any] = event.payload
        action = payload.get("action")
        match event.event_type, action:
            case "ping", _:
                log.info("github.ping", hook_id=payload.get("hook_id"))
                return EventStatus.HANDLED
            case "issue_comment", "created" | "edited":
                return await self._comment(session, event, payload, payload["issue"]["number"])
            case "pull_request_review_comment", "created" | "edited":
                number = payload["pull_request"]["number"]
                return await self._comment(session, event, payload, number)
            case "issues", "opened" | "edited":
                return await self._issue_opened(session, event, payload)
            case "pull_request", "synchronize":
                await self._void_merge_gates(session, payload)
                return EventStatus.HANDLED
            case "pull_request", "opened" | "closed" | "reopened":
                return EventStatus.HANDLED
        return EventStatus.IGNORED

    async def _issue_opened(
        self, session: AsyncSession, event: InboundEvent, payload: dict[str, Any]
    ) -> EventStatus:
        issue = payload["issue"]
        as_comment = {
            **payload,
            "comment": {
                "id": f"issue-{issue['number']}",
                "body": issue.get("body") or "",
                "user": issue.get("user") or {},
                "author_association": issue.get("author_association"),
            },
        }
        return await self._comment(session, event, as_comment, issue["number"])

    async def _comment(
        self, session: AsyncSession, event: InboundEvent, payload: dict[str, Any], number: int
    ) -> EventStatus:
        comment = payload["comment"]
        author = comment.get("user") or {}
        login = str(author.get("login") or "")
        repo = payload["repository"]["full_name"]
        if login.lower() == self._bot_login:
            return EventStatus.IGNORED  # our own reply
        if author.get("type") == "Bot" or login.endswith("[bot]"):
            # SCAR's replies are read by the workflow (agent issue); other bots never.
            return EventStatus.IGNORED
        parsed = parse_comment(comment.get("body") or "", self.settings.github_bot_mention)
        if not parsed.mentioned:
            return EventStatus.IGNORED
        key_base = f"github:{repo.lower()}#{number}:comment:{comment['id']}"
        if payload.get("action") == "edited":
            key_base += f":edit:{event.external_id}"
        if not self._allowed(login, comment.get("author_association")):
            self.audit.record(
                AuditAction.UNAUTHORIZED_ACCESS,
                result=AuditResult.DENIED,
                user_id=f"github:{login}",
                details={"repo": repo, "issue": number, "reason": "not a collaborator"},
            )
            # One refusal per person and thread, however often they ask.
            await self.replier.reply(
                repo,
                number,
                f"github:{repo.lower()}#{number}:refusal:{login.lower()}",
                f"Sorry @{login}, I can only take instructions from this repository's "
                "collaborators.",
            )
            return EventStatus.HANDLED
        answers: list[str] = []
        for command in parsed.commands:
            if command.name == "help":
                answers.append(HELP_TEXT)
            elif command.name == "status":
                answers.append(await status_text(session, await project_for_repo(session, repo)))
            else:
                answers.append(f"`/{command.name}`: {NOT_YET}")
        answers.extend(f"I don't know the command `/{name}`." for name in parsed.unknown_commands)
        if parsed.message and not parsed.commands:
            answers.append(f"Thanks! {NOT_YET}")
        if not answers:
            answers.append(HELP_TEXT)
        await self.replier.reply(repo, number, key_base, "\n\n".join(answers))
        return EventStatus.HANDLED

    def _allowed(self, login: str, association: object) -> bool:
        allowed = {user.lower() for user in self.settings.github_allowed_users}
        return association in TRUSTED_ASSOCIATIONS or login.lower() in allowed

    async def _void_merge_gates(self, session: AsyncSession, payload: dict[str, Any]) -> None:
        """A new head means the merge approval was for code that is no longer there."""
        pr = payload["pull_request"]
        project = await project_for_repo(session, payload["repository"]["full_name"])
        if project is None:
            return
        runs = select(WorkflowRun.id).where(
            WorkflowRun.project_id == project.id, WorkflowRun.pr_number == pr["number"]
        )
        new_head = (pr.get("head") or {}).get("sha")
        result = await session.execute(
            update(ApprovalGate)
            .where(
                ApprovalGate.run_id.in_(runs),
                ApprovalGate.kind == GateKind.MERGE,
                ApprovalGate.status == GateStatus.PENDING,
                ApprovalGate.artifact_version != f"sha:{new_head}",
            )
            .values(status=GateStatus.VOIDED)
            .returning(ApprovalGate.id)
        )
        voided = result.scalars().all()
        if voided:
            log.info("gate.voided", gates=[str(g) for g in voided], reason="new PR head")
        await session.execute(
            update(WorkflowRun).where(WorkflowRun.id.in_(runs)).values(pr_head_sha=new_head)
        )
