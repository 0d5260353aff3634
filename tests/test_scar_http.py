"""HttpScarClient against the fake SCAR on a real port: the whole HTTP path, crash included."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from project_orchestrator.config import Settings
from project_orchestrator.scar.answers import WORKSPACE_MISSING_REASON
from project_orchestrator.scar.http_transport import HttpScarClient, http_scar_client
from project_orchestrator.scar.protocol import (
    ScarCommandFailed,
    ScarInvocation,
    ScarTimedOut,
    ScarUnavailable,
)
from tests.support.fake_http import FakeServer, unused_tcp_url
from tests.support.fake_scar import CLAUDE_FAILURE, FakeScar

PLAN = ScarInvocation(
    conversation_id="po-run-1",
    repo="acme/widgets",
    repo_url="https://github.com/acme/widgets",
    command="plan-feature-github",
    args='"Add a login page"',
)
PRIME = replace(PLAN, command="prime", args="")
# A later command of the same run: the conversation has the repository open already.
LATER = replace(PLAN, open_repository=False)
PLAN_TEXT = "## Plan\n\nSaved to `.agents/plans/add-login.md`."


def make_client(url: str, **options: Any) -> HttpScarClient:
    settings: dict[str, Any] = {
        "timeout_seconds": 5.0,
        "poll_interval": 0.01,
        "ai_retry_backoff": 0.01,
    }
    settings.update(options)
    return HttpScarClient(url, **settings)


@contextlib.asynccontextmanager
async def scar_client(url: str, **options: Any) -> AsyncIterator[HttpScarClient]:
    client = make_client(url, **options)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def fake() -> FakeScar:
    return FakeScar()


@pytest.fixture
def server(fake: FakeScar) -> Iterator[FakeServer]:
    with FakeServer(fake.app) as server:
        yield server


async def until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_text_of_an_invocation() -> None:
    assert PLAN.text == '/command-invoke plan-feature-github "Add a login page"'
    bare = ScarInvocation("c", "acme/widgets", "https://github.com/acme/widgets", "validate")
    assert bare.text == "/command-invoke validate"
    assert bare.repo_name == "widgets"
    assert bare.key == "c"
    assert replace(bare, command_key="po-7").key == "po-7"


async def test_a_new_repository_is_cloned_and_the_folder_comes_from_scars_answer(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.script("plan-feature-github", PLAN_TEXT, delay=0.1, progress=2)
    async with scar_client(server.url) as client:
        output = await client.run(PLAN)
    assert output.messages == (PLAN_TEXT,)  # acknowledgement and heartbeats left out
    assert output.codebase == "widgets"
    assert fake.mode == "batch"
    assert fake.invocations == [
        "/repo widgets pull",
        "/clone https://github.com/acme/widgets",
        "/commands",
        PLAN.text,
    ]
    assert fake.codebase(PLAN.conversation_id) == "widgets"


async def test_a_github_io_repository_is_opened_by_the_folder_scar_made(
    fake: FakeScar, server: FakeServer
) -> None:
    site = replace(
        PRIME, repo="acme/site.github.io", repo_url="https://github.com/acme/site.github.io"
    )
    async with scar_client(server.url) as client:
        first = await client.run(site)
        # A later run (a new conversation) opens the folder SCAR reported.
        again = await client.run(replace(site, conversation_id="po-run-2", codebase=first.codebase))
    assert first.codebase == "sitehub.io"
    assert again.codebase == "sitehub.io"
    assert fake.invocations.count("/clone https://github.com/acme/site.github.io") == 1
    assert "/repo sitehub.io pull" in fake.invocations
    assert fake.codebase("po-run-2") == "sitehub.io"


async def test_one_conversation_per_run_keeps_scars_session(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets")
    async with scar_client(server.url) as client:
        await client.run(PRIME)
        await client.run(LATER)
        await client.run(replace(LATER, command="validate", args=""))
    repos = [text for text in fake.invocations if text.startswith(("/repo", "/clone"))]
    assert repos == ["/repo widgets pull"]  # /repo would reset SCAR's session
    plan, validate = fake.ai_runs[1], fake.ai_runs[2]
    assert plan.command == "plan-feature-github"
    assert plan.session == fake.ai_runs[0].session
    assert plan.session_commands == ("prime",)  # what prime read is known to plan
    assert validate.session_commands[:2] == ("prime", "plan-feature-github")


async def test_batch_mode_is_set_before_every_command(fake: FakeScar, server: FakeServer) -> None:
    fake.add_repo("acme/widgets")
    async with scar_client(server.url) as client:
        await client.run(PRIME)
        fake.restart()  # SCAR forgets batch mode
        assert fake.mode == "stream"
        output = await client.run(LATER)
    assert fake.mode == "batch"
    assert len(output.messages) == 1
    assert len([r for r in server.requests if r.path == "/test/mode"]) == 2


async def test_a_template_repository_gets_its_commands_loaded(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.remote("acme/widgets", layout="template")
    async with scar_client(server.url) as client:
        output = await client.run(PRIME)
        await client.run(LATER)
    assert "/load-commands .agents/commands" in fake.invocations
    assert fake.invocations.count("/load-commands .agents/commands") == 1
    assert "plan-feature-github" in fake.commands_of("widgets")
    assert output.codebase == "widgets"
    assert [run.command for run in fake.ai_runs] == ["prime", "plan-feature-github"]


async def test_a_repository_without_the_command_fails_naming_it(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.remote("acme/widgets", layout="none")
    async with scar_client(server.url) as client:
        with pytest.raises(ScarCommandFailed) as raised:
            await client.run(PLAN)
    assert "has no 'plan-feature-github' command" in str(raised.value)
    assert ".agents/commands" in str(raised.value)
    assert PLAN.text not in fake.invocations


async def test_a_prefix_match_is_not_taken_for_the_repository(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets-api")  # SCAR would open this for "/repo widgets"
    async with scar_client(server.url) as client:
        await client.run(PLAN)
    assert "/clone https://github.com/acme/widgets" in fake.invocations
    assert fake.codebase(PLAN.conversation_id) == "widgets"


async def test_a_conversation_that_lost_its_repository_opens_it_again(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets")
    async with scar_client(server.url) as client:
        output = await client.run(LATER)  # SCAR never had the repository open here
    assert output.text.startswith("## 📋 Implementation Plan Created")
    assert fake.invocations.count(LATER.text) == 2
    assert "/repo widgets pull" in fake.invocations


async def test_a_missing_workspace_is_a_clear_failure_naming_the_fix(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.workspace_missing = True
    async with scar_client(server.url) as client:
        with pytest.raises(ScarCommandFailed) as raised:
            await client.run(PLAN)
    assert str(raised.value) == WORKSPACE_MISSING_REASON
    assert "WORKSPACE_PATH" in str(raised.value)


# --- crashes, restarts and SCAR's AI failing -----------------------------------------------


async def test_a_crash_before_the_command_went_out_starts_clean(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets")
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.post(
            "/test/message",
            json={"conversationId": PLAN.conversation_id, "message": "/repo widgets"},
        )
        await until(lambda: bool(fake.sent_texts(PLAN.conversation_id)))
    async with scar_client(server.url) as client:
        output = await client.run(PLAN)
    assert output.messages[0].startswith("## 📋 Implementation Plan Created")
    assert len(output.messages) == 1
    assert fake.invocations.count(PLAN.text) == 1


async def test_resume_after_a_crash_never_resends(fake: FakeScar, server: FakeServer) -> None:
    """A worker dies while SCAR works; the retry (a new client) only waits and reads."""
    fake.script("plan-feature-github", PLAN_TEXT, delay=0.4, progress=1)
    sends: list[str] = []

    async def on_send() -> None:
        sends.append("sent")

    crashed = make_client(server.url)
    attempt = asyncio.create_task(crashed.run(PLAN, on_send=on_send))
    await until(lambda: PLAN.text in fake.invocations)
    attempt.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await attempt
    await crashed.aclose()
    assert sends == ["sent"]
    assert PLAN.conversation_id in fake.busy_conversations()

    async with scar_client(server.url) as client:
        output = await client.run(replace(PLAN, sent_before=True))
    assert output.messages == (PLAN_TEXT,)
    assert fake.invocations.count(PLAN.text) == 1
    assert fake.invocations.count("/clone https://github.com/acme/widgets") == 1


async def test_resume_after_scar_finished_reads_the_stored_output(
    fake: FakeScar, server: FakeServer
) -> None:
    """The worker died after SCAR finished but before the output was stored."""
    fake.add_repo("acme/widgets")
    async with scar_client(server.url) as client:
        first = await client.run(PLAN)
        again = await client.run(replace(PLAN, sent_before=True, codebase=first.codebase))
    assert again == first
    assert fake.invocations.count(PLAN.text) == 1


async def test_scar_restarting_mid_command_is_unavailable_and_resumed(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets")
    fake.restart_when("plan-feature-github")
    async with scar_client(server.url) as client:
        with pytest.raises(ScarUnavailable) as raised:
            await client.run(PLAN)
        assert "restarted" in str(raised.value)
        assert "without saying anything" not in str(raised.value)
        # The retry: the command may have gone out, but SCAR lost it, so it goes again.
        output = await client.run(replace(LATER, sent_before=True))
    assert output.text.startswith("## 📋 Implementation Plan Created")
    assert fake.invocations.count(PLAN.text) == 2
    assert fake.mode == "batch"


async def test_a_transient_claude_failure_is_retried(fake: FakeScar, server: FakeServer) -> None:
    fake.add_repo("acme/widgets")
    fake.claude_failures(2)
    async with scar_client(server.url, ai_retries=3) as client:
        output = await client.run(PLAN)
    assert output.text.startswith("## 📋 Implementation Plan Created")
    assert fake.invocations.count(PLAN.text) == 3
    assert CLAUDE_FAILURE not in output.text


async def test_claude_failing_every_time_fails_the_command_in_plain_words(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets")
    fake.claude_failures(10)
    async with scar_client(server.url, ai_retries=2) as client:
        with pytest.raises(ScarCommandFailed) as raised:
            await client.run(PLAN)
    assert fake.invocations.count(PLAN.text) == 3  # the first try and two retries
    assert "Claude Code" in str(raised.value)
    assert "/reset" not in str(raised.value)


async def test_a_claude_failure_found_on_resume_is_retried(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets")
    fake.claude_failures(1)
    async with scar_client(server.url, ai_retries=0) as client:
        with pytest.raises(ScarCommandFailed):
            await client.run(PLAN)
    async with scar_client(server.url, ai_retries=1) as client:
        output = await client.run(replace(LATER, sent_before=True))
    assert output.text.startswith("## 📋 Implementation Plan Created")
    assert fake.invocations.count(PLAN.text) == 2


# --- failures told plainly ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "invocation", "expected"),
    [
        (
            lambda f: f.unclonable.add("acme/widgets"),
            PLAN,
            "could not download the project's repository",
        ),
        (
            lambda f: f.script("plan-feature-github", "   "),
            PLAN,
            "SCAR finished without saying anything.",
        ),
    ],
)
async def test_failure_answers_raise_a_readable_error(
    fake: FakeScar,
    server: FakeServer,
    setup: Callable[[FakeScar], None],
    invocation: ScarInvocation,
    expected: str,
) -> None:
    setup(fake)
    async with scar_client(server.url) as client:
        with pytest.raises(ScarCommandFailed) as raised:
            await client.run(invocation)
    assert expected in str(raised.value)
    assert "Traceback" not in str(raised.value)


async def test_a_hanging_command_times_out(fake: FakeScar, server: FakeServer) -> None:
    fake.add_repo("acme/widgets")
    fake.hang("plan-feature-github")
    started = time.monotonic()
    async with scar_client(server.url, timeout_seconds=0.5, poll_interval=0.02) as client:
        with pytest.raises(ScarTimedOut) as raised:
            await client.run(PLAN)
    assert time.monotonic() - started < 2
    assert str(raised.value) == "SCAR did not finish plan-feature-github within 0.5 seconds."


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(1800.0, "30 minutes"), (60.0, "1 minute"), (90.0, "2 minutes"), (1.0, "1 second")],
)
async def test_timeouts_are_told_in_plain_units(seconds: float, said: str) -> None:
    assert (
        str(ScarTimedOut.after("validate", seconds))
        == f"SCAR did not finish validate within {said}."
    )


async def test_connection_refused_is_unavailable() -> None:
    async with scar_client(unused_tcp_url()) as client:
        with pytest.raises(ScarUnavailable) as raised:
            await client.run(PLAN)
    assert "could not be reached" in str(raised.value)


async def test_server_error_is_unavailable_and_the_next_run_recovers(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets")
    fake.fail_next(1, status=503)
    async with scar_client(server.url) as client:
        with pytest.raises(ScarUnavailable) as raised:
            await client.run(PLAN)
        assert "HTTP 503" in str(raised.value)
        output = await client.run(PLAN)
    assert output.text.startswith("## 📋 Implementation Plan Created")
    assert fake.mode == "batch"


async def test_blips_while_waiting_are_tolerated(fake: FakeScar, server: FakeServer) -> None:
    fake.add_repo("acme/widgets")
    fake.script("plan-feature-github", PLAN_TEXT, delay=0.3)
    async with scar_client(server.url) as client:
        attempt = asyncio.create_task(client.run(PLAN))
        await until(lambda: PLAN.text in fake.invocations)
        fake.fail_next(2, status=502)
        output = await attempt
    assert output.text == PLAN_TEXT


async def test_bad_request_is_a_command_failure(fake: FakeScar, server: FakeServer) -> None:
    fake.fail_next(1, status=400, error="conversationId and message must be strings")
    async with scar_client(server.url) as client:
        with pytest.raises(ScarCommandFailed) as raised:
            await client.run(PLAN)
    assert "conversationId and message must be strings" in str(raised.value)


# --- older SCARs and polling ----------------------------------------------------------------


async def test_quiet_period_stands_in_when_the_concurrency_route_is_missing() -> None:
    fake = FakeScar(concurrency_route=False, mode_route=False)
    fake.add_repo("acme/widgets")
    fake.script("plan-feature-github", turns=["Plan for the login page", "Step one."], delay=0.3)
    with FakeServer(fake.app) as server:
        async with scar_client(server.url, quiet_period=0.15) as client:
            output = await client.run(PLAN)
    # The mode route was missing too: SCAR streams, one message per text block, and the
    # quiet period waited for them all.
    assert fake.mode == "stream"
    assert output.messages == ("Plan for the login page", "Step one.")


async def test_streamed_tool_calls_are_not_part_of_the_result() -> None:
    fake = FakeScar(mode_route=False)
    fake.add_repo("acme/widgets")
    fake.script(
        "plan-feature-github",
        turns=["Reading the code.", "The plan."],
        tools=[("Read", {"file_path": "src/app.py"})],
    )
    with FakeServer(fake.app) as server:
        async with scar_client(server.url) as client:
            output = await client.run(PLAN)
    assert any(t.startswith("🔧") for t in fake.sent_texts(PLAN.conversation_id))
    assert output.messages == ("Reading the code.", "The plan.")


async def test_completion_is_noticed_long_before_the_poll_interval(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets")
    async with scar_client(server.url, poll_interval=5.0) as client:
        started = time.monotonic()
        await client.run(LATER)
    # A fixed 5 s interval could not finish under 5 s; adaptive polling looks at 50 ms.
    assert time.monotonic() - started < 2.5


async def test_client_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        scar_base_url="http://scar.internal:3000/",
        scar_timeout_seconds=42,
        scar_ai_retries=5,
        data_dir=tmp_path,
        audit_log_path=tmp_path / "audit.log",
    )
    client = http_scar_client(settings)
    try:
        assert client._base_url == "http://scar.internal:3000"
        assert client._timeout_seconds == 42
        assert client._ai_retries == 5
    finally:
        await client.aclose()


async def test_a_claude_failure_in_stream_mode_is_recognised_and_retried() -> None:
    fake = FakeScar(mode_route=False)  # an older SCAR: stream mode, Claude Code's text first
    fake.add_repo("acme/widgets")
    fake.claude_failures(1)
    with FakeServer(fake.app) as server:
        async with scar_client(server.url, ai_retries=1) as client:
            output = await client.run(PLAN)
    assert fake.invocations.count(PLAN.text) == 2
    assert "API Error" not in output.text


async def test_a_resumed_command_that_found_no_repository_opens_it_before_sending_again(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets")
    # An earlier attempt sent the command into a conversation without a repository.
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.post(
            "/test/message", json={"conversationId": LATER.conversation_id, "message": LATER.text}
        )
    await until(lambda: bool(fake.sent_texts(LATER.conversation_id)))
    async with scar_client(server.url) as client:
        output = await client.run(replace(LATER, sent_before=True))
    assert output.text.startswith("## 📋 Implementation Plan Created")
    assert fake.invocations == [LATER.text, "/repo widgets pull", "/commands", LATER.text]
