"""The fake SCAR behaves like SCAR's HTTP adapter, seen through plain HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from project_orchestrator.scar.parsing import parse_artifacts
from tests.support.fake_http import FakeServer
from tests.support.fake_scar import ACK, NO_CODEBASE, NO_REPOSITORIES, FakeScar

CID = "po-test"


@pytest.fixture
def fake() -> FakeScar:
    return FakeScar()


@pytest.fixture
def server(fake: FakeScar) -> Iterator[FakeServer]:
    with FakeServer(fake.app) as server:
        yield server


@pytest.fixture
async def http(server: FakeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        yield client


async def until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def say(http: httpx.AsyncClient, text: str, cid: str = CID) -> dict[str, Any]:
    response = await http.post("/test/message", json={"conversationId": cid, "message": text})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def answer_to(fake: FakeScar, http: httpx.AsyncClient, text: str) -> str:
    """Send `text` and return SCAR's first answer to it."""
    before = len(fake.sent_texts(CID))
    await say(http, text)
    await until(lambda: len(fake.sent_texts(CID)) > before)
    return fake.sent_texts(CID)[before]


async def stats(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/health/concurrency")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"conversationId": CID}, "conversationId and message must be strings"),
        ({"conversationId": 7, "message": "/help"}, "conversationId and message must be strings"),
        ({"conversationId": "", "message": "/help"}, "conversationId and message required"),
        ([1, 2], "Invalid JSON body"),
    ],
)
async def test_bad_body_is_400(http: httpx.AsyncClient, body: Any, error: str) -> None:
    response = await http.post("/test/message", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": error}


async def test_invalid_json_is_400(http: httpx.AsyncClient, fake: FakeScar) -> None:
    response = await http.post("/test/message", content=b"{not json")
    assert response.status_code == 400
    assert fake.invocations == []


async def test_message_is_answered_at_once_and_processed_in_background(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.add_repo("acme/widgets")
    fake.script("prime", "Primed.", delay=0.3)
    await answer_to(fake, http, "/repo widgets")
    started = time.monotonic()
    body = await say(http, "/command-invoke prime")
    assert time.monotonic() - started < 0.25
    assert body == {"success": True, "conversationId": CID, "message": "/command-invoke prime"}
    assert CID in (await stats(http))["activeConversationIds"]
    await until(lambda: "Primed." in fake.sent_texts(CID))
    await until(lambda: CID not in fake.busy_conversations())

    listed = (await http.get(f"/test/messages/{CID}")).json()
    assert listed["conversationId"] == CID
    # Stream mode (SCAR's default) sends no acknowledgement.
    assert [(m["direction"], m["message"]) for m in listed["messages"]][-2:] == [
        ("received", "/command-invoke prime"),
        ("sent", "Primed."),
    ]
    assert all(m["timestamp"].endswith("Z") for m in listed["messages"])


@pytest.mark.parametrize("queued_format", ["dict", "list"])
async def test_one_message_at_a_time_per_conversation(queued_format: str) -> None:
    fake = FakeScar(queued_format=queued_format)  # type: ignore[arg-type]
    fake.add_repo("acme/widgets")
    fake.script("validate", "All checks passed ✅", delay=0.3)
    with FakeServer(fake.app) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.put("/test/mode", json={"mode": "batch"})
            for text in ("/repo widgets", "/command-invoke validate", "/command-invoke prime"):
                await say(http, text)
            await say(http, "/repo widgets", cid="other")
            await until(lambda: ACK in fake.sent_texts(CID))
            report = await stats(http)
            assert CID in report["activeConversationIds"]
            queued = report["queuedByConversation"]
            if queued_format == "dict":
                assert queued == {CID: 1}
            else:
                assert queued == [{"conversationId": CID, "queuedMessages": 1}]
            # Another conversation is not held up behind this one.
            await until(lambda: any("Switched to" in t for t in fake.sent_texts("other")))
            assert "prime" not in " ".join(fake.sent_texts(CID))

            await until(lambda: not fake.busy_conversations(), within=5)
            report = await stats(http)
            assert report["activeConversationIds"] == []
            assert report["queuedTotal"] == 0
            sent = fake.sent_texts(CID)
            assert sent[0].startswith("Switched to: widgets")
            assert sent[1:4] == [ACK, "All checks passed ✅", ACK]
            assert sent[4].startswith("Primed on acme/widgets")


async def test_repository_and_codebase_answers(http: httpx.AsyncClient, fake: FakeScar) -> None:
    assert await answer_to(fake, http, "/repo widgets") == NO_REPOSITORIES
    assert await answer_to(fake, http, "/command-invoke prime") == NO_CODEBASE
    assert await answer_to(fake, http, "hello") == NO_CODEBASE

    cloned = await answer_to(fake, http, "/clone https://github.com/acme/widgets")
    assert cloned.startswith("Repository cloned successfully!")
    assert fake.workspace == {"widgets"}
    assert fake.codebase(CID) == "widgets"
    again = await answer_to(fake, http, "/clone https://github.com/acme/widgets.git")
    assert again.startswith("Repository already cloned.")

    fake.workspace.add("gadgets-api")
    assert (await answer_to(fake, http, "/repo gadgets")).startswith("Switched to: gadgets-api")
    assert fake.codebase(CID) == "gadgets-api"  # SCAR takes a prefix, as the real one does
    assert (await answer_to(fake, http, "/repo widgets")).startswith("Switched to: widgets\n")
    missing = await answer_to(fake, http, "/repo zzz")
    assert missing.startswith("Repository not found: zzz")

    unknown = await answer_to(fake, http, "/frobnicate now")
    assert unknown.startswith("Unknown command: /frobnicate\n")
    absent = await answer_to(fake, http, "/command-invoke deploy")
    assert absent == "Command 'deploy' not found. Use /commands to see available."
    assert await answer_to(fake, http, "/command-invoke") == (
        "Usage: /command-invoke <name> [args...]"
    )


async def test_clone_failure(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.unclonable.add("secret")
    answer = await answer_to(fake, http, "/clone https://github.com/acme/secret")
    assert answer.startswith("Failed to clone repository:")
    assert "secret" not in fake.workspace


async def test_modes(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.add_repo("acme/widgets")
    fake.script("prime", "Part one.\n\nPart two.", progress=1, delay=0.02)
    assert fake.mode == "stream"  # SCAR's default
    bad = await http.put("/test/mode", json={"mode": "loud"})
    assert bad.status_code == 400
    assert "error" in bad.json()

    await answer_to(fake, http, "/repo widgets")
    await say(http, "/command-invoke prime")
    await until(lambda: "Part two." in fake.sent_texts(CID))
    assert fake.sent_texts(CID)[1:] == [
        "⏱️ Still working... (1m 0s, 7 tool calls)",
        "Part one.",
        "Part two.",
    ]

    response = await http.put("/test/mode", json={"mode": "batch"})
    assert response.json() == {"success": True, "mode": "batch"}
    assert (await http.delete(f"/test/messages/{CID}")).json() == {"success": True}
    assert fake.messages(CID) == []
    await say(http, "/command-invoke prime")
    await until(lambda: len(fake.sent_texts(CID)) == 3)
    assert fake.sent_texts(CID) == [
        ACK,
        "⏱️ Still working... (1m 0s, 7 tool calls)",
        "Part one.\n\nPart two.",
    ]


async def test_default_results_carry_what_the_workflow_parses(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    await http.put("/test/mode", json={"mode": "batch"})
    await answer_to(fake, http, "/clone https://github.com/octo/shop")
    fake.next_pr_number = 41

    async def result(text: str) -> str:
        before = len(fake.sent_texts(CID))
        await say(http, text)
        await until(lambda: len(fake.sent_texts(CID)) >= before + 2)
        return fake.sent_texts(CID)[before + 1]

    plan = await result('/command-invoke plan-feature-github "Add a login page"')
    assert ".agents/plans/add-a-login-page.md" in plan
    done = await result("/command-invoke execute-github .agents/plans/add-a-login-page.md")
    artifacts = parse_artifacts(done)
    assert artifacts.branch == "feature/add-a-login-page"
    assert artifacts.pr_url == "https://github.com/octo/shop/pull/41"
    done = await result("/command-invoke execute-github .agents/plans/x.md login-v2")
    assert parse_artifacts(done).branch == "login-v2"
    assert parse_artifacts(done).pr_number == 42
    assert await result("/command-invoke validate") == "All checks passed ✅"
    assert await result("/command-invoke merge-pr 42") == "Merged PR #42"
    assert (await result("/command-invoke prime")).startswith("Primed on octo/shop")


async def test_custom_commands_failures_and_hangs(http: httpx.AsyncClient, fake: FakeScar) -> None:
    await http.put("/test/mode", json={"mode": "batch"})
    fake.add_repo("acme/widgets")
    fake.on_command("echo", lambda args: f"echo: {args}")
    fake.script("broken", "disk full", fail=True)
    fake.hang("forever")
    await answer_to(fake, http, "/repo widgets")

    await say(http, '/command-invoke echo "hi there"')
    await until(lambda: 'echo: "hi there"' in fake.sent_texts(CID))
    await say(http, "/command-invoke broken")
    failed = "⚠️ Error: disk full. Try /reset if issue persists."
    await until(lambda: failed in fake.sent_texts(CID))

    await say(http, "/command-invoke forever")
    await until(lambda: fake.sent_texts(CID)[-1] == ACK)
    await asyncio.sleep(0.1)
    assert fake.sent_texts(CID)[-1] == ACK
    assert CID in (await stats(http))["activeConversationIds"]
    assert fake.invocations == [
        "/repo widgets",
        '/command-invoke echo "hi there"',
        "/command-invoke broken",
        "/command-invoke forever",
    ]


async def test_listing_only_sent_messages() -> None:
    fake = FakeScar(list_received=False)
    with FakeServer(fake.app) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await say(http, "/repo widgets")
            await until(lambda: bool(fake.sent_texts(CID)))
            listed = (await http.get(f"/test/messages/{CID}")).json()["messages"]
    assert [m["direction"] for m in listed] == ["sent"]
    assert [m["direction"] for m in fake.messages(CID)] == ["received", "sent"]


async def test_missing_routes_and_faults() -> None:
    fake = FakeScar(concurrency_route=False, mode_route=False)
    with FakeServer(fake.app) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/health/concurrency")).status_code == 404
            assert (await http.put("/test/mode", json={"mode": "batch"})).status_code == 404
            fake.fail_next(2, status=503)
            assert (await http.get("/health")).status_code == 503
            assert (await http.get(f"/test/messages/{CID}")).status_code == 503
            assert (await http.get("/health")).json() == {"status": "ok"}
