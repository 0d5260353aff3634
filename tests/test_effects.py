"""Audit lines and metric counts follow the transaction they report: written after its
commit, dropped with its rollback (a real PostgreSQL unit of work)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from project_orchestrator import effects
from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.db.engine import Database


class Boom(Exception):
    pass


def actions(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["action"] for line in path.read_text().splitlines()]


async def test_an_audit_line_waits_for_the_commit(tmp_path: Path, db: Database) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    async with db.session_scope() as session:
        await session.execute(text("SELECT 1"))
        audit.record(AuditAction.PROJECT_CREATED, project_id="p1")
        assert actions(audit.path) == []  # not yet: the transaction may still roll back
    assert actions(audit.path) == ["project_created"]


async def test_a_rollback_drops_what_the_unit_of_work_reported(
    tmp_path: Path, db: Database
) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    counted: list[str] = []

    async def unit_that_fails() -> None:
        async with db.session_scope():
            audit.record(AuditAction.PROJECT_CREATED)
            effects.after_commit(lambda: counted.append("conversation"))
            raise Boom

    with pytest.raises(Boom):
        await unit_that_fails()
    assert actions(audit.path) == []
    assert counted == []


async def test_a_refusal_is_written_at_once_whatever_happens_next(
    tmp_path: Path, db: Database
) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    seen: list[list[str]] = []

    async def refused_request() -> None:
        async with db.session_scope():
            audit.record(AuditAction.UNAUTHORIZED_ACCESS, result=AuditResult.DENIED)
            seen.append(actions(audit.path))
            raise Boom("the request then fails")

    with pytest.raises(Boom):
        await refused_request()
    assert seen == [["unauthorized_access"]]
    assert actions(audit.path) == ["unauthorized_access"]


async def test_a_nested_unit_of_work_reports_on_its_own_commit(
    tmp_path: Path, db: Database
) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    seen: list[list[str]] = []

    async def outer_fails_after_inner_committed() -> None:
        async with db.session_scope():
            audit.record(AuditAction.PROJECT_CREATED)
            async with db.session_scope():
                audit.record(AuditAction.IDENTITY_LINKED)
            seen.append(actions(audit.path))
            raise Boom

    with pytest.raises(Boom):
        await outer_fails_after_inner_committed()
    assert seen == [["identity_linked"]]  # the inner one committed and reported at once
    assert actions(audit.path) == ["identity_linked"]


def test_outside_a_unit_of_work_effects_happen_at_once(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    audit.record(AuditAction.WEBHOOK_SIGNATURE_FAILED, result=AuditResult.DENIED)
    audit.record(AuditAction.EVENT_REPLAYED)
    assert actions(audit.path) == ["webhook_signature_failed", "event_replayed"]


def test_one_failing_effect_does_not_stop_the_others() -> None:
    done: list[int] = []

    def broken() -> None:
        raise OSError("disk full")

    effects.run([broken, lambda: done.append(1)])
    assert done == [1]
