"""Brainstorm notes and vision versions. Services flush; the caller's edge commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import metrics
from project_orchestrator.audit import AuditAction, AuditLog
from project_orchestrator.effects import after_commit
from project_orchestrator.errors import NotFoundError, OrchestratorError
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.models import Project
from project_orchestrator.vision.models import (
    LIST_TOPICS,
    NOTE_MAX_LENGTH,
    BrainstormNote,
    NoteTopic,
    VisionDocument,
)
from project_orchestrator.vision.readiness import (
    Readiness,
    check_readiness,
    current,
    join_phrases,
)
from project_orchestrator.vision.render import content_hash, render_vision

log = get_logger(__name__)


class InvalidNoteError(OrchestratorError):
    status_code = 422
    code = "invalid_note"


class VisionNotReadyError(OrchestratorError):
    """The vision cannot be written yet; `missing` says what the person still has to say."""

    status_code = 409
    code = "vision_not_ready"

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = tuple(missing)
        super().__init__(f"The vision isn't complete yet. Still needed: {join_phrases(missing)}.")


@dataclass(frozen=True)
class VisionResult:
    document: VisionDocument
    # False when the notes gave the same text as the latest version, which is returned.
    created: bool


async def record_note(
    session: AsyncSession,
    project_id: uuid.UUID,
    topic: NoteTopic | str,
    text: str,
    author_id: uuid.UUID | None,
) -> BrainstormNote:
    note_topic = _topic(topic)
    cleaned = text.strip()
    if not cleaned:
        raise InvalidNoteError("A note needs some text.")
    if len(cleaned) > NOTE_MAX_LENGTH:
        raise InvalidNoteError(
            f"That note is too long ({len(cleaned)} characters; {NOTE_MAX_LENGTH} at most)."
        )
    if await session.get(Project, project_id) is None:
        raise NotFoundError("No such project.")
    note = BrainstormNote(
        project_id=project_id, topic=note_topic, text=cleaned, author_id=author_id
    )
    session.add(note)
    await session.flush()
    log.info(
        "vision.note_recorded", project_id=str(project_id), note_id=note.id, topic=note_topic.value
    )
    return note


async def retract_feature(
    session: AsyncSession, project_id: uuid.UUID, note_id: int
) -> BrainstormNote:
    """Withdraws a feature (or any other list-topic note: a success measure, an exclusion).
    Retracting twice is the same as retracting once."""
    note = (
        await session.execute(
            select(BrainstormNote)
            .where(BrainstormNote.id == note_id, BrainstormNote.project_id == project_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if note is None:
        raise NotFoundError(f"This project has no note {note_id}.")
    if note.topic not in LIST_TOPICS:
        raise InvalidNoteError(
            f"A {note.topic.value!r} note is not withdrawn; record the corrected one instead."
        )
    if note.retracted_at is None:
        note.retracted_at = datetime.now(UTC)
        await session.flush()
        log.info("vision.note_retracted", project_id=str(project_id), note_id=note_id)
    return note


async def current_notes(session: AsyncSession, project_id: uuid.UUID) -> list[BrainstormNote]:
    """The notes in force, oldest first."""
    notes = (
        await session.execute(
            select(BrainstormNote)
            .where(BrainstormNote.project_id == project_id)
            .order_by(BrainstormNote.id)
        )
    ).scalars()
    # One rule for what is current, shared with the pure readiness and rendering code.
    return current(notes)


async def readiness(session: AsyncSession, project_id: uuid.UUID) -> Readiness:
    return check_readiness(await current_notes(session, project_id))


async def latest_vision(session: AsyncSession, project_id: uuid.UUID) -> VisionDocument | None:
    return (
        await session.execute(
            select(VisionDocument)
            .where(VisionDocument.project_id == project_id)
            .order_by(VisionDocument.version.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def generate_vision(
    session: AsyncSession,
    project: Project,
    *,
    author_id: uuid.UUID | None,
    audit: AuditLog,
    user_id: str | None,
) -> VisionResult:
    """The vision for the notes in force: a new version when the text changed, else the
    latest one. Refuses while something the vision needs has not been said."""
    # Serialises generations of one project, so two cannot both take version N+1.
    # NO KEY UPDATE, not UPDATE: it must not block rows that merely reference the
    # project (a note being recorded while the vision is generated).
    name = (
        await session.execute(
            select(Project.name).where(Project.id == project.id).with_for_update(key_share=True)
        )
    ).scalar_one_or_none()
    if name is None:
        raise NotFoundError("No such project.")

    notes = await current_notes(session, project.id)
    state = check_readiness(notes)
    if not state.ready:
        raise VisionNotReadyError(state.missing)

    markdown = render_vision(name, notes)
    digest = content_hash(markdown)
    latest = await latest_vision(session, project.id)
    if latest is not None and latest.content_hash == digest:
        return VisionResult(document=latest, created=False)

    version = 1 if latest is None else latest.version + 1
    document = VisionDocument(
        project_id=project.id,
        version=version,
        markdown=markdown,
        content_hash=digest,
        created_by_id=author_id,
    )
    session.add(document)
    await session.flush()
    after_commit(metrics.vision_documents_generated_total.inc)
    audit.record(
        AuditAction.VISION_GENERATED,
        user_id=user_id,
        project_id=project.id,
        details={"version": version, "content_hash": digest},
    )
    log.info("vision.generated", project_id=str(project.id), version=version, hash=digest)
    return VisionResult(document=document, created=True)


def _topic(topic: NoteTopic | str) -> NoteTopic:
    try:
        return NoteTopic(topic)
    except ValueError:
        known = ", ".join(t.value for t in NoteTopic)
        raise InvalidNoteError(f"Unknown topic {topic!r}; use one of: {known}.") from None
