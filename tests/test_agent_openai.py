"""LLM_PROVIDER=openai-compatible: the same agent against a fake OpenAI-compatible server
(vLLM, llama.cpp, Ollama) through the real `openai` SDK, on a real database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from project_orchestrator.agent.health import probe_ai
from project_orchestrator.agent.llm import AIUnavailable, ModelGateway
from project_orchestrator.agent.llm_openai import OpenAICompatibleBackend
from project_orchestrator.agent.llm_setup import build_gateway
from project_orchestrator.agent.models import ConversationMessage, TurnStatus
from project_orchestrator.agent.tools import TOOLS
from project_orchestrator.agent.turns import UNREADABLE_ARGUMENTS
from project_orchestrator.app import create_app
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database
from project_orchestrator.doctor_ai import check_ai
from project_orchestrator.doctor_results import CheckStatus
from project_orchestrator.projects.models import AiUsage
from project_orchestrator.vision.models import BrainstormNote
from tests.conftest import make_settings
from tests.support.agent_setup import Setup
from tests.support.fake_http import FakeServer, unused_tcp_url
from tests.support.fake_openai import FakeOpenAI

MODEL = "llama3.2"
SYSTEM = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
HELLO: list[dict[str, Any]] = [{"role": "user", "content": "Hello"}]
NOTE = {"topic": "who", "text": "Busy parents"}


@pytest.fixture
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    server_fake = FakeOpenAI(model=MODEL)
    with FakeServer(server_fake.app) as server:
        yield server_fake, server.url + "/v1"


def _settings(url: str, **values: Any) -> Settings:
    return Settings(
        _env_file=None,
        llm_provider="openai-compatible",
        llm_base_url=url,
        llm_model=values.pop("llm_model", MODEL),
        **values,
    )


def _gateway(url: str, **values: Any) -> ModelGateway:
    gateway = build_gateway(_settings(url, **values))
    assert gateway is not None
    return gateway


OpenAISetup = Setup[FakeOpenAI]


@pytest.fixture
async def setup(db: Database, fake: tuple[FakeOpenAI, str], tmp_path: Path) -> OpenAISetup:
    return await Setup(db, fake[0], _gateway(fake[1]), tmp_path).start()


# --- settings ----------------------------------------------------------------------------


def test_the_provider_needs_its_url_and_model() -> None:
    with pytest.raises(ValueError, match="LLM_BASE_URL and LLM_MODEL"):
        Settings(_env_file=None, llm_provider="openai-compatible")
    settings = _settings("http://127.0.0.1:11434/v1")
    assert settings.ai_configured
    assert settings.ai_model == MODEL
    # Anthropic stays the default, and without its key there is no model.
    assert not Settings(_env_file=None, llm_model=MODEL).ai_configured


def test_the_key_is_a_secret() -> None:
    settings = _settings("http://127.0.0.1:8000/v1", llm_api_key="local-key-123456")
    assert "local-key-123456" in settings.secret_values()
    assert "local-key-123456" not in repr(settings)


# --- the gateway -------------------------------------------------------------------------


async def test_a_text_reply_and_its_usage(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    server.reply_text("Hi there.")
    gateway = _gateway(url)
    tools = [TOOLS[0].definition()]
    reply = await gateway.create(system=SYSTEM, messages=HELLO, tools=tools)
    await gateway.aclose()

    assert reply.text == "Hi there."
    assert reply.stop_reason == "end_turn"
    assert reply.tool_calls == []
    assert reply.usage.input_tokens > 0
    assert reply.usage.output_tokens > 0
    [request] = server.requests
    assert request["model"] == MODEL
    assert request["max_tokens"] == gateway.max_output_tokens
    # One system message, with no Anthropic-only marks in it.
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    [tool] = request["tools"]
    assert tool == {
        "type": "function",
        "function": {
            "name": TOOLS[0].name,
            "description": TOOLS[0].description,
            "parameters": TOOLS[0].schema,
        },
    }
    # No LLM_API_KEY: a placeholder the keyless servers ignore.
    assert server.last_headers["authorization"] == "Bearer none"


async def test_tool_calls_go_out_and_their_results_come_back(
    fake: tuple[FakeOpenAI, str],
) -> None:
    server, url = fake
    call_id = server.reply_tool("record_brainstorm_note", NOTE, text="Let me note that.")
    server.reply_text("Noted.")
    gateway = _gateway(url)
    first = await gateway.create(system=SYSTEM, messages=list(HELLO), tools=[])
    [call] = first.tool_calls
    assert (call.id, call.name, call.input, call.arguments_error) == (
        call_id,
        "record_brainstorm_note",
        NOTE,
        None,
    )
    assert first.stop_reason == "tool_use"
    results = [
        {
            "type": "tool_result",
            "tool_use_id": call_id,
            "content": "Still missing",
            "is_error": True,
        }
    ]
    messages = [
        *HELLO,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": results},
    ]
    second = await gateway.create(system=SYSTEM, messages=messages, tools=[])
    await gateway.aclose()

    assert second.text == "Noted."
    sent = server.requests[1]["messages"]
    assert sent[2] == {
        "role": "assistant",
        "content": "Let me note that.",
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": "record_brainstorm_note", "arguments": json.dumps(NOTE)},
            }
        ],
    }
    # The format has no error flag: the text says it.
    assert sent[3] == {"role": "tool", "tool_call_id": call_id, "content": "Error: Still missing"}


async def test_a_forgotten_tool_result_is_refused_as_the_servers_refuse_it(
    fake: tuple[FakeOpenAI, str],
) -> None:
    server, url = fake
    call_id = server.reply_tool("get_project_status", {})
    gateway = _gateway(url)
    first = await gateway.create(system=SYSTEM, messages=list(HELLO), tools=[])
    assert first.tool_calls[0].id == call_id
    messages: list[dict[str, Any]] = [
        *HELLO,
        {"role": "assistant", "content": first.content},
        *HELLO,
    ]
    with pytest.raises(AIUnavailable, match="rejected the request \\(HTTP 400\\)"):
        await gateway.create(system=SYSTEM, messages=messages, tools=[])
    await gateway.aclose()


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        ('{"topic": "who", "text": "Busy', "not valid JSON"),
        ("{'topic': 'who'}", "not valid JSON"),
        ('["who", "Busy parents"]', "must be a JSON object, not list"),
        ('"who"', "must be a JSON object, not str"),
    ],
)
async def test_malformed_arguments_become_a_readable_error(
    fake: tuple[FakeOpenAI, str], arguments: str, why: str
) -> None:
    server, url = fake
    server.reply_raw_tool("record_brainstorm_note", arguments)
    gateway = _gateway(url)
    reply = await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()

    [call] = reply.tool_calls
    assert call.input == {}
    assert call.arguments_error is not None
    assert why in call.arguments_error


async def test_empty_arguments_are_an_empty_object(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    server.reply_raw_tool("get_project_status", "")
    gateway = _gateway(url)
    [call] = (await gateway.create(system=SYSTEM, messages=HELLO, tools=[])).tool_calls
    await gateway.aclose()
    assert (call.input, call.arguments_error) == ({}, None)


async def test_ollama_says_stop_after_tool_calls_and_they_still_count(
    fake: tuple[FakeOpenAI, str],
) -> None:
    server, url = fake
    server.tool_finish_reason = "stop"
    server.reply_tool("get_project_status", {})
    gateway = _gateway(url)
    reply = await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()
    assert reply.stop_reason == "end_turn"
    assert [c.name for c in reply.tool_calls] == ["get_project_status"]


async def test_cached_tokens_are_counted_apart(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    server.cached_tokens = 3
    gateway = _gateway(url)
    reply = await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()
    prompt = reply.usage.input_tokens + reply.usage.cache_read_tokens
    assert reply.usage.cache_read_tokens == 3
    assert reply.usage.prompt_tokens == prompt


async def test_a_server_that_reports_no_usage_is_estimated(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    server.report_usage = False
    server.reply_text("A fairly long answer " * 20)
    gateway = _gateway(url)
    reply = await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()
    # About four characters a token: a budget still sees the tokens.
    assert reply.usage.output_tokens >= len("A fairly long answer " * 20) // 4
    assert reply.usage.input_tokens > 0


async def test_the_key_is_sent_and_a_wrong_one_is_a_rejection(
    fake: tuple[FakeOpenAI, str],
) -> None:
    server, url = fake
    server.api_key = "right-key-0123456789"
    good = _gateway(url, llm_api_key="right-key-0123456789")
    assert (await good.create(system=SYSTEM, messages=HELLO, tools=[])).text
    assert server.last_headers["authorization"] == "Bearer right-key-0123456789"
    bad = _gateway(url, llm_api_key="wrong-key-0123456789")
    with pytest.raises(AIUnavailable, match="rejected the request \\(HTTP 401\\)"):
        await bad.create(system=SYSTEM, messages=HELLO, tools=[])
    await good.aclose()
    await bad.aclose()


async def test_failures_are_unavailable_and_open_the_breaker(
    fake: tuple[FakeOpenAI, str],
) -> None:
    server, url = fake
    gateway = _gateway(url)
    backend = gateway._backend
    assert isinstance(backend, OpenAICompatibleBackend)
    backend._client = backend._client.with_options(max_retries=0)
    server.fail_next(1, status=503)
    with pytest.raises(AIUnavailable, match="answered HTTP 503"):
        await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    wrong_model = _gateway(url, llm_model="qwen2.5")
    with pytest.raises(AIUnavailable, match="rejected the request \\(HTTP 404\\)"):
        await wrong_model.create(system=SYSTEM, messages=HELLO, tools=[])
    nowhere = _gateway(unused_tcp_url() + "/v1")
    nowhere_backend = nowhere._backend
    assert isinstance(nowhere_backend, OpenAICompatibleBackend)
    nowhere_backend._client = nowhere_backend._client.with_options(max_retries=0)
    with pytest.raises(AIUnavailable, match="could not be reached"):
        await nowhere.create(system=SYSTEM, messages=HELLO, tools=[])
    assert gateway.breaker.consecutive_failures == 1
    for each in (gateway, wrong_model, nowhere):
        await each.aclose()


# --- a whole turn ------------------------------------------------------------------------


async def test_a_turn_with_malformed_arguments_tells_the_model_and_loses_nothing(
    setup: OpenAISetup,
) -> None:
    setup.fake.reply_raw_tool("record_brainstorm_note", '{"topic": "who", "text": ')
    setup.fake.reply_tool("record_brainstorm_note", NOTE)
    setup.fake.reply_text("Noted: it is for busy parents.")

    assert await setup.say("It's for busy parents") == "Noted: it is for busy parents."

    second = setup.fake.requests[1]["messages"]
    told = second[-1]
    assert told["role"] == "tool"
    assert told["content"].startswith("Error: Not done: your call to record_brainstorm_note")
    assert "not valid JSON" in told["content"]
    assert UNREADABLE_ARGUMENTS.split("{")[0] in told["content"]
    async with setup.db.session_scope() as session:
        notes = (await session.execute(select(BrainstormNote))).scalars().all()
        messages = (await session.execute(select(ConversationMessage))).scalars().all()
        ledger = (await session.execute(select(AiUsage))).scalars().all()
    # The malformed call did nothing; the good one did it once.
    assert [(n.topic, n.text) for n in notes] == [("who", "Busy parents")]
    assert [m.content for m in messages] == [
        "It's for busy parents",
        "Noted: it is for busy parents.",
    ]
    assert await setup.turn_statuses() == [TurnStatus.ANSWERED]
    # The same accounting as Claude's: every round in the ledger, under the model's name.
    assert [row.model for row in ledger] == [MODEL] * 3
    assert (await setup.project()).ai_tokens_used == sum(
        row.input_tokens + row.output_tokens for row in ledger
    )


# --- probes ------------------------------------------------------------------------------


async def test_health_and_doctor_probe_the_configured_server(
    fake: tuple[FakeOpenAI, str],
) -> None:
    server, url = fake
    assert (await probe_ai(_settings(url))).state == "reachable"
    assert (await probe_ai(_settings(unused_tcp_url() + "/v1"))).state == "unreachable"
    server.down = True
    assert (await probe_ai(_settings(url))).state == "unreachable"
    server.down = False

    async with httpx.AsyncClient(timeout=5) as http:
        served = await check_ai(_settings(url), http)
        other = await check_ai(_settings(url, llm_model="qwen2.5"), http)
        no_v1 = await check_ai(_settings(url.removesuffix("/v1")), http)
        server.api_key = "right-key-0123456789"
        keyless = await check_ai(_settings(url), http)
    assert served.status is CheckStatus.OK
    assert MODEL in served.message
    assert other.status is CheckStatus.WARN
    assert f"it lists: {MODEL}" in other.message
    assert no_v1.status is CheckStatus.FAIL
    assert no_v1.hint is not None
    assert "/v1" in no_v1.hint
    assert keyless.status is CheckStatus.FAIL
    assert keyless.hint == "check LLM_API_KEY"


async def test_health_ai_reports_the_configured_server(
    fake: tuple[FakeOpenAI, str], tmp_path: Path, database_url: str, db: Database
) -> None:
    url = fake[1]
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        llm_provider="openai-compatible",
        llm_base_url=url,
        llm_model=MODEL,
    )
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            healthy = (await client.get("/health/ai")).json()
    assert healthy == {"status": "healthy", "ai_service": "reachable"}


async def test_malformed_arguments_are_never_sent_back(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    server.reply_raw_tool("record_brainstorm_note", '{"topic": ')
    server.reply_text("Sorry, once more.")
    gateway = _gateway(url)
    first = await gateway.create(system=SYSTEM, messages=list(HELLO), tools=[])
    [call] = first.tool_calls
    results = [
        {"type": "tool_result", "tool_use_id": call.id, "content": "unreadable", "is_error": True}
    ]
    messages: list[dict[str, Any]] = [
        *HELLO,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": results},
    ]
    # A server that re-reads earlier calls (vLLM) would refuse the bad text; it gets "{}".
    assert (await gateway.create(system=SYSTEM, messages=messages, tools=[])).text
    await gateway.aclose()
    assert server.requests[1]["messages"][2]["tool_calls"][0]["function"]["arguments"] == "{}"
