"""What the channels need from the agent: an answer to a person's message."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.projects.models import Project
from project_orchestrator.projects.service import Actor


class Conversation(Protocol):
    async def respond(
        self, session: AsyncSession, project: Project, actor: Actor, text: str
    ) -> str:
        """Store the message, let the agent act on it, store and return its answer."""
