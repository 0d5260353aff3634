"""The repository a run builds in: created when the project has none, and holding the
approved vision as `docs/vision.md` so the coding agent can read it.

Both talk to GitHub, so they run between the step's transactions, never inside one.
Creating is safe to repeat: the repository's description carries the project's id, so an
attempt that died after GitHub created it finds it again instead of making a second one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from project_orchestrator import keys
from project_orchestrator.audit import AuditAction, AuditLog
from project_orchestrator.channels.base import Notifier, ProjectAddress
from project_orchestrator.db.engine import Database
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.service import lock_project
from project_orchestrator.repos.host import RepositoryHost, repository_name
from project_orchestrator.workflow.machine import VISION_PATH

log = get_logger(__name__)

NO_OWNER_CONFIGURED = (
    "This project has no GitHub repository yet, so SCAR has nothing to work on. Tell me "
    "which repository to use (for example: use the repository acme/meal-planner), or ask "
    "the operator to set GITHUB_REPO_OWNER so I can create one; then approve to try again."
)


def marker(project_id: uuid.UUID) -> str:
    return f"[orchestrator:{project_id}]"


@dataclass
class RunRepositories:
    db: Database
    host: RepositoryHost
    audit: AuditLog
    notifier: Notifier
    owner: str | None
    private: bool = True

    async def create_for(self, project_id: uuid.UUID, project_name: str) -> str:
        """Create (or find again) the project's repository and link it; returns its name."""
        if self.owner is None:
            raise LookupError(NO_OWNER_CONFIGURED)
        hosted = await self.host.ensure_repository(
            self.owner,
            repository_name(project_name),
            private=self.private,
            marker=marker(project_id),
            description=f"{project_name}, built with Project Orchestrator.",
        )
        async with self.db.session_scope() as session:
            project = await lock_project(session, project_id)
            if project.github_repo is not None:
                return project.github_repo  # someone linked one meanwhile: theirs wins
            project.github_repo = hosted.full_name
            # In the linking transaction: the audit line and the message report what
            # committed, and leave once it has.
            if hosted.created:
                self.audit.record(
                    AuditAction.REPOSITORY_CREATED,
                    project_id=project_id,
                    details={
                        "repository": hosted.full_name,
                        "owner": self.owner,
                        "private": self.private,
                    },
                )
            await self.notifier.send(
                session,
                ProjectAddress.of(project),
                keys.repository_created(project_id),
                f"I made a {'private' if self.private else 'public'} GitHub repository for "
                f"{project_name}: {hosted.html_url}\nSCAR builds it there.",
            )
        log.info("repository.linked", repository=hosted.full_name, created=hosted.created)
        return hosted.full_name

    async def publish_vision(self, full_name: str, markdown: str, version: int) -> bool:
        """Commit the approved vision to the default branch; False when already there."""
        changed = await self.host.publish_file(
            full_name,
            VISION_PATH,
            markdown,
            f"Vision version {version}, as approved",
        )
        log.info("repository.vision_published", repository=full_name, changed=changed)
        return changed
