"""Fault tests: the database restarting under a stream of webhooks, workers SIGKILLed over
and over, two APIs and two workers on one database, the AI and SCAR away and back.

What makes "exactly once in effect" countable: the GitHub handler answers a `/help`
comment from an owner with one reply whose hidden marker names the comment. So after a
stream, every distinct comment must have exactly one marked reply on the fake GitHub
(none lost, none doubled), every delivery must be stored once, and every event handled.

The scenario functions (`db_restart_scenario`, `worker_kill_scenario`, ...) take their
sizes as arguments: the tests run them small, `bench/fault_*.py` run them big.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from project_orchestrator.agent.turns import STILL_TRYING
from project_orchestrator.db.engine import Database
from project_orchestrator.scar.models import ScarCommand, ScarCommandStatus
from project_orchestrator.workflow.models import Phase, PhaseStatus, RunStatus
from tests.support.fake_github import FakeGitHub
from tests.support.faults import (
    DB_REPOS,
    KILL_REPOS,
    PATIENT_RETRIES,
    SHARED_REPOS,
    LongLivedWorker,
    add_threads,
    ai_row,
    check_exactly_once,
    db_restart_scenario,
    drain_in_process,
    eventually,
    help_stream,
    sent_to_scar,
    shared_database_scenario,
    step_jobs,
    stored_user_messages,
    worker_kill_scenario,
)
from tests.support.journey import (
    BRAINSTORM,
    Journey,
    script_brainstorm,
)
from tests.support.postgres import RestartablePostgres
from tests.support.worker import FAST_RETRIES


@pytest.mark.slow
async def test_database_restart_while_webhooks_stream_in(
    tmp_path: Path, private_postgres: RestartablePostgres, github: FakeGitHub
) -> None:
    add_threads(github, DB_REPOS)
    distinct, stream = help_stream(150, 0, DB_REPOS, random.Random(1))

    figures = await db_restart_scenario(
        tmp_path, private_postgres, stream, concurrency=4, pace=0.05, down_after=1.0, down_for=2.0
    )

    sent = figures.stream
    # Every delivery ended in a 2xx; on the way, only 503s ("send it again").
    assert sent.refused == []
    assert sent.accepted == 150
    assert set(sent.answers) <= {200, 202, 503}, sent.answers
    assert sent.transport_errors == 0
    # The outage hit the stream and the probes (else this test proves nothing)...
    assert sent.answers[503] > 0
    assert sent.resent > 0
    assert figures.probe_failures > 0
    # ...and they came back by themselves, in the same API process.
    assert figures.api_survived
    assert figures.api_exit_code == 0  # and it still shuts down cleanly
    assert figures.recovery_seconds < 15

    await drain_in_process(tmp_path, private_postgres.url, github)
    verdict = await check_exactly_once(private_postgres.url, github, distinct, DB_REPOS)
    assert verdict.ok, verdict.describe()
    # A 503 whose commit had in fact landed is resent and answered 200 "duplicate";
    # everything else is 202. Either way one row, one reply.
    assert sent.final[202] + sent.final[200] == 150
    # The fixture's cleanup only stops the server it started, not the one started again.
    await asyncio.to_thread(private_postgres.stop)


@pytest.mark.slow
async def test_workers_sigkilled_repeatedly_handle_every_event_exactly_once(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    add_threads(github, KILL_REPOS)
    # GitHub has the comment a moment before the worker hears back: kills land in between.
    github.post_delay_seconds = 0.02
    rng = random.Random(2)
    distinct, stream = help_stream(200, 20, KILL_REPOS, rng)

    figures = await worker_kill_scenario(
        tmp_path,
        database_url,
        github.base_url,
        stream,
        rng=rng,
        pace=0.25,  # ~15 s of stream, so the kills land while events keep arriving
    )

    assert figures.stream.refused == []
    assert figures.stream.final == Counter({202: 200, 200: 20})  # duplicates: stored once
    # Kills are paced by how fast a new worker comes up (CPU seconds of imports each).
    assert figures.kills_during_stream >= 3, figures
    verdict = await check_exactly_once(database_url, github, distinct, KILL_REPOS)
    assert verdict.ok, verdict.describe()


@pytest.mark.slow
async def test_two_apis_and_two_workers_on_one_database(
    tmp_path: Path, database_url: str, db: Database, github: FakeGitHub
) -> None:
    add_threads(github, SHARED_REPOS)
    rng = random.Random(3)
    distinct, stream = help_stream(200, 20, SHARED_REPOS, rng)

    figures = await shared_database_scenario(
        tmp_path,
        database_url,
        github.base_url,
        stream,
        rng=rng,
    )

    assert figures.stream.refused == []
    assert figures.stream.final == Counter({202: 200, 200: 20})
    assert all(n > 50 for n in figures.per_api), figures.per_api  # both APIs took a share
    # Both workers took events. Replies need not spread: a conversation's deliveries go
    # to whichever worker holds its lease, and a quick one may keep all four threads.
    assert all(n > 0 for n in figures.events_per_worker), figures
    assert sum(figures.replies_per_worker) == 200, figures
    # SIGTERM afterwards: every process drains and exits 0.
    assert figures.api_exit_codes == [0, 0]
    assert figures.worker_exit_codes == [0, 0]
    verdict = await check_exactly_once(database_url, github, distinct, SHARED_REPOS)
    assert verdict.ok, verdict.describe()


# --- 4. the AI and SCAR away, then back -----------------------------------------------------


@pytest.mark.slow
async def test_ai_away_then_back_the_conversation_resumes_with_nothing_lost(
    journey: Journey,
) -> None:
    first = "@orchestrator I'd like an app that plans family meals"
    second = "@orchestrator It's for busy parents who hate deciding dinner every day"
    third = "@orchestrator Are you there again?"
    async with LongLivedWorker(journey, FAST_RETRIES) as worker:
        journey.anthropic.reply_text("What a lovely idea! Who is it for?")
        await worker.say(first)
        assert "lovely idea" in journey.last_reply()

        journey.anthropic.down = True
        asked_before = journey.anthropic.request_count
        await worker.deliver(second)
        # Told plainly, once, that it will answer by itself; the message is kept; every
        # process can see the outage; the turn keeps trying meanwhile.
        await eventually(lambda: journey.last_reply().startswith(STILL_TRYING))
        assert journey.anthropic.request_count > asked_before  # it did try
        ai = await ai_row(journey.db)
        assert ai is not None
        assert ai[0] is False

        journey.anthropic.down = False
        journey.anthropic.reply_text("Welcome back! So: busy parents. What should it do first?")
        await worker.say(third)  # its answer covers the message sent during the outage
        assert "Welcome back" in journey.last_reply()
        assert worker.task is not None
        assert not worker.task.done()

    # The turn after the outage saw the whole conversation, the missed message included.
    context = str(journey.anthropic.requests[-1]["messages"])
    for said in (first, second, third):
        assert said.removeprefix("@orchestrator ") in context
    assert "lovely idea" in context
    stored = await stored_user_messages(journey.db)
    assert [s.removeprefix("@orchestrator ") for s in (first, second, third)] == [
        s.removeprefix("@orchestrator ") for s in stored
    ]
    ai = await ai_row(journey.db)
    assert ai is not None
    assert ai[0] is True
    # The answer, the notice of the outage, the answer after it: nothing doubled.
    assert len(journey.bot_comments()) == 3


@pytest.mark.slow
async def test_scar_away_during_a_step_the_run_continues_by_itself_when_it_is_back(
    journey: Journey,
) -> None:
    scar = journey.scar
    scar.script("prime", delay=1.0)
    script_brainstorm(journey.anthropic)
    for message in BRAINSTORM:
        await journey.comment(message)
    assert (await journey.run()).status is RunStatus.AWAITING_APPROVAL
    retried_before = step_jobs("retried") + step_jobs("deferred")

    async with LongLivedWorker(journey, PATIENT_RETRIES) as worker:
        await worker.deliver("@orchestrator /approve")  # the vision: prime starts
        await eventually(lambda: bool(sent_to_scar(journey, "prime")))
        # SCAR has the command and goes away while working on it.
        scar.fail_next(10**6, status=503)
        await eventually(lambda: step_jobs("retried") + step_jobs("deferred") - retried_before >= 2)
        (prime,) = await journey.attempts(Phase.PRIME)
        assert prime.status is PhaseStatus.RUNNING  # not failed: still within its retries
        scar.fail_next(0)  # back; nobody does anything
        await worker.idle(limit_seconds=30)

    retries = step_jobs("retried") + step_jobs("deferred") - retried_before
    assert retries >= 2
    run = await journey.run()
    assert (run.status, run.current_phase) == (RunStatus.AWAITING_APPROVAL, Phase.PLAN)
    (prime,) = await journey.attempts(Phase.PRIME)  # the same attempt, not a new one
    assert prime.status is PhaseStatus.SUCCEEDED
    (plan,) = await journey.attempts(Phase.PLAN)
    assert plan.status is PhaseStatus.SUCCEEDED
    # SCAR got each command exactly once: the retries read the answer instead of asking again.
    assert len(sent_to_scar(journey, "prime")) == 1
    assert len(sent_to_scar(journey, "plan-feature-github")) == 1
    async with journey.db.session_scope() as session:
        commands = (await session.execute(select(ScarCommand))).scalars().all()
    assert sorted(c.command for c in commands) == ["plan-feature-github", "prime"]
    assert {c.status for c in commands} == {ScarCommandStatus.SUCCEEDED}
    assert not [c for c in journey.bot_comments() if "Something went wrong" in c]
    assert len([c for c in journey.bot_comments() if "SCAR has a plan" in c]) == 1
