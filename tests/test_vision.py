"""Brainstorm notes, the readiness check, and vision versions on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from project_orchestrator import metrics
from project_orchestrator.audit import AuditLog
from project_orchestrator.db.engine import Database
from project_orchestrator.errors import NotFoundError, OrchestratorError
from project_orchestrator.projects.models import Identity, Project
from project_orchestrator.vision import service
from project_orchestrator.vision.models import BrainstormNote, NoteTopic, VisionDocument
from project_orchestrator.vision.readiness import check_readiness, current
from project_orchestrator.vision.render import content_hash, render_vision, summarize_vision

T = NoteTopic

EVERY_MISSING = (
    "what it is",
    "who it is for",
    "the problem it solves",
    "at least 3 features",
    "how someone would use it from start to finish",
    "how you will know it is working",
)

READY: tuple[tuple[NoteTopic, str], ...] = (
    (T.WHAT, "A meal planner for busy parents"),
    (T.WHO, "Parents who cook for small children"),
    (T.PROBLEM, "Deciding what to cook every evening is tiring."),
    (T.FEATURE, "Weekly meal plans"),
    (T.FEATURE, "Shopping lists"),
    (T.FEATURE, "Recipe sharing"),
    (T.JOURNEY, "Sign up, pick meals for the week, shop from the list."),
    (T.SUCCESS, "100 families plan a week within a month"),
)


@dataclass
class Note:
    id: int
    topic: NoteTopic
    text: str
    retracted_at: datetime | None = None


def notes(*items: tuple[NoteTopic, str]) -> list[Note]:
    return [Note(id=i, topic=topic, text=text) for i, (topic, text) in enumerate(items, 1)]


def generated_total() -> float:
    value = metrics.registry.get_sample_value("vision_documents_generated_total")
    return value or 0.0


def audit_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def new_project(db: Database, name: str = "Meal Planner") -> Project:
    async with db.session_scope() as session:
        owner = Identity(github_login=f"owner-{uuid.uuid4().hex[:8]}")
        session.add(owner)
        await session.flush()
        project = Project(name=name, owner_id=owner.id)
        session.add(project)
    return project


async def add_notes(db: Database, project: Project, *items: tuple[NoteTopic, str]) -> list[int]:
    async with db.session_scope() as session:
        recorded = [
            await service.record_note(session, project.id, topic, text, project.owner_id)
            for topic, text in items
        ]
    return [note.id for note in recorded]


# Readiness: pure


def test_nothing_said_yet_means_everything_is_missing_in_plain_words() -> None:
    state = check_readiness([])
    assert not state.ready
    assert state.missing == EVERY_MISSING
    assert state.have == {topic.value: 0 for topic in NoteTopic}


def test_features_are_counted_down_and_optional_topics_are_not_asked_for() -> None:
    one = check_readiness(notes(*READY[:3], (T.FEATURE, "Plans"), *READY[6:]))
    assert one.missing == ("at least 2 more features",)
    two = check_readiness(notes(*READY[:3], *READY[3:5], *READY[6:]))
    assert two.missing == ("at least 1 more feature",)
    assert two.describe_missing() == "at least 1 more feature"

    partial = check_readiness(notes((T.WHAT, "An app"), (T.SOLUTION, "Magic")))
    assert partial.missing == EVERY_MISSING[1:]
    assert partial.describe_missing() == (
        "who it is for, the problem it solves, at least 3 features, how someone would use it "
        "from start to finish and how you will know it is working"
    )

    ready = check_readiness(notes(*READY))
    assert ready.ready
    assert ready.missing == ()
    assert ready.have["feature"] == 3
    assert ready.have["solution"] == 0
    assert ready.have["out_of_scope"] == 0


def test_the_latest_single_note_wins_and_retracted_notes_do_not_count() -> None:
    items = notes(*READY, (T.WHO, "Grandparents"))
    items[4].retracted_at = datetime.now(UTC)  # one of the three features
    in_force = current(items)
    assert [n.text for n in in_force if n.topic is T.WHO] == ["Grandparents"]
    assert [n.text for n in in_force if n.topic is T.FEATURE] == [
        "Weekly meal plans",
        "Recipe sharing",
    ]
    state = check_readiness(items)
    assert state.missing == ("at least 1 more feature",)
    assert state.have["who"] == 1


# Rendering: pure


def test_sections_come_in_order_and_the_text_is_deterministic() -> None:
    items = notes(*READY, (T.SUCCESS, "Families come back weekly"))
    markdown = render_vision("Meal Planner", items)
    headings = [line for line in markdown.splitlines() if line.startswith("#")]
    assert headings == [
        "# Meal Planner: Vision",
        "## What It Is",
        "## Who It's For",
        "## Problem",
        "## Solution",
        "## Key Features",
        "## User Journey",
        "## Success Metrics",
        "## Out of Scope",
    ]
    assert "- Weekly meal plans\n- Shopping lists\n- Recipe sharing\n" in markdown
    assert "- 100 families plan a week within a month\n- Families come back weekly\n" in markdown
    assert markdown.endswith("## Out of Scope\n\nNothing ruled out yet.\n")
    # No solution was given: one is built from what it is and the features.
    assert (
        "## Solution\n\nA meal planner for busy parents. It solves the problem with these "
        "features: Weekly meal plans, Shopping lists and Recipe sharing.\n"
    ) in markdown

    shuffled = list(items)
    random.Random(7).shuffle(shuffled)
    again = render_vision("Meal Planner", shuffled)
    assert again.encode() == markdown.encode()
    assert content_hash(again) == hashlib.sha256(markdown.encode()).hexdigest()
    assert content_hash(render_vision("Meal Planner!", items)) != content_hash(markdown)


def test_given_solution_and_exclusions_are_used() -> None:
    markdown = render_vision(
        "Meal Planner",
        notes(*READY, (T.SOLUTION, "Plans the week for you."), (T.OUT_OF_SCOPE, "Delivery")),
    )
    assert "## Solution\n\nPlans the week for you.\n" in markdown
    assert markdown.endswith("## Out of Scope\n\n- Delivery\n")


def test_user_text_stays_plain_paragraphs() -> None:
    markdown = render_vision(
        "  Meal\n Planner ",
        notes(
            (T.WHAT, "  A planner  \r\n\r\n\r\n\r\nfor parents\t\n"),
            (T.WHO, "## Out of Scope\nParents\n---"),
            (T.FEATURE, "# Plans\n  weekly"),
        ),
    )
    assert markdown.startswith(
        "# Meal Planner: Vision\n\n## What It Is\n\nA planner\n\nfor parents\n"
    )
    # Nothing the person typed can open a section of its own.
    assert markdown.splitlines().count("## Out of Scope") == 1
    assert "\\## Out of Scope\nParents\n\\---\n" in markdown
    assert "- \\# Plans weekly\n" in markdown
    assert "\n\n\n" not in markdown
    assert "## Problem\n\nNot decided yet.\n" in markdown


def test_summary_has_what_who_and_features_within_the_limit() -> None:
    markdown = render_vision("Meal Planner", notes(*READY, (T.FEATURE, "# Pantry tracking")))
    summary = summarize_vision(markdown)
    assert summary == (
        "What it is: A meal planner for busy parents. "
        "Who it's for: Parents who cook for small children. "
        "Key features: Weekly meal plans; Shopping lists; Recipe sharing; # Pantry tracking."
    )
    short = summarize_vision(markdown, limit=60)
    assert len(short) <= 60
    assert short.endswith("…")
    assert short.startswith("What it is: A meal planner")
    with pytest.raises(ValueError, match="limit"):
        summarize_vision(markdown, limit=0)


# Notes in the database


async def test_notes_are_superseded_and_features_retracted(db: Database) -> None:
    project = await new_project(db)
    other = await new_project(db, "Other")
    ids = await add_notes(
        db, project, (T.WHO, "Parents"), (T.FEATURE, "Plans"), (T.FEATURE, "Lists")
    )
    await add_notes(db, project, (T.WHO, "  Grandparents \n"))
    (foreign,) = await add_notes(db, other, (T.FEATURE, "Not yours"))

    async with db.session_scope() as session:
        retracted = await service.retract_feature(session, project.id, ids[1])
        assert retracted.retracted_at is not None
        first_stamp = retracted.retracted_at
        # Retracting again changes nothing.
        again = await service.retract_feature(session, project.id, ids[1])
        assert again.retracted_at == first_stamp

        with pytest.raises(OrchestratorError, match="record the corrected one") as refused:
            await service.retract_feature(session, project.id, ids[0])
        assert refused.value.status_code == 422
        with pytest.raises(NotFoundError):
            await service.retract_feature(session, project.id, foreign)

    async with db.session_scope() as session:
        in_force = await service.current_notes(session, project.id)
        assert [(n.topic, n.text) for n in in_force] == [
            (T.FEATURE, "Lists"),
            (T.WHO, "Grandparents"),
        ]
        state = await service.readiness(session, project.id)
        assert state.have["feature"] == 1
        assert "at least 2 more features" in state.missing
        # Superseded and retracted notes are kept, only no longer in force.
        stored = await session.scalar(
            select(func.count()).where(BrainstormNote.project_id == project.id)
        )
        assert stored == 4


async def test_blank_oversized_and_unknown_notes_are_refused(db: Database) -> None:
    project = await new_project(db)
    async with db.session_scope() as session:
        for topic, text, message in (
            (T.WHAT, " \n\t ", "needs some text"),
            (T.WHAT, "x" * 2001, "too long"),
            ("colour", "blue", "Unknown topic"),
        ):
            with pytest.raises(OrchestratorError, match=message) as refused:
                await service.record_note(session, project.id, topic, text, None)
            assert refused.value.status_code == 422
        assert (await service.record_note(session, project.id, "what", "x" * 2000, None)).id
        with pytest.raises(NotFoundError):
            await service.record_note(session, uuid.uuid4(), T.WHAT, "An app", None)

    # The database refuses them too, whoever writes the row.
    for note, constraint in (
        (BrainstormNote(project_id=project.id, topic=T.WHO, text="\n "), "text_not_blank"),
        (
            BrainstormNote(
                project_id=project.id, topic=T.WHO, text="x", retracted_at=datetime.now(UTC)
            ),
            "retract_only_list_topics",
        ),
    ):
        async with db.sessionmaker() as session:
            session.add(note)
            with pytest.raises(IntegrityError, match=constraint):
                await session.flush()


# Generation


async def test_generation_versions_follow_the_text(db: Database, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    project = await new_project(db)
    await add_notes(db, project, *READY)
    before = generated_total()

    async with db.session_scope() as session:
        first = await service.generate_vision(
            session, project, author_id=project.owner_id, audit=audit, user_id="telegram:42"
        )
    assert first.created
    assert first.document.version == 1
    assert first.document.markdown == render_vision("Meal Planner", notes(*READY))
    assert first.document.content_hash == content_hash(first.document.markdown)
    assert first.document.created_by_id == project.owner_id
    assert generated_total() == before + 1
    (line,) = audit_lines(tmp_path / "audit.log")
    assert line["action"] == "vision_generated"
    assert line["result"] == "success"
    assert line["user_id"] == "telegram:42"
    assert line["project_id"] == str(project.id)
    assert line["details"] == {"version": 1, "content_hash": first.document.content_hash}

    # A correction that says the same thing again leaves the text as it was.
    await add_notes(db, project, (T.WHAT, " A meal planner for busy parents "))
    async with db.session_scope() as session:
        same = await service.generate_vision(
            session, project, author_id=None, audit=audit, user_id=None
        )
    assert not same.created
    assert same.document.id == first.document.id
    assert generated_total() == before + 1
    assert len(audit_lines(tmp_path / "audit.log")) == 1

    await add_notes(db, project, (T.OUT_OF_SCOPE, "Food delivery"))
    async with db.session_scope() as session:
        second = await service.generate_vision(
            session, project, author_id=None, audit=audit, user_id=None
        )
        assert (await service.latest_vision(session, project.id)) is second.document
    assert second.created
    assert second.document.version == 2
    assert second.document.content_hash != first.document.content_hash
    assert "- Food delivery" in second.document.markdown
    assert generated_total() == before + 2
    assert audit_lines(tmp_path / "audit.log")[-1]["details"] == {
        "version": 2,
        "content_hash": second.document.content_hash,
    }


async def test_generation_is_refused_until_the_vision_is_complete(
    db: Database, tmp_path: Path
) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    project = await new_project(db)
    await add_notes(db, project, *READY[:4])
    before = generated_total()

    async with db.session_scope() as session:
        assert await service.latest_vision(session, project.id) is None
        with pytest.raises(service.VisionNotReadyError) as refused:
            await service.generate_vision(
                session, project, author_id=None, audit=audit, user_id=None
            )
    assert refused.value.status_code == 409
    assert refused.value.missing == (
        "at least 2 more features",
        "how someone would use it from start to finish",
        "how you will know it is working",
    )
    assert str(refused.value) == (
        "The vision isn't complete yet. Still needed: at least 2 more features, how someone "
        "would use it from start to finish and how you will know it is working."
    )
    assert generated_total() == before
    assert audit_lines(tmp_path / "audit.log") == []
    async with db.session_scope() as session:
        assert await service.latest_vision(session, project.id) is None


async def test_concurrent_generations_never_collide(db: Database, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    project = await new_project(db)
    await add_notes(db, project, *READY)

    async def generate(extra: str | None) -> service.VisionResult:
        async with db.session_scope() as session:
            if extra is not None:
                await service.record_note(session, project.id, T.OUT_OF_SCOPE, extra, None)
            return await service.generate_vision(
                session, project, author_id=None, audit=audit, user_id=None
            )

    # Same notes: one creates version 1, the others return it.
    results = await asyncio.gather(*(generate(None) for _ in range(4)))
    assert sorted(r.created for r in results) == [False, False, False, True]
    assert {r.document.id for r in results} == {results[0].document.id}
    assert {r.document.version for r in results} == {1}

    # Each adds its own note first: every one takes a version of its own.
    results = await asyncio.gather(*(generate(f"Exclusion {i}") for i in range(3)))
    assert all(r.created for r in results)
    assert sorted(r.document.version for r in results) == [2, 3, 4]

    async with db.session_scope() as session:
        versions = (
            await session.scalars(
                select(VisionDocument.version)
                .where(VisionDocument.project_id == project.id)
                .order_by(VisionDocument.version)
            )
        ).all()
    assert versions == [1, 2, 3, 4]
    assert len(audit_lines(tmp_path / "audit.log")) == 4
