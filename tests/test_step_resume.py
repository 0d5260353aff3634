"""A SCAR step survives its worker: a crash mid-command, a job run twice, SCAR away.

The crash is a real one: the first worker is an `orchestrator worker` process killed with
SIGKILL while SCAR works on the plan. (Cancelling an in-process `run_worker` task is not a
crash: its queue manager task lives on and finishes the job.) The job stays 'picked' with
a heartbeat that no longer moves; a second worker with a short heartbeat timeout takes it
over and must read SCAR's answer instead of asking again.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import select, text

from project_orchestrator.audit import AuditLog
from project_orchestrator.composition.worker import build_workload
from project_orchestrator.db.engine import Database
from project_orchestrator.db.jobs import StepJob
from project_orchestrator.events.processor import MAX_ATTEMPTS
from project_orchestrator.metrics import registry
from project_orchestrator.scar.models import ScarCommand, ScarCommandStatus
from project_orchestrator.workflow.models import (
    ApprovalGate,
    Phase,
    PhaseStatus,
    RunStatus,
    WorkflowPhase,
)
from tests.support.cli import COMMAND, clean_environment
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_github import FakeGitHub
from tests.support.fake_http import FakeServer, unused_tcp_url
from tests.support.fake_scar import FakeScar
from tests.support.github_payloads import issue_comment, signed
from tests.support.journey import (
    BRAINSTORM,
    OWNER,
    REPO,
    Journey,
    journey_settings,
    script_brainstorm,
)
from tests.support.webhooks import SECRET, URL, webhook_client
from tests.support.worker import FAST_RETRIES, unfinished_jobs, work_until_idle

# Takes over a dead worker's job quickly: its heartbeat is stale after a second.
TAKE_OVER = replace(FAST_RETRIES, heartbeat_timeout=timedelta(seconds=1))
PLAN_DELAY = 1.5


@dataclass
class Scar:
    fake: FakeScar
    url: str


@pytest.fixture
def scar() -> Iterator[Scar]:
    fake = FakeScar()
    with FakeServer(fake.app) as server:
        yield Scar(fake, server.url)


@pytest.fixture
async def journey(
    tmp_path: Path,
    database_url: str,
    db: Database,
    github: FakeGitHub,
    anthropic: tuple[FakeAnthropic, str],
    scar: Scar,
) -> Journey:
    settings = journey_settings(tmp_path, database_url, github, anthropic[1], scar.url)
    return Journey(tmp_path, database_url, db, settings, github, anthropic[0], scar.fake)


# --- helpers ------------------------------------------------------------------------------


async def brainstorm_to_vision_gate(journey: Journey) -> None:
    script_brainstorm(journey.anthropic)
    for message in BRAINSTORM:
        await journey.comment(message)
    assert (await journey.run()).status is RunStatus.AWAITING_APPROVAL


async def deliver_only(journey: Journey, body: str) -> None:
    """The person's comment through the webhook route, with no worker running."""
    comment_id = journey.github.add_comment(REPO, 7, body, user=OWNER)
    payload = issue_comment(body, login=OWNER, association="OWNER", comment_id=comment_id)
    raw, headers = signed(SECRET, "issue_comment", payload)
    async with webhook_client(journey.tmp_path, journey.database_url) as client:
        response = await client.post(URL, content=raw, headers=headers)
    assert response.status_code == 202, response.text


def start_worker_process(journey: Journey, log_path: Path) -> subprocess.Popen[bytes]:
    """`orchestrator worker`, configured like the journey's in-process workers."""
    settings = journey.settings
    assert settings.database_url is not None
    env = {
        "DATABASE_URL": settings.database_url,
        "GITHUB_ACCESS_TOKEN": "ghp-test-token-123456",
        "GITHUB_API_URL": settings.github_api_url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "ANTHROPIC_API_KEY": "sk-ant-test-key-000000",
        "ANTHROPIC_BASE_URL": settings.anthropic_base_url,
        "SCAR_BASE_URL": settings.scar_base_url,
        "SCAR_TIMEOUT_SECONDS": "10",
        "SCAR_POLL_INTERVAL_SECONDS": "0.02",
        "AUDIT_LOG_PATH": str(settings.audit_log_path),
        "DATA_DIR": str(settings.data_dir),
        "WORKER_HEARTBEAT_TIMEOUT_SECONDS": "1",
        "WORKER_CONCURRENCY": "4",
        "TELEGRAM_MODE": "off",
    }
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [*COMMAND, "worker"],
            env=clean_environment(**env),
            cwd=journey.tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def commands(journey: Journey) -> list[ScarCommand]:
    async with journey.db.session_scope() as session:
        return list(
            (await session.execute(select(ScarCommand).order_by(ScarCommand.created_at)))
            .scalars()
            .all()
        )


