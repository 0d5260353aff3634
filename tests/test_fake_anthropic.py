"""The real anthropic SDK against tests.support.fake_anthropic over a real local port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import TextBlock, ToolUseBlock

from tests.support.fake_anthropic import DEFAULT_REPLY, FakeAnthropic
from tests.support.fake_http import FakeServer

KEY = "sk-ant-test-key"
MODEL = "claude-sonnet-4-6"
HELLO: list[Any] = [{"role": "user", "content": "Hello there"}]
NOTE_TOOL: Any = {
    "name": "record_note",
    "description": "Remember a note about the project.",
    "input_schema": {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
}


@pytest.fixture
def fake() -> FakeAnthropic:
    return FakeAnthropic(api_key=KEY)


@pytest.fixture
def server(fake: FakeAnthropic) -> Iterator[FakeServer]:
    with FakeServer(fake.app) as server:
        yield server


def _client(server: FakeServer, **options: Any) -> anthropic.AsyncAnthropic:
    settings: dict[str, Any] = {"api_key": KEY, "max_retries": 0, "timeout": 5.0}
    settings.update(options)
    return anthropic.AsyncAnthropic(base_url=server.url, **settings)


async def test_text_answer(fake: FakeAnthropic, server: FakeServer) -> None:
    fake.reply_text("Sounds like a plan.")
    async with _client(server) as client:
        message = await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.id.startswith("msg_")
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert len(message.content) == 1
    block = message.content[0]
    assert isinstance(block, TextBlock)
    assert block.text == "Sounds like a plan."
    assert fake.request_count == 1
    assert fake.requests[0]["messages"] == HELLO
    assert fake.requests[0]["max_tokens"] == 100


async def test_default_responder_and_custom_responder(
    fake: FakeAnthropic, server: FakeServer
) -> None:
    async with _client(server) as client:
        first = await client.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
        seen: list[dict[str, Any]] = []

        def responder(request: dict[str, Any]) -> str:
            seen.append(request)
            return "echo: " + str(request["messages"][-1]["content"])

        fake.responder = responder
        second = await client.messages.create(model=MODEL, max_tokens=50, messages=HELLO)

    assert isinstance(first.content[0], TextBlock)
    assert first.content[0].text == DEFAULT_REPLY
    assert isinstance(second.content[0], TextBlock)
    assert second.content[0].text == "echo: Hello there"
    assert seen[0]["model"] == MODEL


async def test_responder_can_answer_with_a_tool_call(
    fake: FakeAnthropic, server: FakeServer
) -> None:
    fake.responder = lambda _request: {
        "content": [{"type": "tool_use", "name": "record_note", "input": {"text": "x"}}]
    }
    async with _client(server) as client:
        message = await client.messages.create(
            model=MODEL, max_tokens=50, messages=HELLO, tools=[NOTE_TOOL]
        )

    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert isinstance(block, ToolUseBlock)
    assert block.id.startswith("toolu_")


async def test_tool_use_dialogue(fake: FakeAnthropic, server: FakeServer) -> None:
    tool_use_id = fake.reply_tool("record_note", {"text": "buy milk"}, text="Let me note that.")
    fake.reply_text("Noted!")
    async with _client(server) as client:
        first = await client.messages.create(
            model=MODEL, max_tokens=200, messages=HELLO, tools=[NOTE_TOOL]
        )
        assert first.stop_reason == "tool_use"
        text, tool_use = first.content
        assert isinstance(text, TextBlock)
        assert text.text == "Let me note that."
        assert isinstance(tool_use, ToolUseBlock)
        assert tool_use.id == tool_use_id
        assert tool_use.name == "record_note"
        assert tool_use.input == {"text": "buy milk"}

        dialogue: list[Any] = [
            *HELLO,
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True) for b in first.content],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "ok"}],
            },
        ]
        second = await client.messages.create(
            model=MODEL, max_tokens=200, messages=dialogue, tools=[NOTE_TOOL]
        )

    assert second.stop_reason == "end_turn"
    assert isinstance(second.content[0], TextBlock)
    assert second.content[0].text == "Noted!"
    assert fake.pending_replies == 0
    assert fake.requests[1]["messages"][2]["content"][0]["tool_use_id"] == tool_use_id


async def test_missing_tool_result_is_rejected_like_the_real_api(
    fake: FakeAnthropic, server: FakeServer
) -> None:
    dialogue: list[Any] = [
        *HELLO,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "record_note", "input": {}}],
        },
        {"role": "user", "content": "and then?"},
    ]
    async with _client(server) as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(model=MODEL, max_tokens=10, messages=dialogue)

    assert "toolu_1" in str(caught.value)


async def test_api_key_is_sent_as_bearer(fake: FakeAnthropic, server: FakeServer) -> None:
    async with _client(server) as client:
        await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert fake.last_headers["authorization"] == f"Bearer {KEY}"
    assert "anthropic-version" in fake.last_headers


async def test_x_api_key_header_is_accepted(fake: FakeAnthropic, server: FakeServer) -> None:
    # anthropic 2.12 sends api_key= as a Bearer token; older SDKs and curl use x-api-key.
    headers = {"Authorization": anthropic.omit, "x-api-key": KEY}
    async with _client(server, default_headers=headers) as client:
        message = await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert message.type == "message"
    assert fake.last_headers["x-api-key"] == KEY
    assert "authorization" not in fake.last_headers


async def test_auth_token_is_accepted(fake: FakeAnthropic, server: FakeServer) -> None:
    async with anthropic.AsyncAnthropic(
        auth_token=KEY, base_url=server.url, max_retries=0, timeout=5.0
    ) as client:
        message = await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert message.type == "message"
    assert fake.last_headers["authorization"] == f"Bearer {KEY}"


async def test_wrong_key_gets_authentication_error(server: FakeServer) -> None:
    async with _client(server, api_key="sk-wrong") as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert caught.value.status_code == 401
    assert caught.value.body is not None
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_missing_key_gets_error_envelope(server: FakeServer) -> None:
    response = httpx.post(
        server.url + "/v1/messages",
        json={"model": MODEL, "max_tokens": 10, "messages": HELLO},
    )

    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "authentication_error"


async def test_missing_max_tokens_is_a_bad_request(fake: FakeAnthropic, server: FakeServer) -> None:
    async with _client(server) as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            # The SDK checks the argument is passed; omit drops it from the JSON body.
            await client.messages.create(  # type: ignore[call-overload]
                model=MODEL, max_tokens=anthropic.omit, messages=HELLO
            )

    assert caught.value.status_code == 400
    assert caught.value.body is not None
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in caught.value.message
    assert "max_tokens" not in fake.requests[0]


@pytest.mark.parametrize(
    "body",
    [
        {"max_tokens": 10, "messages": HELLO},
        {"model": MODEL, "max_tokens": 10},
        {"model": MODEL, "max_tokens": 10, "messages": []},
        {"model": MODEL, "max_tokens": 0, "messages": HELLO},
        {"model": MODEL, "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]},
    ],
    ids=["no-model", "no-messages", "empty-messages", "zero-max-tokens", "bad-role"],
)
def test_invalid_requests_get_400(server: FakeServer, body: dict[str, Any]) -> None:
    response = httpx.post(server.url + "/v1/messages", json=body, headers={"x-api-key": KEY})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_overloaded_is_retried_by_the_sdk(fake: FakeAnthropic, server: FakeServer) -> None:
    fake.fail_next(1)
    fake.reply_text("made it")
    async with _client(server, max_retries=2) as client:
        message = await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "made it"
    assert fake.request_count == 2
    assert fake.last_headers["x-stainless-retry-count"] == "1"


async def test_fault_envelopes(fake: FakeAnthropic, server: FakeServer) -> None:
    fake.fail_next(2)
    async with _client(server) as client:
        with pytest.raises(anthropic.OverloadedError) as overloaded:
            await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
        fake.fail_next(1, status=500)
        with pytest.raises(anthropic.InternalServerError) as internal:
            await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
        # The second 529 was replaced by the new fail_next; this one succeeds.
        await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert internal.value.status_code == 500
    assert internal.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_down_fails_every_request_until_back_up(
    fake: FakeAnthropic, server: FakeServer
) -> None:
    fake.down = True
    async with _client(server, max_retries=1) as client:
        with pytest.raises(anthropic.InternalServerError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
        assert fake.request_count == 2
        with pytest.raises(anthropic.InternalServerError):
            await client.models.list()
        fake.down = False
        message = await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert message.stop_reason == "end_turn"


async def test_delay_trips_the_client_timeout(fake: FakeAnthropic, server: FakeServer) -> None:
    fake.delay_seconds = 1.0
    started = time.monotonic()
    async with _client(server, timeout=0.2) as client:
        with pytest.raises(anthropic.APITimeoutError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert time.monotonic() - started < 1.0
    assert fake.request_count == 1


async def test_usage_fields(fake: FakeAnthropic, server: FakeServer) -> None:
    fake.reply_text("x" * 40)
    async with _client(server) as client:
        message = await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    usage = message.usage
    assert usage.input_tokens >= 1
    # The content JSON: 40 characters of text plus the block's own keys.
    assert usage.output_tokens >= 10
    assert usage.cache_creation_input_tokens == 0
    assert usage.cache_read_input_tokens == 0


async def test_cache_control_prefix_is_created_then_read(
    fake: FakeAnthropic, server: FakeServer
) -> None:
    system: list[Any] = [
        {"type": "text", "text": "You are a helpful planner. " * 40},
        {"type": "text", "text": "Project facts.", "cache_control": {"type": "ephemeral"}},
    ]
    async with _client(server) as client:
        first = await client.messages.create(
            model=MODEL, max_tokens=10, system=system, messages=HELLO, tools=[NOTE_TOOL]
        )
        follow_up: list[Any] = [
            *HELLO,
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "Tell me more about the plan, in detail."},
        ]
        second = await client.messages.create(
            model=MODEL, max_tokens=10, system=system, messages=follow_up, tools=[NOTE_TOOL]
        )

    assert first.usage.cache_creation_input_tokens is not None
    assert first.usage.cache_creation_input_tokens > 250
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    # input_tokens counts only what follows the cached prefix.
    assert second.usage.input_tokens > first.usage.input_tokens
    assert second.usage.input_tokens < 100


async def test_models_list(server: FakeServer) -> None:
    async with _client(server) as client:
        page = await client.models.list()

    assert page.data
    assert page.data[0].type == "model"
    assert page.has_more is False


def test_models_list_needs_a_key(server: FakeServer) -> None:
    response = httpx.get(server.url + "/v1/models")

    assert response.status_code == 401
