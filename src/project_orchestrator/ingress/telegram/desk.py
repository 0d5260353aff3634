"""What the bot does with a person's Telegram message or button tap.

Every entry point gets the job's session (the job commits) and the stored update; who is
asking is the update's sender, checked against TELEGRAM_ALLOWED_USER_IDS first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import CallbackQuery, User

from project_orchestrator import keys
from project_orchestrator.agent.protocol import Conversation, ReplyTo
from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.channels.staging import (
    stage_button_answer,
    stage_drop_buttons,
    stage_message,
)
from project_orchestrator.config import Settings
from project_orchestrator.db.types import Channel
from project_orchestrator.errors import OrchestratorError
from project_orchestrator.projects.linking import CODE_LIFETIME, start_link
from project_orchestrator.projects.models import BudgetRequest, Project, TelegramChat
from project_orchestrator.projects.service import (
    Actor,
    create_project,
    projects_of,
    telegram_identity,
)
from project_orchestrator.workflow.commands import WORKFLOW_COMMANDS, CommandDesk
from project_orchestrator.workflow.models import ApprovalGate, GateStatus, WorkflowRun
from project_orchestrator.workflow.notices import gate_name

HELP = """\
Hi! I help you turn an idea into working software, and I check with you at every step.

Just tell me about your idea in plain words. Useful commands:
/new <name>: start a new project
/projects: your projects, and /use <name or number> to switch
/status: where the current project stands
/build <what>: start building something
/approve, /reject <what should change>: decide the step that is waiting for you
/hold, /resume, /cancel: pause, continue or stop the current build
/budget <tokens>: raise the AI budget when I have stopped at it (the owner only)
/page: a link to the project's page (vision, builds step by step, cost)
/link <github-login>: connect your GitHub account
/help: this message"""

NO_PROJECT = "Let's start a project first: send /new followed by a name, like /new Meal planner."
TELEGRAM_COMMANDS = frozenset(
    {"start", "help", "new", "projects", "use", "link", "status"} | WORKFLOW_COMMANDS
)


@dataclass(frozen=True)
class Said:
    """What a person said in one update, as the desk needs it."""

    update_id: int
    chat_id: int
    user: User


@dataclass
class TelegramDesk:
    settings: Settings
    audit: AuditLog
    commands: CommandDesk
    conversation: Conversation

    # --- access --------------------------------------------------------------------

    def allowed(self, user: User) -> bool:
        return user.id in self.settings.telegram_allowed_user_ids

    async def refuse(self, session: AsyncSession, said: Said) -> None:
        self.audit_refusal(said)
        await stage_message(
            session,
            said.chat_id,
            keys.telegram_refusal(said.user.id),
            "Sorry, this bot is private: I can only talk with people its operators have "
            "allowed. Your Telegram user id is "
            f"{said.user.id}, if you want to ask them.",
        )

    async def refuse_button(self, session: AsyncSession, said: Said, query: CallbackQuery) -> None:
        self.audit_refusal(said)
        await stage_button_answer(
            session,
            said.update_id,
            said.chat_id,
            query.id,
            "Sorry, you are not allowed to decide here.",
            alert=True,
        )

    def audit_refusal(self, said: Said) -> None:
        self.audit.record(
            AuditAction.UNAUTHORIZED_ACCESS,
            result=AuditResult.DENIED,
            user_id=keys.telegram_user(said.user.id),
            details={"channel": "telegram", "reason": "not in TELEGRAM_ALLOWED_USER_IDS"},
        )

    async def _actor(self, session: AsyncSession, user: User) -> Actor:
        identity = await telegram_identity(session, user.id, user.full_name or None)
        return Actor(identity, Channel.TELEGRAM)

    async def _chat(self, session: AsyncSession, chat_id: int) -> TelegramChat:
        chat = await session.get(TelegramChat, chat_id, with_for_update=True)
        if chat is None:
            chat = TelegramChat(chat_id=chat_id)
            session.add(chat)
            await session.flush()
        return chat

    async def reply(self, session: AsyncSession, said: Said, text: str) -> None:
        """The answer to what they said, sent once this job's transaction commits."""
        await stage_message(session, said.chat_id, keys.telegram_reply(said.update_id), text)

    # --- messages ------------------------------------------------------------------

    async def command(self, session: AsyncSession, said: Said, name: str, argument: str) -> None:
        actor = await self._actor(session, said.user)
        chat = await self._chat(session, said.chat_id)
        answer = await self._command(session, said, actor, chat, name, argument.strip())
        await self.reply(session, said, answer)

    async def _command(
        self,
        session: AsyncSession,
        said: Said,
        actor: Actor,
        chat: TelegramChat,
        name: str,
        argument: str,
    ) -> str:
        if name == "help":
            return HELP
        if name == "start":
            return await self._welcome(session, actor, chat)
        if name == "new":
            return await self._new(session, said, actor, chat, argument)
        if name == "projects":
            return await self._list(session, actor, chat)
        if name == "use":
            return await self._use(session, said, actor, chat, argument)
        if name == "link":
            return await self._link(session, actor, argument)
        project = await self._current(session, chat)
        if project is None:
            return NO_PROJECT
        if name == "reject":
            chat.awaiting_feedback_gate_id = None  # the feedback came with the command
        return await self.commands.run(session, project, actor, name, argument)

    async def text(self, session: AsyncSession, said: Said, text: str) -> None:
        actor = await self._actor(session, said.user)
        chat = await self._chat(session, said.chat_id)
        if chat.awaiting_feedback_gate_id and chat.awaiting_feedback_user_id == said.user.id:
            answer = await self._feedback(session, chat, actor, text)
            await self.reply(session, said, answer)
            return
        project = await self._current(session, chat)
        if project is None:
            await self.reply(session, said, NO_PROJECT)
            return
        reply_to = ReplyTo.telegram(said.chat_id, keys.telegram_reply(said.update_id))
        immediate = await self.conversation.respond(session, project, actor, text, reply_to)
        if immediate is not None:  # else the agent answers by itself, in a moment
            # Stopped at a budget: a button raises it in one tap (the owner's only). Its
            # own key: the agent's answer, once the budget is raised, takes the reply's.
            button = await self.commands.budgets.raise_button(session, project)
            key = keys.telegram_reply(said.update_id)
            if button is not None:
                key += ":budget"
            await stage_message(session, said.chat_id, key, immediate, budget=button)

    async def _feedback(
        self, session: AsyncSession, chat: TelegramChat, actor: Actor, text: str
    ) -> str:
        gate_id = chat.awaiting_feedback_gate_id
        chat.awaiting_feedback_gate_id = None
        chat.awaiting_feedback_user_id = None
        gate = await session.get(ApprovalGate, gate_id)
        if gate is None or gate.status is not GateStatus.PENDING:
            return "That question was already decided, so I kept your note as a message."
        project = await self._project_of_gate(session, gate)
        return await self.commands.run(session, project, actor, "reject", text)

    # --- project commands ----------------------------------------------------------

    async def _welcome(self, session: AsyncSession, actor: Actor, chat: TelegramChat) -> str:
        projects = await projects_of(session, actor.identity.id)
        if not projects:
            return (
                "Welcome! I turn ideas into working software, checking with you at every "
                "step.\n\n" + NO_PROJECT
            )
        return "Welcome back!\n\n" + await self._list(session, actor, chat)

    async def _new(
        self, session: AsyncSession, said: Said, actor: Actor, chat: TelegramChat, name: str
    ) -> str:
        if not name:
            return "What should the project be called? Send /new followed by a name."
        for project in await projects_of(session, actor.identity.id):
            if project.name.lower() == " ".join(name.split()).lower():
                chat.current_project_id = project.id
                return f"You already have {project.name}, so we are back on it."
        project = await create_project(
            session,
            self.commands.workflow.audit,
            name=name,
            owner=actor,
            telegram_chat_id=said.chat_id,
        )
        chat.current_project_id = project.id
        return (
            f"Started {project.name}! Tell me about your idea: what should it do, and for "
            "whom? If it has a GitHub repository, tell me its name (owner/name)."
        )

    async def _list(self, session: AsyncSession, actor: Actor, chat: TelegramChat) -> str:
        projects = await projects_of(session, actor.identity.id)
        if not projects:
            return NO_PROJECT
        lines = ["Your projects:"]
        for number, project in enumerate(projects, start=1):
            mark = " (current)" if project.id == chat.current_project_id else ""
            lines.append(f"{number}. {project.name}{mark}")
        lines.append("\nSwitch with /use followed by a name or number.")
        return "\n".join(lines)

    async def _use(
        self, session: AsyncSession, said: Said, actor: Actor, chat: TelegramChat, which: str
    ) -> str:
        projects = await projects_of(session, actor.identity.id)
        chosen = None
        if which.isdigit() and 1 <= int(which) <= len(projects):
            chosen = projects[int(which) - 1]
        else:
            matches = [p for p in projects if p.name.lower() == which.lower()]
            chosen = matches[0] if matches else None
        if chosen is None:
            return "I can't find that project. " + await self._list(session, actor, chat)
        chat.current_project_id = chosen.id
        if chosen.telegram_chat_id is None:
            chosen.telegram_chat_id = said.chat_id  # its news comes here from now on
        return f"Now working on {chosen.name}."

    async def _link(self, session: AsyncSession, actor: Actor, login: str) -> str:
        if not login:
            return "Send /link followed by your GitHub login, like /link octocat."
        try:
            code = await start_link(session, actor.identity, login)
        except OrchestratorError as exc:
            return exc.message
        minutes = int(CODE_LIFETIME.total_seconds() // 60)
        mention = self.settings.github_bot_mention
        return (
            f"To prove that {login.lstrip('@')} is you, post this comment on GitHub, as "
            f"{login.lstrip('@')}, on any issue of a repository I work on, within {minutes} "
            f"minutes:\n\n`{mention} /link {code}`"
        )

    async def _current(self, session: AsyncSession, chat: TelegramChat) -> Project | None:
        if chat.current_project_id is None:
            return None
        return await session.get(Project, chat.current_project_id)

    async def _project_of_gate(self, session: AsyncSession, gate: ApprovalGate) -> Project:
        run = await session.get(WorkflowRun, gate.run_id)
        if run is None:
            raise OrchestratorError("That build no longer exists.", status_code=404)
        project = await session.get(Project, run.project_id)
        if project is None:
            raise OrchestratorError("That project no longer exists.", status_code=404)
        return project

    # --- buttons -------------------------------------------------------------------

    async def button(self, session: AsyncSession, said: Said, query: CallbackQuery) -> None:
        """Approve or Reject on a gate's question, or Raise on a budget; the tap is always
        answered."""
        kind, gate_text, choice = [*(query.data or "").split(":", 2), "", "", ""][:3]
        if kind == "budget":
            await self._budget_button(session, said, query, gate_text, choice)
            return
        gate = await _gate(session, gate_text)
        if gate is None or choice not in ("approve", "reject"):
            await self._answer(session, said, query, "This button no longer does anything.")
            return
        if gate.status is not GateStatus.PENDING:
            await self._answer(session, said, query, _already(gate))
            await self._drop_buttons(session, said.chat_id, query)
            return
        actor = await self._actor(session, said.user)
        project = await self._project_of_gate(session, gate)
        if choice == "reject":
            chat = await self._chat(session, said.chat_id)
            chat.awaiting_feedback_gate_id = gate.id
            chat.awaiting_feedback_user_id = said.user.id
            await self._answer(session, said, query, "Tell me what should change.")
            await self.reply(
                session,
                said,
                f"What should change about {gate_name(gate.kind)}? Send it as a message and "
                "I will pass it on.",
            )
            return
        answer = await self.commands.run(session, project, actor, "approve", "")
        await self._answer(session, said, query, answer)
        await session.refresh(gate)
        if gate.status is not GateStatus.PENDING:
            await self._drop_buttons(session, said.chat_id, query)
        await self.reply(session, said, answer)

    async def _budget_button(
        self,
        session: AsyncSession,
        said: Said,
        query: CallbackQuery,
        request_text: str,
        amount: str,
    ) -> None:
        """Raise on a budget request: the owner's `/budget <amount>` in one tap."""
        try:
            request_id = uuid.UUID(request_text)
        except ValueError:
            request_id = None
        request = await session.get(BudgetRequest, request_id) if request_id else None
        if request is None or not amount.isdigit():
            await self._answer(session, said, query, "This button no longer does anything.")
            return
        if request.raised_to is not None:
            await self._answer(session, said, query, f"Already raised to {request.raised_to:,}.")
            await self._drop_buttons(session, said.chat_id, query)
            return
        project = await session.get(Project, request.project_id)
        if project is None:
            await self._answer(session, said, query, "That project no longer exists.")
            return
        actor = await self._actor(session, said.user)
        answer = await self.commands.run(session, project, actor, "budget", amount)
        await self._answer(session, said, query, answer)
        await session.refresh(request)
        if request.raised_to is not None:
            await self._drop_buttons(session, said.chat_id, query)
        await self.reply(session, said, answer)

    async def _answer(
        self, session: AsyncSession, said: Said, query: CallbackQuery, text: str
    ) -> None:
        await stage_button_answer(session, said.update_id, said.chat_id, query.id, text)

    async def _drop_buttons(
        self, session: AsyncSession, chat_id: int, query: CallbackQuery
    ) -> None:
        if query.message is not None:
            await stage_drop_buttons(session, chat_id, query.message.message_id)


async def _gate(session: AsyncSession, gate_text: str) -> ApprovalGate | None:
    try:
        gate_id = uuid.UUID(gate_text)
    except ValueError:
        return None
    return (
        await session.execute(select(ApprovalGate).where(ApprovalGate.id == gate_id))
    ).scalar_one_or_none()


def _already(gate: ApprovalGate) -> str:
    if gate.status in (GateStatus.APPROVED, GateStatus.REJECTED):
        return f"Already decided: {gate.status.value}."
    return "This question no longer applies: what it asked about has changed."
