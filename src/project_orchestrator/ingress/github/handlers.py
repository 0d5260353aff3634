"""What the worker does with each kind of GitHub event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.agent.protocol import Conversation, ReplyTo
from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.channels.staging import stage_comment
from project_orchestrator.config import Settings
from project_orchestrator.db.types import Channel
from project_orchestrator.errors import OrchestratorError
from project_orchestrator.events.models import EventStatus, InboundEvent
from project_orchestrator.ingress.github.commands import ParsedComment, parse_comment
from project_orchestrator.ingress.github.shapes import shape_problem
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.linking import finish_link
from project_orchestrator.projects.lookup import project_for_repo, status_text
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import Actor, create_project, github_identity
from project_orchestrator.workflow.commands import CommandDesk
from project_orchestrator.workflow.notices import announce
from project_orchestrator.workflow.readiness import MergeReadiness
from project_orchestrator.workflow.service import Workflow

log = get_logger(__name__)

TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})

HELP_TEXT = """\
Hi! I help you turn an idea into working software, and I check with you at every step.

Mention me with your idea in plain words and we will shape it together. Commands, one per line:
- `/status`: where the project stands
- `/build <what>`: start building something
- `/approve`, `/reject <why>`: decide the step that is waiting for you
- `/hold`, `/resume`, `/cancel`: pause, continue or stop the current build
- `/budget <tokens>`: raise the AI budget when I have stopped at it (the owner only)
- `/page`: a link to the project's page (vision, builds step by step, cost)
- `/help`: this message"""


@dataclass
class GitHubEventHandler:
    settings: Settings
    audit: AuditLog
    workflow: Workflow
    desk: CommandDesk
    conversation: Conversation
    readiness: MergeReadiness

    @property
    def _scar_logins(self) -> frozenset[str]:
        login = self.settings.scar_github_mention.lstrip("@").lower()
        return frozenset({login, f"{login}[bot]"})

    @property
    def _bot_login(self) -> str:
        return self.settings.github_bot_mention.lstrip("@").lower()

    async def handle(self, session: AsyncSession, event: InboundEvent) -> EventStatus:
        payload: dict[str, Any] = event.payload
        problem = shape_problem(event.event_type, payload)
        if problem is not None:
            log.warning(
                "github.event_malformed",
                event_id=event.id,
                event_type=event.event_type,
                reason=problem,
            )
            return EventStatus.IGNORED
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
            case "issues", "opened":
                return await self._issue_opened(session, event, payload)
            case "pull_request", "synchronize":
                await self._pull_request_moved(session, payload)
                return EventStatus.HANDLED
            case "pull_request", "closed":
                await self._pull_request_closed(session, payload)
                return EventStatus.HANDLED
            case "pull_request", "opened" | "reopened":
                return EventStatus.HANDLED
            case "check_suite" | "check_run", "completed":
                kind = event.event_type
                return await self._check_finished(session, payload, payload[kind]["head_sha"])
            case "status", _:
                if payload["state"] == "pending":
                    return EventStatus.IGNORED  # a check starting changes no verdict
                return await self._check_finished(session, payload, payload["sha"])
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
        if login.lower() in self._scar_logins:
            # SCAR's replies: the GitHub transport reads them from the stored event.
            return EventStatus.HANDLED
        if author.get("type") == "Bot" or login.endswith("[bot]"):
            return self._ignored(event, "written by a bot")
        if payload.get("action") == "edited":
            # An edit is not a new instruction: fixing a typo must not approve twice.
            return self._ignored(event, "an edit, not a new comment")
        parsed = parse_comment(comment.get("body") or "", self.settings.github_bot_mention)
        if not parsed.mentioned:
            # Said at info level: a GITHUB_BOT_MENTION that is not the account people
            # mention makes every comment land here (doctor warns about it too).
            return self._ignored(
                event, f"does not mention {self.settings.github_bot_mention} (GITHUB_BOT_MENTION)"
            )
        key_base = keys.github_comment(repo, number, comment["id"])
        if not self._allowed(login, comment.get("author_association")):
            self.audit.record(
                AuditAction.UNAUTHORIZED_ACCESS,
                result=AuditResult.DENIED,
                user_id=keys.github_user(login),
                details={"repo": repo, "issue": number, "reason": "not a collaborator"},
            )
            # One refusal per person and thread, however often they ask.
            await stage_comment(
                session,
                repo,
                number,
                keys.github_refusal(repo, number, login),
                f"Sorry @{login}, I can only take instructions from this repository's "
                "collaborators.",
            )
            return EventStatus.HANDLED
        project = await project_for_repo(session, repo)
        wants_only_info = all(
            c.name in ("help", "status", "link", "page") for c in parsed.commands
        ) and not (parsed.message)
        if project is None and not wants_only_info:
            project = await self._start_project(session, repo, number, login)
        elif project is not None and project.github_issue_number is None:
            project.github_issue_number = number  # the conversation lives here from now on
        agent_reply = ReplyTo.github(repo, number, keys.agent_answer(key_base))
        answers = await self._answers(session, project, login, parsed, agent_reply)
        if answers:
            await stage_comment(session, repo, number, key_base, "\n\n".join(answers))
        return EventStatus.HANDLED

    async def _answers(
        self,
        session: AsyncSession,
        project: Project | None,
        login: str,
        parsed: ParsedComment,
        agent_reply: ReplyTo,
    ) -> list[str]:
        """The commands' answers, at once; the agent's answer to the words around them
        follows as a comment of its own."""
        answers: list[str] = []
        actor = None
        if project is not None:
            actor = Actor(await github_identity(session, login), Channel.GITHUB)
        for command in parsed.commands:
            if command.name == "help":
                answers.append(HELP_TEXT)
            elif command.name == "link":
                answers.append(await self._link(session, login, command.argument))
            elif project is None or actor is None:
                answers.append(await status_text(session, None))
            else:
                answers.append(
                    await self.desk.run(session, project, actor, command.name, command.argument)
                )
        answers.extend(f"I don't know the command `/{name}`." for name in parsed.unknown_commands)
        if parsed.message and project is not None and actor is not None:
            answer = await self.conversation.respond(
                session, project, actor, parsed.message, agent_reply
            )
            if answer is None:
                return answers  # the agent answers by itself, in a moment
            answers.append(answer)
        if not answers:
            answers.append(HELP_TEXT)
        return answers

    async def _link(self, session: AsyncSession, login: str, code: str) -> str:
        """The GitHub half of /link: the code proves this login is that Telegram user."""
        try:
            async with session.begin_nested():
                await finish_link(session, self.audit, login, code)
        except OrchestratorError as exc:
            return exc.message
        return (
            f"Linked! @{login} and your Telegram account are now one person here: "
            "decisions on either count as yours."
        )

    async def _start_project(
        self, session: AsyncSession, repo: str, number: int, login: str
    ) -> Project:
        """A mention in a repository without a project starts one, owned by the commenter."""
        owner = Actor(await github_identity(session, login), Channel.GITHUB)
        return await create_project(
            session,
            self.audit,
            name=repo.split("/", 1)[1],
            owner=owner,
            github_repo=repo,
            github_issue_number=number,
        )

    @staticmethod
    def _ignored(event: InboundEvent, reason: str) -> EventStatus:
        log.info("github.comment_ignored", event_id=event.id, reason=reason)
        return EventStatus.IGNORED

    def _allowed(self, login: str, association: object) -> bool:
        allowed = {user.lower() for user in self.settings.github_allowed_users}
        return association in TRUSTED_ASSOCIATIONS or login.lower() in allowed

    async def _pull_request_moved(self, session: AsyncSession, payload: dict[str, Any]) -> None:
        """A new head means a merge approval was for code that is no longer there."""
        project = await project_for_repo(session, payload["repository"]["full_name"])
        if project is None:
            return
        pr = payload["pull_request"]
        head = (pr.get("head") or {}).get("sha")
        voided = await self.readiness.pull_request_moved(session, project, pr["number"], head)
        if voided:
            log.info("gate.voided", gates=[str(g.id) for g in voided], reason="new PR head")
            run = await self.workflow.active_run(session, project.id)
            if run is not None:
                await announce(session, self.desk.notifier, run.id)

    async def _pull_request_closed(self, session: AsyncSession, payload: dict[str, Any]) -> None:
        """Merged or closed by a person on GitHub: the run ends the same way."""
        project = await project_for_repo(session, payload["repository"]["full_name"])
        if project is None:
            return
        pr = payload["pull_request"]
        merged = pr.get("merged") is True
        person = (pr.get("merged_by") if merged else None) or payload.get("sender") or {}
        login = person.get("login")
        run = await self.readiness.pull_request_ended(
            session,
            project,
            self.desk.notifier,
            number=pr["number"],
            merged=merged,
            by=login if isinstance(login, str) and login else None,
        )
        if run is not None:
            log.info("run.ended_on_github", run=run.number, merged=merged)
            await announce(session, self.desk.notifier, run.id)

    async def _check_finished(
        self, session: AsyncSession, payload: dict[str, Any], head_sha: str
    ) -> EventStatus:
        """A check on a commit finished: a run waiting on that commit reads GitHub again."""
        project = await project_for_repo(session, payload["repository"]["full_name"])
        if project is None:
            return EventStatus.IGNORED
        woken = await self.readiness.check_finished(session, project, head_sha)
        return EventStatus.HANDLED if woken else EventStatus.IGNORED
