"""The fake SCAR behaves like SCAR (gpt153/scar at b28c35e), seen through plain HTTP."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from project_orchestrator.scar.parsing import parse_artifacts
from tests.support import fake_scar_texts as texts
from tests.support.fake_http import FakeServer
from tests.support.fake_scar import (
    ACK,
    CLAUDE_FAILURE,
    DEFAULT_COMMANDS,
    ENOENT_SCANDIR,
    NO_CODEBASE,
    NO_REPOSITORIES,
    FakeScar,
    slugify,
    split_args,
)

CID = "po-test"
URL = "https://github.com/acme/widgets"
CLONED_WIDGETS = (
    "Repository cloned successfully!\n\nCodebase: widgets\nPath: /workspace/widgets\n"
    "✓ Loaded 5 commands\n\nSession reset - starting fresh on next message.\n\n"
    "You can now start asking questions about the code."
)


@pytest.fixture
def fake() -> Iterator[FakeScar]:
    fake = FakeScar()
    yield fake
    assert fake.errors == []  # the fake never fell into its catch-all


@pytest.fixture
def server(fake: FakeScar) -> Iterator[FakeServer]:
    with FakeServer(fake.app) as server:
        yield server


@pytest.fixture
async def http(server: FakeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        yield client


@asynccontextmanager
async def serving(fake: FakeScar) -> AsyncIterator[httpx.AsyncClient]:
    with FakeServer(fake.app) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            yield client
    assert fake.errors == []


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


async def run(fake: FakeScar, http: httpx.AsyncClient, text: str, cid: str = CID) -> list[str]:
    """Send `text`, wait until SCAR is done with the conversation, return what it sent."""
    before = len(fake.sent_texts(cid))
    await say(http, text, cid)
    await until(lambda: cid not in fake.busy_conversations())
    return fake.sent_texts(cid)[before:]


async def answer(fake: FakeScar, http: httpx.AsyncClient, text: str, cid: str = CID) -> str:
    sent = await run(fake, http, text, cid)
    assert len(sent) == 1, sent
    return sent[0]


async def stats(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/health/concurrency")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def batch(http: httpx.AsyncClient) -> None:
    assert (await http.put("/test/mode", json={"mode": "batch"})).status_code == 200


# --- the HTTP surface ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"conversationId": CID}, "conversationId and message must be strings"),
        ({"conversationId": 7, "message": "/help"}, "conversationId and message must be strings"),
        ([CID, "/help"], "conversationId and message must be strings"),
        ({}, "conversationId and message must be strings"),
        ({"conversationId": "", "message": "/help"}, "conversationId and message required"),
        ({"conversationId": CID, "message": ""}, "conversationId and message required"),
    ],
)
async def test_bad_message_body_is_400(
    http: httpx.AsyncClient, fake: FakeScar, body: Any, error: str
) -> None:
    response = await http.post("/test/message", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert fake.invocations == []


@pytest.mark.parametrize("content", [b"{not json", b'"just a string"', b"7", b"NaN"])
async def test_invalid_json_is_a_400_html_page(
    http: httpx.AsyncClient, fake: FakeScar, content: bytes
) -> None:
    headers = {"content-type": "application/json"}
    response = await http.post("/test/message", content=content, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "<pre>Bad Request</pre>" in response.text
    assert fake.invocations == []


async def test_empty_json_body_is_an_empty_object(http: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    response = await http.post("/test/message", content=b"", headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "conversationId and message must be strings"}


async def test_non_json_body_is_500(http: httpx.AsyncClient, fake: FakeScar) -> None:
    response = await http.post("/test/message", data={"conversationId": CID, "message": "/help"})
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}
    bare = await http.post("/test/message", content=b'{"conversationId": "x", "message": "y"}')
    assert bare.status_code == 500  # no JSON content type: express.json leaves the body alone
    assert fake.invocations == []


async def test_unknown_routes_are_express_404_pages(http: httpx.AsyncClient) -> None:
    for method, path in [("GET", "/nope"), ("GET", "/test/message"), ("POST", "/health")]:
        response = await http.request(method, path)
        assert response.status_code == 404
        assert f"<pre>Cannot {method} {path}</pre>" in response.text
    assert (await http.get("/test/messages/")).status_code == 404


async def test_health_routes(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json() == {"status": "ok"}
    assert (await http.get("/health/db")).json() == {"status": "ok", "database": "connected"}
    assert await stats(http) == {
        "status": "ok",
        "active": 0,
        "queuedTotal": 0,
        "queuedByConversation": [],
        "maxConcurrent": 10,
        "activeConversationIds": [],
    }


async def test_older_scar_without_concurrency_and_mode_routes() -> None:
    fake = FakeScar(concurrency_route=False, mode_route=False)
    async with serving(fake) as http:
        response = await http.get("/health/concurrency")
        assert response.status_code == 404
        assert "Cannot GET /health/concurrency" in response.text
        assert (await http.put("/test/mode", json={"mode": "batch"})).status_code == 404
        assert (await http.get("/health")).status_code == 200


async def test_fail_next(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.fail_next(2, status=502, error="Bad gateway")
    first = await http.post("/test/message", json={"conversationId": CID, "message": "/help"})
    assert (first.status_code, first.json()) == (502, {"error": "Bad gateway"})
    assert (await http.get("/health")).status_code == 502
    assert (await http.get("/health")).status_code == 200
    assert fake.invocations == []  # the failed POST never reached SCAR


async def test_message_is_answered_at_once_and_listed_as_active_before(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.add_repo("acme/widgets")
    fake.script("prime", "Primed.", delay=0.3)
    await run(fake, http, "/repo widgets")
    started = time.monotonic()
    body = await say(http, "/command-invoke prime")
    report = await stats(http)
    assert time.monotonic() - started < 0.25
    assert body == {"success": True, "conversationId": CID, "message": "/command-invoke prime"}
    assert report["activeConversationIds"] == [CID]
    assert report["active"] == 1
    await until(lambda: CID not in fake.busy_conversations())
    assert fake.sent_texts(CID)[-1] == "Primed."
    assert (await stats(http))["activeConversationIds"] == []


async def test_listing_holds_only_sent_messages(http: httpx.AsyncClient, fake: FakeScar) -> None:
    await run(fake, http, "/getcwd")
    listed = (await http.get(f"/test/messages/{CID}")).json()
    assert listed["conversationId"] == CID
    [message] = listed["messages"]
    assert message["message"] == "Current working directory: Not set"
    assert message["direction"] == "sent"
    assert message["conversationId"] == CID
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", message["timestamp"])
    assert fake.messages(CID) == listed["messages"]
    unknown = (await http.get("/test/messages/nobody")).json()
    assert unknown == {"conversationId": "nobody", "messages": []}
    encoded = (await http.get("/test/messages/a%20b")).json()
    assert encoded["conversationId"] == "a b"


async def test_delete_clears_listings_only(http: httpx.AsyncClient, fake: FakeScar) -> None:
    await run(fake, http, f"/clone {URL}")
    await run(fake, http, "/getcwd", cid="other")
    assert (await http.delete(f"/test/messages/{CID}")).json() == {"success": True}
    assert fake.messages(CID) == []
    assert fake.sent_texts("other") != []
    assert (await http.delete("/test/messages")).json() == {"success": True}
    assert fake.sent_texts("other") == []
    assert fake.codebase(CID) == "widgets"  # the database is untouched
    assert await answer(fake, http, "/getcwd") == "Current working directory: /workspace/widgets"


async def test_mode_is_global_validated_and_defaults_to_stream(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    assert fake.mode == "stream"
    bad = await http.put("/test/mode", json={"mode": "loud"})
    assert (bad.status_code, bad.json()) == (400, {"error": 'mode must be "stream" or "batch"'})
    assert (await http.put("/test/mode", json=["batch"])).status_code == 400
    assert (await http.put("/test/mode", content=b"mode=batch")).status_code == 500
    good = await http.put("/test/mode", json={"mode": "batch"})
    assert good.json() == {"success": True, "mode": "batch"}
    assert str(fake.mode) == "batch"
    fake.add_repo("acme/widgets")
    for cid in ("one", "two"):  # every conversation is in batch mode now
        await run(fake, http, "/repo widgets", cid)
        assert (await run(fake, http, "/command-invoke validate", cid))[0] == ACK


# --- the conversation lock manager -------------------------------------------------------


async def test_one_message_at_a_time_per_conversation(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.add_repo("acme/widgets")
    fake.script("validate", "All checks passed ✅", delay=0.3)
    await run(fake, http, "/repo widgets")
    for _ in range(2):
        await say(http, "/command-invoke validate")
    report = await stats(http)
    assert report["activeConversationIds"] == [CID]
    assert report["queuedByConversation"] == [{"conversationId": CID, "queuedMessages": 1}]
    assert report["queuedTotal"] == 1
    # Another conversation is not held up behind this one.
    assert await answer(fake, http, "/getcwd", cid="other") == "Current working directory: Not set"
    assert fake.sent_texts(CID)[1:] == []

    await until(lambda: fake.sent_texts(CID)[1:] == ["All checks passed ✅"])
    report = await stats(http)
    # SCAR keeps the emptied queue listed while its last message runs.
    assert report["queuedByConversation"] == [{"conversationId": CID, "queuedMessages": 0}]
    assert report["activeConversationIds"] == [CID]
    await until(lambda: not fake.busy_conversations())
    report = await stats(http)
    assert (report["activeConversationIds"], report["queuedByConversation"]) == ([], [])
    assert fake.sent_texts(CID)[1:] == ["All checks passed ✅"] * 2


async def test_at_most_max_concurrent_conversations() -> None:
    fake = FakeScar(max_concurrent=1)
    fake.add_repo("acme/widgets")
    fake.script("validate", delay=0.2)
    async with serving(fake) as http:
        await run(fake, http, "/repo widgets")
        await say(http, "/command-invoke validate")
        await say(http, "/getcwd", cid="other")
        report = await stats(http)
        assert report["maxConcurrent"] == 1
        assert report["activeConversationIds"] == [CID]
        assert report["queuedByConversation"] == [{"conversationId": "other", "queuedMessages": 1}]
        assert fake.busy_conversations() == {CID, "other"}
        await until(lambda: not fake.busy_conversations())
        assert fake.sent_texts("other") == ["Current working directory: Not set"]


async def test_timings_and_invocations(http: httpx.AsyncClient, fake: FakeScar) -> None:
    await run(fake, http, "/help")
    await run(fake, http, "/getcwd", cid="other")
    assert fake.invocations == ["/help", "/getcwd"]
    assert [(cid, text) for cid, text, _, _ in fake.timings] == [
        (CID, "/help"),
        ("other", "/getcwd"),
    ]
    assert all(fake.builtin_delay / 2 <= end - start < 1 for _, _, start, end in fake.timings)


# --- /repo, /repos and the workspace -----------------------------------------------------


async def test_repo_usage_and_empty_workspace(http: httpx.AsyncClient, fake: FakeScar) -> None:
    assert await answer(fake, http, "/repo") == "Usage: /repo <number|name> [pull]"
    assert await answer(fake, http, "/repo widgets") == NO_REPOSITORIES
    assert await answer(fake, http, "/repos") == (
        "No repositories found in /workspace\n\nUse /clone <repo-url> to add one."
    )


async def test_repo_by_number_exact_name_then_prefix(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    for name in ("acme/app-server", "acme/app", "acme/zeta"):
        fake.add_repo(name)
    assert fake.workspace == {"app", "app-server", "zeta"}
    assert await answer(fake, http, "/repo 2") == (
        "Switched to: app-server\n✓ Loaded 5 commands\n\nReady to work!"
    )
    assert (await answer(fake, http, "/repo 1x")).startswith("Switched to: app\n")  # parseInt
    assert (await answer(fake, http, "/repo 3")).startswith("Switched to: zeta\n")
    assert (await answer(fake, http, "/repo app")).startswith("Switched to: app\n")
    assert fake.codebase(CID) == "app"
    assert (await answer(fake, http, "/repo app-")).startswith("Switched to: app-server\n")
    assert (await answer(fake, http, "/repo z")).startswith("Switched to: zeta\n")
    assert await answer(fake, http, "/repo 4") == (
        "Repository not found: 4\n\nUse /repos to see available repositories."
    )
    assert await answer(fake, http, "/repos") == (
        "Repositories:\n\n1. app\n2. app-server\n3. zeta ← active\n\n"
        "Use /repo <number|name> to switch"
    )


async def test_repo_without_commands_and_with_pull(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.add_repo("acme/bare", layout="none")
    assert await answer(fake, http, "/repo bare") == "Switched to: bare\n\nReady to work!"
    assert await answer(fake, http, "/repo bare PULL") == (
        "Switched to: bare\n✓ Pulled latest changes\n\nReady to work!"
    )
    assert fake.commands_of("bare") == set()
    assert await answer(fake, http, "/commands") == (
        "No commands registered.\n\nUse /command-set or /load-commands."
    )


async def test_missing_workspace_folder(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.add_repo("acme/widgets")
    fake.workspace_missing = True
    assert ENOENT_SCANDIR == "Failed: ENOENT: no such file or directory, scandir '/workspace'"
    assert await answer(fake, http, "/repo widgets") == ENOENT_SCANDIR
    assert await answer(fake, http, "/repos") == (
        "Failed to list repositories: ENOENT: no such file or directory, scandir '/workspace'"
    )
    cloned = await answer(fake, http, "/clone https://github.com/acme/gadgets")
    assert cloned.startswith("Failed to clone repository: ENOENT")
    assert "gadgets" not in fake.workspace
    fake.workspace_missing = False
    assert (await answer(fake, http, "/repo widgets")).startswith("Switched to: widgets")


# --- /clone -------------------------------------------------------------------------------


async def test_clone_success_links_and_loads_commands(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    assert await answer(fake, http, "/clone") == "Usage: /clone <repo-url>"
    assert await answer(fake, http, f"/clone {URL}/") == CLONED_WIDGETS
    assert fake.workspace == {"widgets"}
    assert fake.codebase(CID) == "widgets"
    assert fake.commands_of("widgets") == DEFAULT_COMMANDS
    assert fake.commands_of("acme/widgets") == DEFAULT_COMMANDS
    assert await answer(fake, http, "/commands") == (
        "Registered Commands:\n\nprime - .claude/commands/prime.md\n"
        "merge-pr - .claude/commands/merge-pr.md\nvalidate - .claude/commands/validate.md\n"
        "execute-github - .claude/commands/execute-github.md\n"
        "plan-feature-github - .claude/commands/plan-feature-github.md\n"
    )  # JSONB key order: shortest first


@pytest.mark.parametrize(
    ("url", "folder"),
    [
        ("https://github.com/acme/site.github.io", "sitehub.io"),
        ("https://github.com/acme/widgets.git", "widgets"),
        ("https://github.com/acme/a.git.git", "a.git"),
        ("git@github.com:acme/tools.git", "tools"),
    ],
)
async def test_clone_folder_name(
    http: httpx.AsyncClient, fake: FakeScar, url: str, folder: str
) -> None:
    cloned = await answer(fake, http, f"/clone {url}")
    assert f"\nCodebase: {folder}\nPath: /workspace/{folder}\n" in cloned
    assert fake.workspace == {folder}


async def test_clone_again_links_the_existing_codebase(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.add_repo("acme/widgets")
    fake.remote("acme/bare", layout="none")
    again = await answer(fake, http, f"/clone {URL}.git")
    assert again == (
        "Repository already cloned.\n\nLinked to existing codebase: widgets\n"
        "Path: /workspace/widgets\n\nSession reset - starting fresh on next message.\n\n"
        "📁 Found: .claude/commands/\nUse /load-commands .claude/commands to register commands."
    )
    assert fake.codebase(CID) == "widgets"
    await run(fake, http, "/clone https://github.com/acme/bare")
    bare = await answer(fake, http, "/clone https://github.com/acme/bare")
    assert bare.endswith("Session reset - starting fresh on next message.")
    # The same folder name from another owner is not that codebase.
    other = await answer(fake, http, "/clone https://github.com/octo/widgets")
    assert other == (
        "Directory already exists: /workspace/widgets\n\nNo matching codebase found in "
        "database. Options:\n- Remove the directory and re-clone\n"
        "- Use /setcwd /workspace/widgets (limited functionality)"
    )
    assert fake.codebase(CID) == "bare"


async def test_clone_of_a_template_repository(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.remote("acme/shop", layout="template")
    cloned = await answer(fake, http, "/clone https://github.com/acme/shop")
    # Every .md file below .claude/commands counts, duplicate names too (rca, prime-proj).
    assert "\n✓ Loaded 46 commands\n" in cloned
    commands = fake.commands_of("shop")
    assert {"prime", "plan-feature", "execute", "rca", "validate", "merge-pr"} <= commands
    assert not {"plan-feature-github", "execute-github"} & commands
    files = fake.workspace_files("shop")
    assert ".agents/commands/plan-feature-github.md" in files
    again = await answer(fake, http, "/clone https://github.com/acme/shop")
    assert "📁 Found: .claude/commands/" in again


async def test_clone_of_a_repository_without_commands(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.remote("acme/plain", layout="none", files={"README.md": "# Plain\n"})
    cloned = await answer(fake, http, "/clone https://github.com/acme/plain")
    assert "Loaded" not in cloned
    assert cloned.startswith("Repository cloned successfully!\n\nCodebase: plain\n")
    assert fake.workspace_files("plain") == {"README.md": "# Plain\n"}


async def test_clone_failure(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.unclonable.update({"acme/secret", "hidden"})
    failed = await answer(fake, http, "/clone https://github.com/acme/secret")
    assert failed.startswith(
        "Failed to clone repository: Command failed: git clone https://github.com/acme/secret "
        "/workspace/secret\n"
    )
    assert "fatal: repository 'https://github.com/acme/secret/' not found" in failed
    hidden = await answer(fake, http, "/clone https://github.com/octo/hidden.git")
    assert hidden.startswith("Failed to clone repository:")
    assert fake.workspace == frozenset()
    assert fake.codebase(CID) is None


# --- commands per codebase ----------------------------------------------------------------


async def test_load_commands_adds_to_the_codebase(http: httpx.AsyncClient, fake: FakeScar) -> None:
    assert await answer(fake, http, "/load-commands") == "Usage: /load-commands <folder>"
    assert await answer(fake, http, "/load-commands .agents/commands") == "No codebase configured."
    assert await answer(fake, http, "/commands") == "No codebase configured."
    fake.add_repo("acme/shop", layout="template")
    await run(fake, http, "/repo shop")
    assert await answer(fake, http, "/command-invoke plan-feature-github x") == (
        "Command 'plan-feature-github' not found. Use /commands to see available."
    )
    assert await answer(fake, http, "/load-commands .agents/commands") == (
        "Loaded 5 commands recursively: execute-github, execute, plan-feature-github, "
        "plan-feature, prime"
    )
    commands = fake.commands_of("shop")
    assert {"plan-feature-github", "execute-github", "validate", "rca"} <= commands
    assert await answer(fake, http, "/load-commands docs") == (
        "Failed: ENOENT: no such file or directory, scandir '/workspace/shop/docs'"
    )
    assert await answer(fake, http, "/load-commands ../../etc") == (
        "Path must be within /workspace directory"
    )
    # Commands live in SCAR's database: another conversation and a restart keep them.
    fake.restart()
    await run(fake, http, "/repo shop", cid="other")
    assert fake.commands_of("shop") == commands
    executed = await run(fake, http, "/command-invoke execute-github p.md b", cid="other")
    assert executed[0].startswith("## ✅ Implementation Complete")


async def test_load_commands_finds_nothing(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.remote("acme/docs", layout="none", files={"notes/a.txt": "x", "notes/.b.md": "hidden"})
    await run(fake, http, "/clone https://github.com/acme/docs")
    assert await answer(fake, http, "/load-commands notes") == (
        "No .md files found in notes (searched recursively)"
    )
    assert await answer(fake, http, "/load-commands notes/a.txt") == (
        "Failed: ENOTDIR: not a directory, scandir '/workspace/docs/notes/a.txt'"
    )


async def test_add_commands_registers_on_one_codebase(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.add_repo("acme/widgets", layout="none")
    fake.add_repo("acme/gadgets", layout="none")
    fake.add_commands("acme/widgets", ["deploy"])
    fake.script("deploy", "Deployed.")
    assert fake.commands_of("widgets") == {"deploy"}
    assert fake.commands_of("gadgets") == set()
    await run(fake, http, "/repo widgets")
    assert await run(fake, http, "/command-invoke deploy now") == ["Deployed."]
    await run(fake, http, "/repo gadgets")
    assert await answer(fake, http, "/command-invoke deploy") == (
        "Command 'deploy' not found. Use /commands to see available."
    )
    with pytest.raises(KeyError):
        fake.add_commands("nobody", ["x"])


async def test_a_command_whose_file_is_gone(http: httpx.AsyncClient, fake: FakeScar) -> None:
    files = {"docs/guide.md": "# Guide\n"}
    fake.remote("acme/widgets", files=files)
    await run(fake, http, f"/clone {URL}")
    await run(fake, http, "/load-commands docs")
    fake.remote("acme/widgets")  # upstream drops docs/
    await run(fake, http, "/repo widgets pull")
    assert await answer(fake, http, "/command-invoke guide") == (
        "Failed to read command file: ENOENT: no such file or directory, "
        "open '/workspace/widgets/docs/guide.md'"
    )


# --- routing messages ---------------------------------------------------------------------


async def test_command_invoke_and_unknown_commands(http: httpx.AsyncClient, fake: FakeScar) -> None:
    assert await answer(fake, http, "/command-invoke") == "Usage: /command-invoke <name> [args...]"
    assert await answer(fake, http, "/command-invoke prime") == NO_CODEBASE
    assert await answer(fake, http, "hello there") == NO_CODEBASE
    assert await answer(fake, http, "/frobnicate now") == (
        "Unknown command: /frobnicate\n\n"
        "Type /help for available commands or /templates for command templates."
    )
    assert fake.ai_runs == []


async def test_global_templates_and_plain_text_run_ai(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.script("plan", "A plan.")
    assert await run(fake, http, '/plan "dark mode" now') == ["A plan."]  # no codebase needed
    fake.add_repo("acme/widgets")
    await run(fake, http, "/repo widgets")
    fake.on_command("router", lambda text: f"routed: {text}")
    assert await run(fake, http, "what does it do?") == ["routed: what does it do?"]
    plan, chat = fake.ai_runs
    assert (plan.command, plan.args, plan.args_text, plan.codebase) == (
        "plan",
        ("dark mode", "now"),
        '"dark mode" now',
        None,
    )
    assert (chat.command, chat.args, chat.codebase) == ("router", ("what does it do?",), "widgets")


async def test_status_reset_help_getcwd_templates(http: httpx.AsyncClient, fake: FakeScar) -> None:
    assert await answer(fake, http, "/status") == (
        "Platform: test\nAI Assistant: claude\n\n"
        "No codebase configured. Use /clone <repo-url> to get started.\n\n"
        "Current Working Directory: Not set"
    )
    assert await answer(fake, http, "/reset") == "No active session to reset."
    await run(fake, http, f"/clone {URL}")
    await run(fake, http, "/command-invoke prime")
    status = await answer(fake, http, "/status")
    assert status.startswith(
        "Platform: test\nAI Assistant: claude\n\nCodebase: widgets\n"
        f"Repository: {URL}\n\nCurrent Working Directory: /workspace/widgets\nActive Session: "
    )
    assert re.search(r"Active Session: [0-9a-f-]{8}\.\.\.$", status)
    assert await answer(fake, http, "/reset") == (
        "Session cleared. Starting fresh on next message.\n\nCodebase configuration preserved."
    )
    assert fake.session(CID) is None
    assert fake.codebase(CID) == "widgets"
    assert (await answer(fake, http, "/help")).startswith(
        "Available Commands:\n\nProject Management:\n  /new-topic <name>"
    )
    assert await answer(fake, http, "/getcwd") == "Current working directory: /workspace/widgets"
    templates = await answer(fake, http, "/templates")
    assert templates.startswith("Command Templates:\n\n/changelog-entry - ")
    assert "/router - Route natural language requests to the appropriate workflow\n" in templates


# --- AI commands --------------------------------------------------------------------------


async def test_batch_mode_ack_heartbeats_and_one_joined_answer(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.add_repo("acme/widgets")
    fake.script(
        "prime",
        turns=["Reading the code.", "🔍 Searching docs\n\nIt is a web shop.\n\nDone."],
        tools=[("Read", "README.md"), ("Bash", "ls"), ("Grep", "TODO")],
        progress=2,
        delay=0.06,
    )
    await batch(http)
    await run(fake, http, "/repo widgets")
    sent = await run(fake, http, "/command-invoke prime")
    assert sent[0] == ACK
    assert [s for s in sent if s.startswith("⏱️")] == [
        "⏱️ Still working... (1m 0s, 1 tool calls)",  # 5 events spread over 3 "minutes"
        "⏱️ Still working... (2m 0s, 3 tool calls)",
    ]
    assert sent[-1] == "Reading the code.\n\n---\n\nIt is a web shop.\n\nDone."
    assert len(sent) == 4


async def test_stream_mode_sends_each_block_and_tool_call(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.add_repo("acme/widgets")
    long_command = "x" * 120
    fake.script(
        "prime",
        turns=["Looking.", ("Edit", {"file_path": "a.py"}), "", "Done."],
        tools=[("Read", "README.md"), ("Bash", long_command), ("mcp__archon__search", None)],
        progress=3,
    )
    await run(fake, http, "/repo widgets")
    assert await run(fake, http, "/command-invoke prime") == [
        "🔧 READ\nReading: README.md",
        f"🔧 BASH\n{'x' * 100}...",
        "🔧 MCP__ARCHON__SEARCH",
        "Looking.",
        "🔧 EDIT\nEditing: a.py",
        "Done.",
    ]  # no acknowledgement, no heartbeat, no empty block


async def test_default_results_carry_what_the_workflow_parses(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    await batch(http)
    await run(fake, http, "/clone https://github.com/octo/site.github.io")
    fake.next_pr_number = 41

    async def result(text: str) -> str:
        sent = await run(fake, http, text)
        assert sent[0] == ACK
        return sent[-1]

    plan = await result('/command-invoke plan-feature-github "Add a login page" now')
    assert plan.startswith(
        "## 📋 Implementation Plan Created\n\n**Feature Branch:** `feature-add-a-login-page-now`\n"
        "**Plan Location:** `.agents/plans/add-a-login-page-now.md`\n\n"
    )
    done = await result("/command-invoke execute-github .agents/plans/login.md feature-login")
    assert done.startswith(
        "## ✅ Implementation Complete\n\n**Feature Branch:** `feature-login`\n"
        "**Implementation Plan:** `.agents/plans/login.md`\n"
        "**Pull Request:** https://github.com/octo/site.github.io/pull/41"
    )
    artifacts = parse_artifacts(done)
    assert (artifacts.branch, artifacts.pr_number) == ("feature-login", 41)
    again = await result("/command-invoke execute-github .agents/plans/login.md")
    assert parse_artifacts(again).branch == "feature-login"
    assert fake.next_pr_number == 43
    assert await result("/command-invoke validate") == "All checks passed ✅"
    assert await result("/command-invoke merge-pr 42") == texts.merged(42)
    assert (await result("/command-invoke prime")).startswith("## Project Overview")


async def test_scripted_results_and_bot_name() -> None:
    fake = FakeScar(bot_name="Scar")
    fake.add_repo("acme/widgets")
    fake.on_command("prime", lambda args: f"args were: {args}")
    async with serving(fake) as http:
        await batch(http)
        await run(fake, http, "/repo widgets")
        sent = await run(fake, http, "/command-invoke prime  'a b'  c")
    assert sent == ["Scar is on the case...", "args were: 'a b'  c"]
    assert fake.ai_runs[0].args == ("a b", "c")


async def test_sessions(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.add_repo("acme/widgets")
    await run(fake, http, "/repo widgets")
    for command in ("prime", "plan-feature-github x", "execute-github p.md b", "validate"):
        await run(fake, http, f"/command-invoke {command}")
    await run(fake, http, "/repo widgets")
    await run(fake, http, "/command-invoke prime")
    await run(fake, http, "/command-invoke prime", cid="other")  # no codebase: not an AI run
    await run(fake, http, "/repo widgets", cid="other")
    await run(fake, http, "/command-invoke validate", cid="other")
    runs = [(r.conversation_id, r.command, r.session, r.session_commands) for r in fake.ai_runs]
    assert runs == [
        (CID, "prime", 1, ()),
        (CID, "plan-feature-github", 1, ("prime",)),
        (CID, "execute-github", 2, ()),  # SCAR's plan -> execute transition: a fresh session
        (CID, "validate", 2, ("execute-github",)),
        (CID, "prime", 3, ()),  # /repo reset the session
        ("other", "validate", 4, ()),
    ]
    assert fake.session(CID) == 3
    await run(fake, http, "/reset")
    await run(fake, http, "/command-invoke validate")
    await run(fake, http, f"/clone {URL}")  # already cloned: still a reset
    await run(fake, http, "/command-invoke validate")
    assert [r.session for r in fake.ai_runs[-2:]] == [5, 6]


async def test_claude_failures_keep_the_session(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.add_repo("acme/widgets")
    await run(fake, http, "/repo widgets")
    await run(fake, http, "/command-invoke prime")
    fake.claude_failures(2)
    # Stream mode: Claude Code's own error text comes through first, as on the real SCAR.
    assert await run(fake, http, "/command-invoke validate") == [
        "API Error: Connection error.",
        CLAUDE_FAILURE,
    ]
    await batch(http)
    assert await run(fake, http, "/command-invoke validate") == [ACK, CLAUDE_FAILURE]
    assert await run(fake, http, "/command-invoke validate") == [ACK, "All checks passed ✅"]
    assert CLAUDE_FAILURE == (
        "⚠️ Error: Claude Code process exited with code 1. Try /reset if issue persists."
    )
    # Failed runs stay in the same session and add nothing to what it has done.
    assert [(r.session, r.session_commands) for r in fake.ai_runs] == [
        (1, ()),
        (1, ("prime",)),
        (1, ("prime",)),
        (1, ("prime",)),
    ]


async def test_scripted_failure_streams_its_tools_first(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.add_repo("acme/widgets")
    fake.script("prime", "never shown", fail=True, tools=[("Glob", "**/*.py")])
    await run(fake, http, "/repo widgets")
    assert await run(fake, http, "/command-invoke prime") == [
        "🔧 GLOB\nPattern: **/*.py",
        "API Error: Connection error.",
        CLAUDE_FAILURE,
    ]
    await batch(http)
    assert await run(fake, http, "/command-invoke prime") == [ACK, CLAUDE_FAILURE]


async def test_hang_until_restart(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.add_repo("acme/widgets")
    fake.hang("prime")
    await batch(http)
    await run(fake, http, "/repo widgets")
    await say(http, "/command-invoke prime")
    await say(http, "/command-invoke validate")
    await until(lambda: fake.sent_texts(CID)[-1:] == [ACK])
    await asyncio.sleep(0.1)
    assert fake.sent_texts(CID)[-1] == ACK
    report = await stats(http)
    assert report["activeConversationIds"] == [CID]
    assert report["queuedTotal"] == 1

    fake.restart()
    assert fake.busy_conversations() == set()
    report = await stats(http)
    assert (report["activeConversationIds"], report["queuedByConversation"]) == ([], [])
    assert fake.sent_texts(CID) == []
    assert fake.mode == "stream"
    await asyncio.sleep(0.05)
    assert fake.sent_texts(CID) == []  # the queued validate is gone too
    # The hang is forgotten; the conversation still has its codebase.
    resumed = await run(fake, http, "/command-invoke prime")
    assert resumed[0].startswith("## Project Overview")


async def test_restart_forgets_mode_messages_and_work_in_flight(
    http: httpx.AsyncClient, fake: FakeScar
) -> None:
    fake.script("validate", delay=0.2)
    await batch(http)
    await run(fake, http, f"/clone {URL}")
    await run(fake, http, "/command-invoke prime")
    session = fake.session(CID)
    await say(http, "/command-invoke validate")
    await until(lambda: fake.sent_texts(CID)[-1:] == [ACK])
    fake.restart()
    assert (await http.get(f"/test/messages/{CID}")).json()["messages"] == []
    await asyncio.sleep(0.3)
    assert fake.sent_texts(CID) == []  # the command in flight never answers
    assert fake.mode == "stream"
    assert fake.restarts == 1
    # What SCAR's database holds survives.
    assert fake.workspace == {"widgets"}
    assert fake.codebase(CID) == "widgets"
    assert fake.session(CID) == session
    assert fake.commands_of("widgets") == DEFAULT_COMMANDS
    await run(fake, http, "/command-invoke merge-pr 3")
    assert fake.ai_runs[-1].session_commands == ("prime",)  # validate never completed
    assert fake.sent_texts(CID) == [texts.merged(3)]
    assert fake.invocations[-2:] == ["/command-invoke validate", "/command-invoke merge-pr 3"]


async def test_restart_when_an_ai_command_starts(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.add_repo("acme/widgets")
    fake.restart_when("plan-feature-github")
    await batch(http)
    fake.script("prime", delay=0.1)
    await run(fake, http, "/repo widgets")
    for command in ("prime", "plan-feature-github x", "validate"):
        await say(http, f"/command-invoke {command}")
    await until(lambda: fake.restarts == 1)
    await asyncio.sleep(0.05)
    assert fake.sent_texts(CID) == []  # prime's answer is forgotten, validate never ran
    assert fake.busy_conversations() == set()
    assert [r.command for r in fake.ai_runs] == ["prime", "plan-feature-github"]
    assert fake.mode == "stream"
    # Once only.
    assert (await run(fake, http, "/command-invoke plan-feature-github x"))[0].startswith("## 📋")
    assert fake.restarts == 1


async def test_restart_when_a_builtin_starts(http: httpx.AsyncClient, fake: FakeScar) -> None:
    fake.restart_when("clone")
    await say(http, f"/clone {URL}")
    await until(lambda: fake.restarts == 1)
    await asyncio.sleep(0.05)
    assert fake.workspace == frozenset()
    assert fake.sent_texts(CID) == []
    assert await answer(fake, http, f"/clone {URL}") == CLONED_WIDGETS


# --- files --------------------------------------------------------------------------------


async def test_files_source_snapshots_on_clone_and_pull() -> None:
    upstream = {"README.md": "v1"}
    calls: list[str] = []

    def source(full_name: str) -> dict[str, str]:
        calls.append(full_name)
        return dict(upstream)

    fake = FakeScar(files_source=source)
    fake.remote("acme/widgets", layout="none", files={"LICENSE": "MIT"})
    async with serving(fake) as http:
        await run(fake, http, f"/clone {URL}")
        assert fake.workspace_files("widgets") == {"LICENSE": "MIT", "README.md": "v1"}
        upstream["README.md"] = "v2"
        await run(fake, http, "/repo widgets")
        await run(fake, http, "hello")
        assert fake.workspace_files("widgets")["README.md"] == "v1"  # no pull, no change
        await run(fake, http, "/repo widgets pull")
        await run(fake, http, "hello")
    assert calls == ["acme/widgets", "acme/widgets"]
    assert [r.files["README.md"] for r in fake.ai_runs] == ["v1", "v2"]


async def test_add_repo_declares_the_workspace_folder(fake: FakeScar) -> None:
    fake.remote("acme/site.github.io", layout="template", files={"index.html": "<p>"})
    assert fake.add_repo("acme/site.github.io") == "sitehub.io"
    assert "index.html" in fake.workspace_files("sitehub.io")
    assert "plan-feature-github" not in fake.commands_of("acme/site.github.io")
    assert "rca" in fake.commands_of("sitehub.io")
    with pytest.raises(ValueError, match="already"):
        fake.add_repo("acme/site.github.io")


# --- pure helpers -------------------------------------------------------------------------


def test_split_args_and_slugify() -> None:
    assert split_args("""a "b c" 'd e' f"g" "" '""") == ["a", "b c", "d e", 'f"g"', "", ""]
    assert slugify("Add a LOGIN page, with 2FA and more words") == "add-a-login-page-with-2fa"
    assert slugify("!!!") == "feature"


def test_tool_formatting_follows_scar() -> None:
    assert texts.format_tool_call("Write", "a.py") == "🔧 WRITE\nWriting: a.py"
    assert texts.format_tool_call("Grep", {"pattern": "x"}) == "🔧 GREP\nSearching: x"
    assert texts.format_tool_call("Task", "explore") == '🔧 TASK\n{"description":"explore"}'
    assert texts.format_tool_call("Bash", {}) == "🔧 BASH\n{}"
    long = texts.format_tool_call("Task", {"prompt": "p" * 100})
    assert long.split("\n")[1] == '{"prompt":"' + "p" * 69 + "..."


def test_batch_message_follows_scar() -> None:
    assert texts.batch_message([]) == ""
    assert texts.batch_message(["💭 thinking"]) == "💭 thinking"  # all filtered: keep all
    joined = texts.batch_message(["a\n\n✏️ edit\n\nb", "  📂 files", "c"])
    assert joined == "a\n\nb\n\n---\n\n---\n\nc"