def sent(journey: Journey, command: str) -> list[str]:
    return [c for c in journey.scar_commands() if c.split()[1] == command]


def plan_questions(journey: Journey) -> list[str]:
    return [c for c in journey.bot_comments() if "SCAR has a plan" in c]


async def picked_steps(db: Database) -> set[str]:
    """Phase ids of the step jobs a worker holds (or held, if it died)."""
    async with db.engine.connect() as conn:
        payloads = (
            await conn.execute(
                text(
                    "SELECT payload FROM pgqueuer "
                    "WHERE entrypoint = 'run_step' AND status = 'picked'"
                )
            )
        ).scalars()
        return {StepJob.decode(p).phase_id for p in payloads}


async def snapshot(journey: Journey) -> dict[str, Any]:
    """Everything a step job could change, to compare before and after."""
    async with journey.db.session_scope() as session:
        phase_rows = (
            await session.execute(
                select(WorkflowPhase.id, WorkflowPhase.status, WorkflowPhase.output).order_by(
                    WorkflowPhase.created_at
                )
            )
        ).all()
        gate_rows = (
            await session.execute(
                select(ApprovalGate.id, ApprovalGate.status).order_by(ApprovalGate.created_at)
            )
        ).all()
    run = await journey.run()
    return {
        "run": (run.status, run.current_phase, run.branch, run.pr_number),
        "phases": [tuple(r) for r in phase_rows],
        "gates": [tuple(r) for r in gate_rows],
        "commands": [(c.id, c.status, c.output) for c in await commands(journey)],
        "scar": journey.scar.invocations,
        "comments": [(c["id"], c["body"]) for c in journey.github.comments(REPO, 7)],
        "created": journey.github.created_comment_count(),
        "audit": journey.audit_actions(),
        "jobs": await unfinished_jobs(journey.db),
    }


def step_jobs(outcome: str) -> float:
    return registry.get_sample_value("jobs_total", {"job": "run_step", "outcome": outcome}) or 0.0


# --- a worker dies while SCAR plans -------------------------------------------------------


async def test_a_worker_killed_mid_command_is_resumed_without_asking_scar_again(
    journey: Journey,
) -> None:
    journey.scar.script("plan-feature-github", delay=PLAN_DELAY)
    await brainstorm_to_vision_gate(journey)
    await deliver_only(journey, "@orchestrator /approve")  # the vision

    first = start_worker_process(journey, journey.tmp_path / "first-worker.log")
    try:
        async with asyncio.timeout(30):
            while not sent(journey, "plan-feature-github"):
                assert first.poll() is None, (journey.tmp_path / "first-worker.log").read_text()
                await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
    at_crash = journey.scar.invocations

    # The crash left the work half done: SCAR has the command, we have no answer.
    (plan,) = await journey.attempts(Phase.PLAN)
    assert plan.status is PhaseStatus.RUNNING
    # (The prime job may be held too: its "done" had not reached the database yet.)
    assert str(plan.id) in await picked_steps(journey.db)
    assert plan_questions(journey) == []

    await work_until_idle(journey.settings, journey.db, TAKE_OVER, limit_seconds=30)
    # The job was taken over and SCAR's answer read: nothing was sent to SCAR again.
    assert journey.scar.invocations == at_crash
    assert len(sent(journey, "plan-feature-github")) == 1
    assert len(sent(journey, "prime")) == 1

    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.PLAN
    questions = plan_questions(journey)
    assert len(questions) == 1
    assert ".agents/plans/" in questions[0]
    (plan,) = await journey.attempts(Phase.PLAN)
    assert plan.status is PhaseStatus.SUCCEEDED
    _, plan_command = await commands(journey)
    assert plan_command.command == "plan-feature-github"
    assert plan_command.status is ScarCommandStatus.SUCCEEDED
    assert plan_command.output is not None
    assert plan_command.output.startswith("## 📋 Implementation Plan Created")
    assert journey.audit_actions().count("scar_command_executed") == 2


# --- a step job that runs again -----------------------------------------------------------


