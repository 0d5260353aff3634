"""/api/v1/projects behind the API key: read projects, decide gates as the chat would."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.app import create_app
from project_orchestrator.audit import AuditLog
from project_orchestrator.composition.outbound import build_outbound
from project_orchestrator.db.engine import Database
from project_orchestrator.db.types import Channel
from project_orchestrator.projects.models import (
    AiUsage,
    Identity,
    MemberRole,
    Project,
    ProjectMember,
)
from project_orchestrator.projects.service import Actor, create_project, github_identity
from project_orchestrator.scar.models import ScarCommand, ScarCommandStatus, ScarTransport
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.workflow.models import (
    ApprovalGate,
    GateStatus,
    Phase,
    PhaseStatus,
    RunStatus,
    WorkflowPhase,
    WorkflowRun,
)
from project_orchestrator.workflow.service import Workflow
from tests.conftest import make_settings
from tests.support.fake_github import FakeGitHub
from tests.support.fake_telegram import FakeTelegram

KEY = "api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
REPO = "acme/widgets"
VISION = "# Widgets: Vision\n\nA place to keep widgets."


@asynccontextmanager
async def api_client(
    tmp_path: Path, database_url: str, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    values: dict[str, Any] = {"database_url": database_url, "api_key": KEY}
    values.update(overrides)
    app = create_app(make_settings(tmp_path, **values))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def deliver_outbox(tmp_path: Path, database_url: str, db: Database, **overrides: Any) -> None:
    """What a worker does next: deliver what the request wrote to the outbox."""
    settings = make_settings(tmp_path, database_url=database_url, **overrides)
    outbound = build_outbound(settings, db)
    async with db.engine.connect() as conn:
        conversations = (
            await conn.execute(text("SELECT DISTINCT conversation FROM outbound_messages"))
        ).scalars()
    for conversation in list(conversations):
        await outbound.delivery.deliver(conversation)
    await outbound.aclose()


def github_settings(github: FakeGitHub) -> dict[str, Any]:
    base_url: str = github.base_url  # set by the fixture
    return {"github_access_token": "ghp-test-token-123456", "github_api_url": base_url}


@dataclass
class World:
    """A project built through the services, as chat turns would build it."""

    db: Database
    workflow: Workflow
    project_id: uuid.UUID
    run_id: uuid.UUID
    gate_id: uuid.UUID

    @classmethod
    async def build(
        cls,
        db: Database,
        tmp_path: Path,
        *,
        name: str = "Widgets",
        repo: str | None = REPO,
        telegram_chat_id: int | None = None,
    ) -> World:
        workflow = Workflow(AuditLog(tmp_path / "audit.log"))
        async with db.session_scope() as session:
            owner = Actor(await github_identity(session, "ada"), Channel.GITHUB)
            project = await create_project(
                session,
                workflow.audit,
                name=name,
                owner=owner,
                github_repo=repo,
                github_issue_number=7 if repo else None,
                telegram_chat_id=telegram_chat_id,
            )
            run = await workflow.start_run(session, project, owner, "a widget shelf")
        world = cls(db, workflow, project.id, run.id, uuid.uuid4())
        world.gate_id = (await world.new_vision(VISION)).id
        return world

    async def owner(self, session: AsyncSession) -> Actor:
        return Actor(await github_identity(session, "ada"), Channel.GITHUB)

    async def project(self, session: AsyncSession) -> Project:
        found = await session.get(Project, self.project_id)
        assert found is not None
        return found

    async def add_vision(self, session: AsyncSession, markdown: str) -> VisionDocument:
        count = len(
            (
                await session.execute(
                    select(VisionDocument.id).where(VisionDocument.project_id == self.project_id)
                )
            ).all()
        )
        document = VisionDocument(
            project_id=self.project_id,
            version=count + 1,
            markdown=markdown,
            content_hash=hashlib.sha256(markdown.encode()).hexdigest(),
        )
        session.add(document)
        await session.flush()
        return document

    async def new_vision(self, markdown: str) -> ApprovalGate:
        """A new vision version and the gate asking for it (voiding the previous one)."""
        async with self.db.session_scope() as session:
            document = await self.add_vision(session, markdown)
            return await self.workflow.open_vision_gate(
                session, await self.project(session), await self.owner(session), document
            )

    async def add_approver(self, login: str) -> None:
        async with self.db.session_scope() as session:
            identity = await github_identity(session, login)
            session.add(
                ProjectMember(
                    project_id=self.project_id, identity_id=identity.id, role=MemberRole.APPROVER
                )
            )

    async def gate(self, gate_id: uuid.UUID | None = None) -> ApprovalGate:
        async with self.db.session_scope() as session:
            found = await session.get(ApprovalGate, gate_id or self.gate_id)
            assert found is not None
            return found

    async def run(self) -> WorkflowRun:
        async with self.db.session_scope() as session:
            found = await session.get(WorkflowRun, self.run_id)
            assert found is not None
            return found

    async def phases(self) -> list[WorkflowPhase]:
        async with self.db.session_scope() as session:
            rows = await session.execute(
                select(WorkflowPhase)
                .where(WorkflowPhase.run_id == self.run_id)
                .order_by(WorkflowPhase.created_at)
            )
            return list(rows.scalars())

    def decide_url(self, verb: str, gate_id: uuid.UUID | None = None) -> str:
        return f"/api/v1/projects/{self.project_id}/gates/{gate_id or self.gate_id}/{verb}"


async def step_jobs(db: Database) -> int:
    async with db.engine.connect() as conn:
        query = text("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'run_step'")
        return int((await conn.execute(query)).scalar_one())


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- authentication -----------------------------------------------------------------


async def test_every_route_needs_the_key(tmp_path: Path, database_url: str, db: Database) -> None:
    project, gate = uuid.uuid4(), uuid.uuid4()
    routes = [
        ("GET", "/api/v1/projects", None),
        ("GET", f"/api/v1/projects/{project}", None),
        ("POST", f"/api/v1/projects/{project}/gates/{gate}/approve", {"decided_by": "ada"}),
        (
            "POST",
            f"/api/v1/projects/{project}/gates/{gate}/reject",
            {"decided_by": "ada", "feedback": "no"},
        ),
    ]
    async with api_client(tmp_path, database_url) as client:
        for method, url, body in routes:
            missing = await client.request(method, url, json=body)
            wrong = await client.request(
                method, url, json=body, headers={"Authorization": "Bearer nope"}
            )
            assert (missing.status_code, wrong.status_code) == (401, 401), url
            assert missing.json()["error"] == "unauthorized"
            assert KEY not in wrong.text
    assert [a["action"] for a in audit_lines(tmp_path)] == ["unauthorized_access"] * 8


# --- reading ------------------------------------------------------------------------


async def test_list_projects_with_their_active_run(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    world = await World.build(db, tmp_path)
    other = await World.build(db, tmp_path, name="Gadgets", repo="acme/gadgets")
    async with api_client(tmp_path, database_url) as client:
        listed = await client.get("/api/v1/projects", headers=AUTH)
        assert listed.status_code == 200
        newest, oldest = listed.json()
        page = await client.get("/api/v1/projects?limit=1&offset=1", headers=AUTH)
        too_many = await client.get("/api/v1/projects?limit=201", headers=AUTH)
        too_few = await client.get("/api/v1/projects?limit=0", headers=AUTH)
    assert (too_many.status_code, too_few.status_code) == (422, 422)
    assert [p["id"] for p in page.json()] == [oldest["id"]]
    assert {newest["id"], oldest["id"]} == {str(world.project_id), str(other.project_id)}
    widgets = next(p for p in (newest, oldest) if p["id"] == str(world.project_id))
    assert widgets["name"] == "Widgets"
    assert widgets["github_repo"] == REPO
    assert widgets["github_issue_number"] == 7
    assert widgets["telegram_chat_id"] is None
    assert widgets["status"] == "active"
    assert widgets["owner"]["github_login"] == "ada"
    assert widgets["owner"]["telegram_user_id"] is None
    assert widgets["ai_tokens_used"] == 0
    assert widgets["created_at"]
    assert widgets["active_run"] == {
        "id": str(world.run_id),
        "number": 1,
        "status": "awaiting_approval",
        "current_phase": "vision",
    }


async def test_get_project_with_runs_gates_and_visions(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    world = await World.build(db, tmp_path)
    first_gate = world.gate_id
    second_gate = (await world.new_vision(VISION + "\nSecond thoughts.")).id
    async with db.session_scope() as session:
        project, owner = await world.project(session), await world.owner(session)
        await world.workflow.decide(session, project, owner, approve=True)
    async with db.session_scope() as session:
        run = await session.get(WorkflowRun, world.run_id)
        prime = await world.workflow.latest_attempt(session, world.run_id, Phase.PRIME)
        assert run is not None
        assert prime is not None
        await world.workflow.phase_succeeded(session, run, prime, "p" * 1200)

    async with api_client(tmp_path, database_url) as client:
        response = await client.get(f"/api/v1/projects/{world.project_id}", headers=AUTH)
        unknown = await client.get(f"/api/v1/projects/{uuid.uuid4()}", headers=AUTH)
        not_uuid = await client.get("/api/v1/projects/not-a-uuid", headers=AUTH)
    assert response.status_code == 200
    detail = response.json()
    assert detail["name"] == "Widgets"
    assert detail["active_run"]["current_phase"] == "plan"
    assert [(m["role"], m["person"]["github_login"]) for m in detail["members"]] == [
        ("owner", "ada")
    ]
    [run_out] = detail["runs"]
    assert (run_out["number"], run_out["kind"], run_out["status"]) == (1, "initial", "running")
    assert run_out["feature_request"] == "a widget shelf"
    phases = [(p["phase"], p["attempt"], p["status"]) for p in run_out["phases"]]
    assert phases == [
        ("vision", 1, "succeeded"),
        ("prime", 1, "succeeded"),
        ("plan", 1, "pending"),
    ]
    prime_out = run_out["phases"][1]
    assert prime_out["output_preview"] == "p" * 500
    assert prime_out["output_length"] == 1200
    assert "output" not in prime_out
    voided, approved = run_out["gates"]
    assert (voided["id"], voided["status"], voided["decided_by"]) == (
        str(first_gate),
        "voided",
        None,
    )
    assert (approved["id"], approved["kind"], approved["status"]) == (
        str(second_gate),
        "vision",
        "approved",
    )
    assert approved["decided_by"]["github_login"] == "ada"
    assert approved["decided_via"] == "github"
    assert approved["decided_at"] is not None
    assert approved["summary_preview"] == "Vision version 2"
    second_hash = hashlib.sha256((VISION + "\nSecond thoughts.").encode()).hexdigest()
    assert approved["artifact_version"] == f"vision:{second_hash}"
    assert [(v["version"], v["content_hash"]) for v in detail["vision_documents"]] == [
        (2, second_hash),
        (1, hashlib.sha256(VISION.encode()).hexdigest()),
    ]
    assert detail["vision_documents"][1]["markdown"] == VISION
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"
    assert not_uuid.status_code == 422


async def test_a_project_shows_what_its_runs_cost_and_scar_time_per_phase(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    world = await World.build(db, tmp_path)
    async with db.session_scope() as session:
        vision = await world.workflow.latest_attempt(session, world.run_id, Phase.VISION)
        assert vision is not None
        session.add_all(
            [
                # Chatting before any build, then during this run, with two models.
                AiUsage(
                    project_id=world.project_id,
                    model="claude-sonnet-4-6",
                    input_tokens=1_000_000,
                    output_tokens=0,
                ),
                AiUsage(
                    project_id=world.project_id,
                    run_id=world.run_id,
                    model="claude-sonnet-4-6",
                    input_tokens=0,
                    output_tokens=100_000,
                ),
                AiUsage(
                    project_id=world.project_id,
                    run_id=world.run_id,
                    model="claude-haiku-4-5",
                    input_tokens=1_000_000,
                    output_tokens=0,
                ),
                ScarCommand(
                    project_id=world.project_id,
                    run_id=world.run_id,
                    phase_id=vision.id,
                    idempotency_key="k1",
                    transport=ScarTransport.HTTP,
                    command="prime",
                    args="",
                    status=ScarCommandStatus.SUCCEEDED,
                    duration_seconds=90.5,
                ),
            ]
        )
    async with api_client(
        tmp_path, database_url, ai_prices={"claude-haiku": {"input": 2, "output": 8}}
    ) as client:
        detail = (await client.get(f"/api/v1/projects/{world.project_id}", headers=AUTH)).json()
    # Sonnet: $3 per million in, $15 out; Haiku at the operator's price, $2 in.
    assert detail["ai_cost"] == {
        "tokens": 2_100_000,
        "estimated_usd": pytest.approx(3 + 1.5 + 2),
        "unpriced_models": [],
    }
    [run_out] = detail["runs"]
    assert run_out["ai_cost"]["tokens"] == 1_100_000
    assert run_out["ai_cost"]["estimated_usd"] == pytest.approx(1.5 + 2)
    assert run_out["scar_seconds"] == {"vision": 90.5}
    assert run_out["fix_attempts"] == 0


# --- deciding -----------------------------------------------------------------------


async def test_approve_queues_the_next_step_and_tells_the_person(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    world = await World.build(db, tmp_path)
    assert await step_jobs(db) == 0
    async with api_client(tmp_path, database_url, **github_settings(github)) as client:
        response = await client.post(
            world.decide_url("approve"), json={"decided_by": "ada"}, headers=AUTH
        )
    assert response.status_code == 200
    body = response.json()
    assert body["gate"]["id"] == str(world.gate_id)
    assert body["gate"]["status"] == "approved"
    assert body["gate"]["decided_via"] == "api"
    assert body["gate"]["decided_by"]["github_login"] == "ada"
    assert body["run"] == {
        "id": str(world.run_id),
        "number": 1,
        "status": "running",
        "current_phase": "prime",
    }

    gate = await world.gate()
    assert (gate.status, gate.decided_via) == (GateStatus.APPROVED, Channel.API)
    run = await world.run()
    assert (run.status, run.current_phase) == (RunStatus.RUNNING, Phase.PRIME)
    assert await step_jobs(db) == 1
    granted = [a for a in audit_lines(tmp_path) if a["action"] == "approval_granted"]
    assert len(granted) == 1
    assert granted[0]["user_id"] == "api"
    assert granted[0]["project_id"] == str(world.project_id)
    assert granted[0]["details"]["via"] == "api"
    # Announced on the project's issue, as a chat decision would be: written with the
    # decision, posted by the worker.
    assert github.comments(REPO, 7) == []
    await deliver_outbox(tmp_path, database_url, db, **github_settings(github))
    [board] = github.comments(REPO, 7)
    assert "Build #1" in board["body"]
    assert "Prime: SCAR reads the project: up next" in board["body"]


async def test_a_decision_through_the_api_reaches_a_telegram_only_project(
    tmp_path: Path,
    database_url: str,
    db: Database,
    telegram: tuple[FakeTelegram, str],
) -> None:
    fake, url = telegram
    world = await World.build(db, tmp_path, repo=None, telegram_chat_id=4242)
    async with api_client(
        tmp_path,
        database_url,
        telegram_bot_token="123456:TEST-token",
        telegram_api_base_url=url,
        TELEGRAM_MODE="off",
    ) as client:
        response = await client.post(
            world.decide_url("approve"), json={"decided_by": "ada"}, headers=AUTH
        )
        assert response.status_code == 200
    await deliver_outbox(
        tmp_path,
        database_url,
        db,
        telegram_bot_token="123456:TEST-token",
        telegram_api_base_url=url,
    )
    said = [m["plain"] for m in fake.messages(4242)]
    assert any("Build #1" in text for text in said), said


async def test_a_failing_channel_does_not_undo_the_decision(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    world = await World.build(db, tmp_path)
    github.fail_next(20, status=502)
    async with api_client(tmp_path, database_url, **github_settings(github)) as client:
        response = await client.post(
            world.decide_url("approve"), json={"decided_by": "ada"}, headers=AUTH
        )
    assert response.status_code == 200
    assert (await world.gate()).status is GateStatus.APPROVED
    assert await step_jobs(db) == 1
    assert github.comments(REPO, 7) == []


async def test_reject_needs_feedback_and_keeps_brainstorming(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    world = await World.build(db, tmp_path)
    await world.add_approver("grace")
    url = world.decide_url("reject")
    async with api_client(tmp_path, database_url) as client:
        missing = await client.post(url, json={"decided_by": "grace"}, headers=AUTH)
        blank = await client.post(
            url, json={"decided_by": "grace", "feedback": "  \n "}, headers=AUTH
        )
        bad_login = await client.post(
            url, json={"decided_by": "not a login", "feedback": "x"}, headers=AUTH
        )
        assert (missing.status_code, blank.status_code, bad_login.status_code) == (422, 422, 422)
        assert (await world.gate()).status is GateStatus.PENDING

        # An approver, not the owner: allowed too. No notifier without a GitHub token.
        response = await client.post(
            url, json={"decided_by": "Grace", "feedback": " Make it blue. "}, headers=AUTH
        )
    assert response.status_code == 200
    body = response.json()
    assert body["gate"]["status"] == "rejected"
    assert body["gate"]["feedback"] == "Make it blue."
    assert body["gate"]["decided_by"]["github_login"] == "grace"
    assert body["run"]["status"] == "running"
    assert body["run"]["current_phase"] == "vision"

    run = await world.run()
    assert (run.status, run.current_phase) == (RunStatus.RUNNING, Phase.VISION)
    [vision] = await world.phases()
    assert (vision.status, vision.feedback) == (PhaseStatus.RUNNING, "Make it blue.")
    assert await step_jobs(db) == 0
    [rejected] = [a for a in audit_lines(tmp_path) if a["action"] == "approval_rejected"]
    assert rejected["user_id"] == "api"
    assert rejected["details"]["feedback"] == "Make it blue."


async def test_a_gate_no_longer_pending_is_a_conflict(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    world = await World.build(db, tmp_path)
    old_gate = world.gate_id
    world.gate_id = (await world.new_vision(VISION + "\nMore.")).id
    async with api_client(tmp_path, database_url) as client:
        voided = await client.post(
            world.decide_url("approve", old_gate), json={"decided_by": "ada"}, headers=AUTH
        )
        first = await client.post(
            world.decide_url("approve"), json={"decided_by": "ada"}, headers=AUTH
        )
        again = await client.post(
            world.decide_url("approve"), json={"decided_by": "ada"}, headers=AUTH
        )
        reject_after = await client.post(
            world.decide_url("reject"), json={"decided_by": "ada", "feedback": "no"}, headers=AUTH
        )
    assert voided.status_code == 409
    assert "voided" in voided.json()["message"]
    assert first.status_code == 200
    assert (again.status_code, reject_after.status_code) == (409, 409)
    assert again.json()["error"] == "conflict"
    assert "approved" in again.json()["message"]
    assert (await world.gate()).status is GateStatus.APPROVED
    assert await step_jobs(db) == 1  # queued once, by the one decision that counted


async def test_a_stale_vision_gate_is_voided_and_refused(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    world = await World.build(db, tmp_path)
    async with db.session_scope() as session:
        # A newer vision nobody has been asked about yet.
        await world.add_vision(session, VISION + "\nChanged.")
    async with api_client(tmp_path, database_url) as client:
        response = await client.post(
            world.decide_url("approve"), json={"decided_by": "ada"}, headers=AUTH
        )
    assert response.status_code == 409
    assert "vision changed" in response.json()["message"]
    # The refusal still committed the service's verdict on the stale gate.
    assert (await world.gate()).status is GateStatus.VOIDED
    assert await step_jobs(db) == 0


async def test_someone_who_may_not_decide_is_refused_and_audited(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    world = await World.build(db, tmp_path)
    async with api_client(tmp_path, database_url) as client:
        response = await client.post(
            world.decide_url("approve"), json={"decided_by": "mallory"}, headers=AUTH
        )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert (await world.gate()).status is GateStatus.PENDING
    assert await step_jobs(db) == 0
    [denied] = [a for a in audit_lines(tmp_path) if a["action"] == "unauthorized_access"]
    assert (denied["user_id"], denied["result"]) == ("api", "denied")
    assert denied["project_id"] == str(world.project_id)
    assert not [a for a in audit_lines(tmp_path) if a["action"] == "approval_granted"]
    async with db.session_scope() as session:
        # The refusal rolled back: a login the caller made up is not kept as a person.
        strangers = await session.execute(
            select(Identity.id).where(Identity.github_login == "mallory")
        )
        assert strangers.first() is None


async def test_unknown_project_or_another_projects_gate_is_not_found(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    world = await World.build(db, tmp_path)
    other = await World.build(db, tmp_path, name="Gadgets", repo="acme/gadgets")
    approve = {"decided_by": "ada"}
    async with api_client(tmp_path, database_url) as client:
        no_project = await client.post(
            f"/api/v1/projects/{uuid.uuid4()}/gates/{world.gate_id}/approve",
            json=approve,
            headers=AUTH,
        )
        foreign_gate = await client.post(
            world.decide_url("approve", other.gate_id), json=approve, headers=AUTH
        )
        no_gate = await client.post(
            world.decide_url("approve", uuid.uuid4()), json=approve, headers=AUTH
        )
        not_uuid = await client.post(
            f"/api/v1/projects/{world.project_id}/gates/nope/approve", json=approve, headers=AUTH
        )
    assert [r.status_code for r in (no_project, foreign_gate, no_gate)] == [404, 404, 404]
    assert {r.json()["error"] for r in (no_project, foreign_gate, no_gate)} == {"not_found"}
    assert not_uuid.status_code == 422
    assert (await other.gate()).status is GateStatus.PENDING
    assert (await world.gate()).status is GateStatus.PENDING
