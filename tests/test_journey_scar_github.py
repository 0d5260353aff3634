"""End to end with SCAR over GitHub comments: no SCAR server, the test plays SCAR.

The worker's step job posts `@scar /command-invoke ...` on acme/widgets#7 and then reads
SCAR's replies from the stored webhook events. So the worker runs in the background while
the test watches the fake GitHub for the bot's `@scar` comments and answers each one the
way SCAR does: a comment by login `scar` (created on the fake GitHub first, so its id is
larger than the command's, as GitHub's ids are), delivered through the real webhook route.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from project_orchestrator.db.engine import Database
from project_orchestrator.scar.models import ScarCommand, ScarCommandStatus, ScarTransport
from project_orchestrator.workflow.models import Phase, PhaseStatus, RunStatus
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_github import FakeGitHub
from tests.support.fake_http import unused_tcp_url
from tests.support.fake_scar import ACK, NO_CODEBASE, FakeScar
from tests.support.github_payloads import issue_comment, signed
from tests.support.journey import (
    BRAINSTORM,
    ISSUE,
    OWNER,
    REPO,
    Journey,
    journey_settings,
    script_brainstorm,
)
from tests.support.webhooks import SECRET, URL, webhook_client

SCAR_LOGIN = "scar"
COMMAND_PREFIX = "@scar /command-invoke "
PLAN = (
    "Plan written to `.agents/plans/family-meal-planner.md`:\n"
    "1. A weekly plan page\n2. A shopping list built from the plan\n3. Swapping a recipe"
)
BUILT = "Created branch `feature/x` and opened pull request https://github.com/acme/widgets/pull/5"
CHECKED = "All checks passed ✅"
MERGED = "Merged PR #5"
PRIMED = "I read the project: a FastAPI app with a meal model and 12 tests."
# What SCAR posts for each command: its acknowledgement, then the result.
HAPPY: dict[str, tuple[str, ...]] = {
    "prime": (ACK, PRIMED),
    "plan-feature-github": (ACK, PLAN),
    "execute-github": (ACK, BUILT),
    "validate": (ACK, CHECKED),
    "merge-pr": (ACK, MERGED),
}


@pytest.fixture
def timeout_seconds() -> float:
    return 10.0


@pytest.fixture
async def journey(
    tmp_path: Path,
    database_url: str,
    db: Database,
    github: FakeGitHub,
    anthropic: tuple[FakeAnthropic, str],
    timeout_seconds: float,
) -> Journey:
    # SCAR lives on GitHub here: its HTTP adapter is nowhere, and nothing may call it.
    settings = journey_settings(
        tmp_path,
        database_url,
        github,
        anthropic[1],
        unused_tcp_url(),
        scar_transport="github",
        scar_timeout_seconds=timeout_seconds,
        scar_ai_retry_backoff_seconds=0.01,
    )
    return Journey(tmp_path, database_url, db, settings, github, anthropic[0], FakeScar())


# --- playing GitHub and SCAR ------------------------------------------------------------


async def deliver(journey: Journey, payload: dict[str, Any]) -> None:
    """One `issue_comment` delivery through the real webhook route; no worker runs."""
    raw, headers = signed(SECRET, "issue_comment", payload)
    async with webhook_client(journey.tmp_path, journey.database_url) as client:
        response = await client.post(URL, content=raw, headers=headers)
    assert response.status_code == 202, response.text


async def post(
    journey: Journey, body: str, *, login: str, association: str, bot: bool = False
) -> int:
    """A comment made on GitHub (so it gets GitHub's next id), then its webhook delivered."""
    comment_id = journey.github.add_comment(REPO, ISSUE, body, user=login)
    payload = issue_comment(
        body, login=login, association=association, comment_id=comment_id, repo=REPO, bot=bot
    )
    await deliver(journey, payload)
    return comment_id


async def person_says(journey: Journey, body: str) -> None:
    await post(journey, body, login=OWNER, association="OWNER")


async def scar_says(journey: Journey, body: str, *, login: str = SCAR_LOGIN) -> int:
    # SCAR is no collaborator of the repository: its replies count because of who it is.
    return await post(journey, body, login=login, association="NONE", bot=login.endswith("[bot]"))


def scar_requests(journey: Journey) -> list[dict[str, Any]]:
    """The bot's `@scar /command-invoke ...` comments on the issue, oldest first."""
    return [
        c
        for c in journey.github.comments(REPO, ISSUE)
        if c["user"] == journey.github.bot_login and c["body"].startswith(COMMAND_PREFIX)
    ]


def invocation(request: dict[str, Any]) -> str:
    """`/command-invoke <command> <args>`, as SCAR reads it (the hidden marker left out)."""
    return str(request["body"]).split("\n", 1)[0].removeprefix("@scar ")


def command_name(request: dict[str, Any]) -> str:
    return invocation(request).split()[1]


@contextlib.asynccontextmanager
async def worker_running(
    journey: Journey, limit_seconds: float = 30
) -> AsyncIterator[asyncio.Task[None]]:
    """The real worker in the background; leaving the block waits until it is idle."""
    worker = asyncio.create_task(journey.work(limit_seconds))
    try:
        yield worker
        await worker
    finally:
        if not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker


async def until_asked(journey: Journey, count: int, limit_seconds: float = 10) -> None:
    """Until the bot has posted `count` `@scar` commands on the issue."""
    async with asyncio.timeout(limit_seconds):
        while True:
            if len(scar_requests(journey)) >= count:
                return
            await asyncio.sleep(0.02)


async def run_with_scar(
    journey: Journey,
    answers: Mapping[str, Sequence[str]],
    *,
    login: str = SCAR_LOGIN,
    first: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Run the worker until the queue is idle while SCAR answers each new `@scar` command
    on the issue with the comments `answers[command]` (none: SCAR stays silent); the first
    time a command comes, `first[command]` instead, where given.

    Returns the commands asked for meanwhile, in order.
    """
    answered = {c["id"] for c in scar_requests(journey)}
    asked: list[str] = []
    pending_first = dict(first or {})
    async with worker_running(journey) as worker:
        while not worker.done():
            for request in scar_requests(journey):
                if request["id"] in answered:
                    continue
                answered.add(request["id"])
                command = command_name(request)
                asked.append(command)
                scar_acts_on_github(journey, command)
                for body in pending_first.pop(command, None) or answers[command]:
                    await scar_says(journey, body, login=login)
            await asyncio.sleep(0.02)
    return asked


def scar_acts_on_github(journey: Journey, command: str) -> None:
    """What SCAR does on GitHub before it answers: its build opens pull request 5 from
    `feature/x` (BUILT says so), `merge-pr` merges it."""
    if command == "execute-github" and 5 not in journey.github.repos[REPO.lower()].issues:
        journey.github.add_issue(REPO, 5, "Meal planner", pull_request=True, head_ref="feature/x")
    elif command == "merge-pr":
        journey.github.merge_pull(REPO, 5)


async def brainstorm_to_vision_gate(journey: Journey) -> None:
    script_brainstorm(journey.anthropic)
    for message in BRAINSTORM:
        await journey.comment(message)
    assert (await journey.run()).status is RunStatus.AWAITING_APPROVAL


async def scar_commands(journey: Journey) -> list[ScarCommand]:
    async with journey.db.session_scope() as session:
        return list(
            (await session.execute(select(ScarCommand).order_by(ScarCommand.created_at)))
            .scalars()
            .all()
        )


# --- the journey --------------------------------------------------------------------------


async def test_from_an_idea_to_a_merged_pull_request_with_scar_on_github(
    journey: Journey,
) -> None:
    await brainstorm_to_vision_gate(journey)

    await person_says(journey, "@orchestrator /approve")  # the vision
    assert await run_with_scar(journey, HAPPY) == ["prime", "plan-feature-github"]
    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.PLAN
    plan_questions = [c for c in journey.bot_comments() if "SCAR has a plan" in c]
    assert len(plan_questions) == 1
    assert "A shopping list built from the plan" in plan_questions[0]
    assert ACK not in plan_questions[0]

    await person_says(journey, "@orchestrator /approve")  # the plan
    assert await run_with_scar(journey, HAPPY) == ["execute-github", "validate"]
    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.MERGE
    assert run.pr_url == f"https://github.com/{REPO}/pull/5"
    assert run.pr_number == 5
    assert run.branch == "feature/x"
    assert any("Shall I merge it?" in c for c in journey.bot_comments())

    await person_says(journey, "@orchestrator /approve")  # the merge
    assert await run_with_scar(journey, HAPPY) == ["merge-pr"]
    run = await journey.run()
    assert run.status is RunStatus.COMPLETED
    assert "Done!" in journey.last_reply()
    assert journey.board().count("- [x]") == 7

    # Every command was posted once, on the project's issue, in the workflow's order.
    invocations = [invocation(c) for c in scar_requests(journey)]
    assert [i.split()[1] for i in invocations] == [
        "prime",
        "plan-feature-github",
        "execute-github",
        "validate",
        "merge-pr",
    ]
    assert invocations[0] == "/command-invoke prime"
    assert ".agents/plans/family-meal-planner.md" in invocations[2]
    assert invocations[-1] == "/command-invoke merge-pr 5"
    assert journey.scar_commands() == []  # SCAR's HTTP adapter was never involved

    actions = journey.audit_actions()
    assert actions.count("scar_command_executed") == 5
    assert actions.count("approval_granted") == 3
    assert "unauthorized_access" not in actions  # SCAR is heard, not refused

    commands = await scar_commands(journey)
    assert [c.command for c in commands] == [i.split()[1] for i in invocations]
    assert {c.transport for c in commands} == {ScarTransport.GITHUB}
    assert {c.status for c in commands} == {ScarCommandStatus.SUCCEEDED}
    assert [c.output for c in commands] == [PRIMED, PLAN, BUILT, CHECKED, MERGED]
    assert all(c.duration_seconds is not None for c in commands)
    built = commands[2]
    assert (built.branch, built.pr_number, built.pr_url) == (
        "feature/x",
        5,
        f"https://github.com/{REPO}/pull/5",
    )


async def test_scar_without_a_codebase_fails_the_phase_and_asks_what_to_do(
    journey: Journey,
) -> None:
    await brainstorm_to_vision_gate(journey)
    await person_says(journey, "@orchestrator /approve")
    # SCAR's GitHub App answers as `scar[bot]`; its built-in refusal comes without an ack.
    asked = await run_with_scar(journey, {"prime": (NO_CODEBASE,)}, login="scar[bot]")
    assert asked == ["prime"]  # nothing after a failed phase

    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.PRIME
    (prime,) = await journey.attempts(Phase.PRIME)
    assert prime.status is PhaseStatus.FAILED
    assert prime.error is not None
    assert "SCAR had no project selected" in prime.error
    questions = [c for c in journey.bot_comments() if "Something went wrong" in c]
    assert len(questions) == 1
    assert "SCAR had no project selected, so it ran nothing" in questions[0]
    assert "/clone" not in questions[0]  # SCAR's advice to its own users is not ours

    (command,) = await scar_commands(journey)
    assert command.transport is ScarTransport.GITHUB
    assert command.status is ScarCommandStatus.FAILED
    assert command.output is None
    actions = journey.audit_actions()
    assert actions.count("scar_command_executed") == 1


@pytest.mark.parametrize("timeout_seconds", [0.5])
async def test_scar_never_answering_times_out_the_phase(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    await person_says(journey, "@orchestrator /approve")
    assert await run_with_scar(journey, {"prime": ()}) == ["prime"]

    run = await journey.run()
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.current_phase is Phase.PRIME
    assert len(scar_requests(journey)) == 1  # waiting did not ask again
    assert any(
        "Something went wrong" in c and "did not finish prime" in c for c in journey.bot_comments()
    )
    (prime,) = await journey.attempts(Phase.PRIME)
    assert prime.status is PhaseStatus.FAILED
    (command,) = await scar_commands(journey)
    assert command.transport is ScarTransport.GITHUB
    assert command.status is ScarCommandStatus.TIMED_OUT
    assert command.output is None


async def test_an_answer_scar_edits_later_is_read_in_its_last_version(journey: Journey) -> None:
    """SCAR may edit its comment; an `edited` delivery replaces the text, not adds to it."""
    await brainstorm_to_vision_gate(journey)
    await person_says(journey, "@orchestrator /approve")
    async with worker_running(journey):
        await until_asked(journey, 1)
        # One comment, first delivered as created (the ack), then edited into the result.
        comment_id = journey.github.add_comment(REPO, ISSUE, ACK, user=SCAR_LOGIN)
        for action, body in (("created", ACK), ("edited", PRIMED)):
            await deliver(
                journey,
                issue_comment(
                    body,
                    login=SCAR_LOGIN,
                    association="NONE",
                    comment_id=comment_id,
                    repo=REPO,
                    action=action,
                ),
            )
        await until_asked(journey, 2)  # prime is done: the plan is asked for
        await scar_says(journey, PLAN)
    prime, plan = await scar_commands(journey)
    assert prime.output == PRIMED
    assert plan.output == PLAN
    assert (await journey.run()).current_phase is Phase.PLAN


@pytest.mark.parametrize("timeout_seconds", [0.5])
async def test_a_late_answer_to_a_timed_out_command_is_not_taken_for_the_next_one(
    journey: Journey,
) -> None:
    await brainstorm_to_vision_gate(journey)
    await person_says(journey, "@orchestrator /approve")
    assert await run_with_scar(journey, {"prime": ()}) == ["prime"]  # SCAR is slow: timeout
    (first,) = scar_requests(journey)

    # SCAR is still on the first prime when the person says "try again". It works through
    # its comments one at a time and is slower than we are: it finishes a command once the
    # next one is already posted (or a second later, when nothing more comes).
    journey.settings = journey.settings.model_copy(update={"scar_timeout_seconds": 10.0})
    await person_says(journey, "@orchestrator /approve")
    backlog = [first]  # SCAR's queue, oldest first
    seen = {first["id"]}
    primes = 0
    since = time.monotonic()
    async with worker_running(journey) as worker:
        while not worker.done():
            for request in scar_requests(journey):
                if request["id"] not in seen:
                    seen.add(request["id"])
                    backlog.append(request)
            if len(backlog) > 1 or (backlog and time.monotonic() - since > 1.0):
                request = backlog.pop(0)
                command = command_name(request)
                if command == "prime":
                    primes += 1
                    result = f"{PRIMED} (prime {primes})"
                else:
                    result = HAPPY[command][1]
                for body in (ACK, result):
                    await scar_says(journey, body)
                since = time.monotonic()
            await asyncio.sleep(0.02)

    run = await journey.run()
    assert run.current_phase is Phase.PLAN
    assert run.status is RunStatus.AWAITING_APPROVAL
    # The person is asked to approve SCAR's plan, not a summary of the project.
    plan_questions = [c for c in journey.bot_comments() if "SCAR has a plan" in c]
    assert len(plan_questions) == 1
    assert "A shopping list built from the plan" in plan_questions[0]
    (plan,) = await journey.attempts(Phase.PLAN)
    assert plan.output == PLAN
    _, retried = await journey.attempts(Phase.PRIME)
    assert retried.output == f"{PRIMED} (prime 2)"  # its own answer, not the first


async def test_scars_ai_failing_once_is_asked_again_in_a_new_comment(journey: Journey) -> None:
    await brainstorm_to_vision_gate(journey)
    await person_says(journey, "@orchestrator /approve")
    failure = "⚠️ Error: Claude Code process exited with code 1. Try /reset if issue persists."
    asked = await run_with_scar(journey, HAPPY, first={"prime": (ACK, failure)})
    assert asked == ["prime", "prime", "plan-feature-github"]
    run = await journey.run()
    assert run.current_phase is Phase.PLAN
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert not any("Something went wrong" in c for c in journey.bot_comments())
    primes = [r for r in scar_requests(journey) if command_name(r) == "prime"]
    assert len(primes) == 2  # two comments, each answered in turn