async def test_a_step_job_run_again_for_a_finished_phase_changes_nothing(
    journey: Journey,
) -> None:
    await brainstorm_to_vision_gate(journey)
    await journey.comment("@orchestrator /approve")  # the vision: prime, plan, plan gate
    assert (await journey.run()).current_phase is Phase.PLAN
    (prime,) = await journey.attempts(Phase.PRIME)
    (plan,) = await journey.attempts(Phase.PLAN)
    before = await snapshot(journey)

    audit = AuditLog(journey.settings.audit_log_path)
    steps = build_workload(journey.settings, journey.db, audit).steps
    await steps.run(prime.id, last_attempt=False)
    await steps.run(plan.id, last_attempt=True)
    await asyncio.gather(*(steps.run(plan.id, last_attempt=False) for _ in range(3)))

    assert await snapshot(journey) == before
    assert len(plan_questions(journey)) == 1


async def test_a_stray_step_job_for_a_phase_behind_its_gate_does_not_run_it(
    journey: Journey,
) -> None:
    await brainstorm_to_vision_gate(journey)
    await journey.comment("@orchestrator /approve")  # the vision
    await journey.comment("@orchestrator /approve")  # the plan: execute, validate, merge gate
    run = await journey.run()
    assert (run.status, run.current_phase) == (RunStatus.AWAITING_APPROVAL, Phase.MERGE)
    (merge,) = await journey.attempts(Phase.MERGE)
    assert merge.status is PhaseStatus.PENDING
    before = await snapshot(journey)

    audit = AuditLog(journey.settings.audit_log_path)
    steps = build_workload(journey.settings, journey.db, audit).steps
    await steps.run(merge.id, last_attempt=True)

    assert await snapshot(journey) == before
    assert sent(journey, "merge-pr") == []


# --- SCAR away, then back -----------------------------------------------------------------

Outage = Literal["refused", "503"]


@pytest.mark.parametrize("outage", ["refused", "503"])
async def test_scar_away_fails_the_step_after_the_retries_and_approve_tries_again(
    journey: Journey, scar: Scar, outage: Outage
) -> None:
    await brainstorm_to_vision_gate(journey)
    if outage == "refused":
        journey.settings = journey.settings.model_copy(update={"scar_base_url": unused_tcp_url()})
    else:
        scar.fake.fail_next(10**6, 503)
    retried, done = step_jobs("retried"), step_jobs("done")

    await journey.comment("@orchestrator /approve")  # the vision; prime cannot reach SCAR

    # The queue ran the step MAX_ATTEMPTS times; the last one failed the phase.
    assert step_jobs("retried") - retried == MAX_ATTEMPTS - 1
    assert step_jobs("done") - done == 1
    assert journey.scar.invocations == []
    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.PRIME
    (prime,) = await journey.attempts(Phase.PRIME)
    assert prime.status is PhaseStatus.FAILED
    questions = [c for c in journey.bot_comments() if "Something went wrong" in c]
    assert len(questions) == 1
    assert "SCAR could not be reached while reading the project" in questions[0]
    assert "Traceback" not in questions[0]
    (command,) = await commands(journey)
    assert command.status is ScarCommandStatus.FAILED
    assert journey.audit_actions().count("scar_command_executed") == 1

    # SCAR is back; the person says "try again".
    journey.settings = journey.settings.model_copy(update={"scar_base_url": scar.url})
    scar.fake.fail_next(0)
    await journey.comment("@orchestrator /approve")

    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.PLAN
    assert [c.split()[1] for c in journey.scar_commands()] == ["prime", "plan-feature-github"]
    failed, retry = await journey.attempts(Phase.PRIME)
    assert (failed.status, retry.status) == (PhaseStatus.FAILED, PhaseStatus.SUCCEEDED)
    assert retry.attempt == 2
    assert len(plan_questions(journey)) == 1
    assert journey.audit_actions().count("approval_granted") == 2


async def test_an_unreachable_scar_is_not_named_by_its_address_on_the_issue(
    journey: Journey,
) -> None:
    await brainstorm_to_vision_gate(journey)
    hidden = unused_tcp_url()
    journey.settings = journey.settings.model_copy(update={"scar_base_url": hidden})
    await journey.comment("@orchestrator /approve")
    (question,) = [c for c in journey.bot_comments() if "Something went wrong" in c]
    assert "SCAR could not be reached" in question
    assert hidden not in question
    assert "ConnectError" not in question
