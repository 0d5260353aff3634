"""HttpScarClient against the fake SCAR on a real port: the whole HTTP path, crash included."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from project_orchestrator.config import Settings
from project_orchestrator.scar.http_transport import HttpScarClient, http_scar_client
from project_orchestrator.scar.protocol import (
    ScarCommandFailed,
    ScarInvocation,
    ScarTimedOut,
    ScarUnavailable,
)
from tests.support.fake_http import FakeServer, unused_tcp_url
from tests.support.fake_scar import FakeScar

PLAN = ScarInvocation(
    conversation_id="po-plan-1",
    repo="acme/widgets",
    repo_url="https://github.com/acme/widgets",
    command="plan-feature-github",
    args='"Add a login page"',
)
PLAN_TEXT = "## Plan\n\nSaved to `.agents/plans/add-login.md`."


def make_client(url: str, **options: Any) -> HttpScarClient:
    settings: dict[str, Any] = {"timeout_seconds": 5.0, "poll_interval": 0.01}
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


@pytest.mark.parametrize("queued_format", ["dict", "list"])
async def test_new_repository_is_cloned_then_the_command_runs(queued_format: str) -> None:
    fake = FakeScar(queued_format=queued_format)  # type: ignore[arg-type]
    fake.script("plan-feature-github", PLAN_TEXT, delay=0.1, progress=2)
    with FakeServer(fake.app) as server:
        async with scar_client(server.url) as client:
            output = await client.run(PLAN)

    assert output.messages == (PLAN_TEXT,)  # acknowledgement and heartbeats left out
    assert output.text == PLAN_TEXT
    assert fake.mode == "batch"
    assert fake.invocations == [
        "/repo widgets",
        "/clone https://github.com/acme/widgets",
        "/repo widgets",
        PLAN.text,
    ]
    assert fake.codebase(PLAN.conversation_id) == "widgets"
    mode_requests = [r for r in server.requests if r.path == "/test/mode"]
    assert len(mode_requests) == 1


async def test_known_repository_is_not_cloned_and_batch_mode_is_set_once(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets")
    async with scar_client(server.url) as client:
        first = await client.run(PLAN)
        second = await client.run(
            ScarInvocation("po-validate-1", PLAN.repo, PLAN.repo_url, "validate")
        )
    assert first.text.startswith("## Plan: Add a login page")
    assert second.text == "All checks passed ✅"
    assert fake.invocations == [
        "/repo widgets",
        PLAN.text,
        "/repo widgets",
        "/command-invoke validate",
    ]
    assert len([r for r in server.requests if r.path == "/test/mode"]) == 1


async def test_a_prefix_match_is_not_taken_for_the_repository(
    fake: FakeScar, server: FakeServer
) -> None:
    fake.add_repo("acme/widgets-api")  # SCAR would open this for "/repo widgets"
    async with scar_client(server.url) as client:
        await client.run(PLAN)
    assert "/clone https://github.com/acme/widgets" in fake.invocations
    assert fake.codebase(PLAN.conversation_id) == "widgets"


@pytest.mark.parametrize("list_received", [True, False])
async def test_a_crash_before_the_command_went_out_starts_clean(list_received: bool) -> None:
    fake = FakeScar(list_received=list_received)
    fake.add_repo("acme/widgets")
    with FakeServer(fake.app) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.post(
                "/test/message",
                json={"conversationId": PLAN.conversation_id, "message": "/repo widgets"},
            )
            await until(lambda: bool(fake.sent_texts(PLAN.conversation_id)))
        async with scar_client(server.url) as client:
            output = await client.run(PLAN)
    assert output.messages[0].startswith("## Plan")
    assert len(output.messages) == 1
    assert fake.invocations.count(PLAN.text) == 1


@pytest.mark.parametrize("list_received", [True, False])
async def test_resume_after_a_crash_never_resends(list_received: bool) -> None:
    """A worker dies while SCAR works; the retry (a new client) only waits and reads."""
    fake = FakeScar(list_received=list_received)
    fake.script("plan-feature-github", PLAN_TEXT, delay=0.4, progress=1)
    with FakeServer(fake.app) as server:
        crashed = make_client(server.url)
        attempt = asyncio.create_task(crashed.run(PLAN))
        await until(lambda: PLAN.text in fake.invocations)
        attempt.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attempt
        await crashed.aclose()
        assert PLAN.conversation_id in fake.busy_conversations()

        async with scar_client(server.url) as client:
            output = await client.run(PLAN)

    assert output.messages == (PLAN_TEXT,)
    assert fake.invocations.count(PLAN.text) == 1
    assert fake.invocations.count("/clone https://github.com/acme/widgets") == 1


@pytest.mark.parametrize("list_received", [True, False])
async def test_resume_after_scar_finished_reads_the_stored_output(list_received: bool) -> None:
    """The worker died after SCAR finished but before the output was stored."""
    fake = FakeScar(list_received=list_received)
    fake.add_repo("acme/widgets")
    with FakeServer(fake.app) as server:
        async with scar_client(server.url) as client:
            first = await client.run(PLAN)
        async with scar_client(server.url) as client:
            again = await client.run(PLAN)
    assert again == first
    assert fake.invocations.count(PLAN.text) == 1


@pytest.mark.parametrize(
    ("setup", "invocation", "expected"),
    [
        (
            lambda f: f.script("plan-feature-github", "disk full", fail=True),
            PLAN,
            "SCAR ran into an error (disk full)",
        ),
        (
            lambda f: None,
            ScarInvocation("po-x", "acme/widgets", "https://github.com/acme/widgets", "deploy"),
            "no 'deploy' command",
        ),
        (
            lambda f: f.unclonable.add("widgets"),
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
    assert output.text.startswith("## Plan")
    # SCAR may have restarted in between (back in stream mode): the mode is set again.
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


async def test_quiet_period_stands_in_when_the_concurrency_route_is_missing() -> None:
    fake = FakeScar(concurrency_route=False, mode_route=False)
    # Heartbeats alone must not end the wait: the result comes after them.
    fake.script("plan-feature-github", PLAN_TEXT, delay=0.3, progress=2)
    with FakeServer(fake.app) as server:
        async with scar_client(server.url, quiet_period=0.15) as client:
            output = await client.run(PLAN)
    # The mode route was missing too: the client carried on in stream mode, one message
    # per paragraph, and the quiet period waited for them all.
    assert fake.mode == "stream"
    assert output.text == PLAN_TEXT
    assert fake.invocations == [
        "/repo widgets",
        "/clone https://github.com/acme/widgets",
        "/repo widgets",
        PLAN.text,
    ]


async def test_quiet_period_gathers_every_streamed_message() -> None:
    fake = FakeScar(concurrency_route=False, mode_route=False)
    fake.add_repo("acme/widgets")
    fake.on_command("plan-feature-github", lambda args: f"Plan for {args}\n\nStep one.")
    with FakeServer(fake.app) as server:
        async with scar_client(server.url, quiet_period=0.15) as client:
            output = await client.run(PLAN)
    assert output.messages == ('Plan for "Add a login page"', "Step one.")
    assert output.text == 'Plan for "Add a login page"\n\nStep one.'


async def test_client_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        scar_base_url="http://scar.internal:3000/",
        scar_timeout_seconds=42,
        data_dir=tmp_path,
        audit_log_path=tmp_path / "audit.log",
    )
    client = http_scar_client(settings)
    try:
        assert client._base_url == "http://scar.internal:3000"
        assert client._timeout_seconds == 42
    finally:
        await client.aclose()
