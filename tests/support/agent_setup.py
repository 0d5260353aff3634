"""The agent driven as the worker drives it, against any model server's fake."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Generic, TypeVar

from pgqueuer.errors import RetryRequested
from sqlalchemy import select

from project_orchestrator.agent.conversation import AgentConversation
from project_orchestrator.agent.llm import ModelGateway
from project_orchestrator.agent.models import AgentTurn, TurnStatus
from project_orchestrator.agent.protocol import ReplyTo
from project_orchestrator.agent.turns import TurnRunner
from project_orchestrator.audit import AuditLog
from project_orchestrator.channels.base import Notifier
from project_orchestrator.channels.models import OutboundMessage
from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.projects.budget import Budgets, Limits
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import Actor, create_project, github_identity
from project_orchestrator.workflow.service import Workflow

F = TypeVar("F")


class Setup(Generic[F]):
    """A project and the agent, driven as the worker drives them: the message is stored
    in one transaction, the turn runs afterwards in its own."""

    def __init__(self, db: Database, fake: F, gateway: ModelGateway, tmp: Path) -> None:
        self.db = db
        self.fake = fake
        self.audit = AuditLog(tmp / "audit.log")
        self.gateway = gateway
        self.agent = AgentConversation(
            gateway=self.gateway,
            workflow=Workflow(self.audit),
            notifier=Notifier([]),
            audit=self.audit,
            budgets=Budgets(self.audit, Limits(per_project=1_000_000, per_run=1_000_000)),
        )
        self.turns = TurnRunner(
            db, self.agent, first_retry=timedelta(0), longest_retry=timedelta(0)
        )
        self.project_id: uuid.UUID
        self.actor_id: uuid.UUID
        self._said = 0

    async def start(self) -> Setup[F]:
        async with self.db.session_scope() as session:
            actor = Actor(await github_identity(session, "ada"), Channel.GITHUB)
            project = await create_project(
                session, self.audit, name="Meals", owner=actor, github_repo="acme/meals"
            )
            self.project_id, self.actor_id = project.id, actor.identity.id
        return self

    async def say(self, text: str, *, login: str | None = None) -> str | None:
        """What the person is told: at once, or by the turn (None: nothing yet)."""
        self._said += 1
        key = f"reply:{self._said}"
        async with self.db.session_scope() as session:
            project = await session.get(Project, self.project_id)
            assert project is not None
            identity = await github_identity(session, login or "ada")
            immediate = await self.agent.respond(
                session,
                project,
                Actor(identity, Channel.GITHUB),
                text,
                ReplyTo.github("acme/meals", 1, key),
            )
        if immediate is not None:
            return immediate
        with contextlib.suppress(RetryRequested):  # the AI away: the queue would retry
            await self.turns.run(self.project_id, "job-test")
        return await self.told(key)

    async def told(self, key: str) -> str | None:
        async with self.db.session_scope() as session:
            found = await session.execute(
                select(OutboundMessage.body).where(OutboundMessage.idempotency_key == key)
            )
            return found.scalar_one_or_none()

    async def project(self) -> Project:
        async with self.db.session_scope() as session:
            project = await session.get(Project, self.project_id)
            assert project is not None
            return project

    async def turn_statuses(self) -> list[TurnStatus]:
        async with self.db.session_scope() as session:
            rows = await session.execute(select(AgentTurn.status).order_by(AgentTurn.id))
            return list(rows.scalars())
