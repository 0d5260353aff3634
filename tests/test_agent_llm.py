"""The circuit breaker (with a fake clock) and the model gateway against the fake Anthropic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from project_orchestrator import metrics
from project_orchestrator.agent import llm
from project_orchestrator.agent.breaker import CircuitBreaker
from project_orchestrator.agent.llm import (
    AIUnavailable,
    ModelGateway,
    ModelReply,
    TokenUsage,
    ToolCall,
)
from project_orchestrator.agent.llm_anthropic import AnthropicBackend
from project_orchestrator.agent.llm_setup import build_gateway
from project_orchestrator.config import Settings
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_http import FakeServer, unused_tcp_url
from tests.support.logs import RecordingLogger

KEY = "sk-ant-secret-key-0123456789"
MODEL = "claude-sonnet-4-6"
SYSTEM: list[dict[str, Any]] = [{"type": "text", "text": "You help people plan software."}]
HELLO: list[dict[str, Any]] = [{"role": "user", "content": "I want a todo app"}]
NOTE_TOOL: dict[str, Any] = {
    "name": "record_note",
    "description": "Remember a note about the project.",
    "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- circuit breaker ----------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, reset_after_seconds=30.0, clock=clock)


def _trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        assert breaker.allow()
        breaker.record_failure()


def test_breaker_starts_closed() -> None:
    breaker = CircuitBreaker()

    assert breaker.state == "closed"
    assert breaker.allow()
    assert breaker.opened_at is None


def test_breaker_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = _breaker(clock)

    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.record_failure()

    assert breaker.state == "open"
    assert breaker.opened_at == clock.now
    assert not breaker.allow()


def test_breaker_success_resets_the_failure_count(clock: FakeClock) -> None:
    breaker = _breaker(clock)

    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()

    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 2


def test_breaker_half_opens_after_the_wait_and_admits_one_trial(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _trip(breaker)

    clock.advance(29.9)
    assert breaker.state == "open"
    assert not breaker.allow()

    clock.advance(0.1)
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()  # only one trial at a time
    assert breaker.state == "half_open"


def test_breaker_trial_success_closes(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _trip(breaker)
    clock.advance(30)
    assert breaker.allow()

    breaker.record_success()

    assert breaker.state == "closed"
    assert breaker.opened_at is None
    assert breaker.allow()
    assert breaker.allow()
    # It takes a full run of failures again to reopen.
    breaker.record_failure()
    assert breaker.state == "closed"


def test_breaker_trial_failure_reopens_for_another_wait(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _trip(breaker)
    clock.advance(30)
    assert breaker.allow()

    breaker.record_failure()

    assert breaker.state == "open"
    assert breaker.opened_at == clock.now
    assert not breaker.allow()
    clock.advance(30)
    assert breaker.state == "half_open"
    assert breaker.allow()


def test_breaker_late_failures_while_open_do_not_extend_the_wait(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _trip(breaker)
    opened_at = breaker.opened_at

    clock.advance(10)
    breaker.record_failure()  # a call sent before it opened, failing late

    assert breaker.opened_at == opened_at
    clock.advance(20)
    assert breaker.allow()


def test_breaker_trial_that_never_reports_does_not_wedge_it(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _trip(breaker)
    clock.advance(30)
    assert breaker.allow()  # this trial is then cancelled and never reports

    clock.advance(29)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


@pytest.mark.parametrize(
    ("threshold", "reset"), [(0, 30.0), (3, -1.0)], ids=["no-threshold", "negative-wait"]
)
def test_breaker_rejects_nonsense_settings(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError, match="must"):
        CircuitBreaker(failure_threshold=threshold, reset_after_seconds=reset)


# --- value objects ------------------------------------------------------------------------


def test_model_reply_views() -> None:
    reply = ModelReply(
        content=[
            {"type": "text", "text": "Noting "},
            {"type": "tool_use", "id": "toolu_1", "name": "record_note", "input": {"t": 1}},
            {"type": "text", "text": "that."},
        ],
        stop_reason="tool_use",
        usage=TokenUsage(input_tokens=10, output_tokens=5, cache_read_tokens=100),
    )

    assert reply.text == "Noting that."
    assert reply.tool_calls == [ToolCall(id="toolu_1", name="record_note", input={"t": 1})]
    assert reply.usage.total == 115


# --- model gateway ------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakeAnthropic:
    return FakeAnthropic(api_key=KEY)


@pytest.fixture
def server(fake: FakeAnthropic) -> Iterator[FakeServer]:
    with FakeServer(fake.app) as server:
        yield server


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> RecordingLogger:
    recorder = RecordingLogger()
    monkeypatch.setattr(llm, "log", recorder)
    return recorder


def _gateway(
    url: str,
    clock: FakeClock,
    *,
    api_key: str = KEY,
    max_retries: int = 0,
    timeout: float = 5.0,
) -> ModelGateway:
    client = anthropic.AsyncAnthropic(
        api_key=api_key, base_url=url, max_retries=max_retries, timeout=timeout
    )
    return ModelGateway(AnthropicBackend(client), MODEL, _breaker(clock), max_output_tokens=300)


def _tokens(direction: str) -> float:
    value: float = metrics.ai_tokens_total.labels(direction)._value.get()
    return value


async def test_gateway_returns_reply_with_tool_calls(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock
) -> None:
    tool_use_id = fake.reply_tool("record_note", {"text": "todo app"}, text="Let me note that.")
    gateway = _gateway(server.url, clock)
    input_before, output_before = _tokens("input"), _tokens("output")

    reply = await gateway.create(system=SYSTEM, messages=HELLO, tools=[NOTE_TOOL])
    await gateway.aclose()

    assert reply.stop_reason == "tool_use"
    assert reply.text == "Let me note that."
    assert reply.tool_calls == [
        ToolCall(id=tool_use_id, name="record_note", input={"text": "todo app"})
    ]
    assert reply.content == [
        {"type": "text", "text": "Let me note that."},
        {
            "type": "tool_use",
            "id": tool_use_id,
            "name": "record_note",
            "input": {"text": "todo app"},
        },
    ]
    assert reply.usage.input_tokens >= 1
    assert reply.usage.output_tokens >= 1
    assert _tokens("input") - input_before == reply.usage.input_tokens
    assert _tokens("output") - output_before == reply.usage.output_tokens
    (request,) = fake.requests
    assert request["model"] == MODEL
    assert request["max_tokens"] == 300
    assert request["system"] == SYSTEM
    assert request["messages"] == HELLO
    assert request["tools"] == [NOTE_TOOL]
    assert not gateway.degraded


async def test_gateway_reply_content_can_be_sent_back(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock
) -> None:
    fake.reply_tool("record_note", {"text": "todo app"})
    fake.reply_text("Noted. What else?")
    gateway = _gateway(server.url, clock)

    first = await gateway.create(system=SYSTEM, messages=HELLO, tools=[NOTE_TOOL])
    (call,) = first.tool_calls
    dialogue = [
        *HELLO,
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "saved"}],
        },
    ]
    second = await gateway.create(system=SYSTEM, messages=dialogue, tools=[NOTE_TOOL])
    await gateway.aclose()

    assert second.text == "Noted. What else?"
    assert second.stop_reason == "end_turn"
    assert second.tool_calls == []


async def test_gateway_counts_cache_tokens_as_input(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock
) -> None:
    system = [{"type": "text", "text": "Long rules. " * 50, "cache_control": {"type": "ephemeral"}}]
    gateway = _gateway(server.url, clock)
    await gateway.create(system=system, messages=HELLO, tools=[])
    input_before = _tokens("input")

    reply = await gateway.create(system=system, messages=HELLO, tools=[])
    await gateway.aclose()

    assert reply.usage.cache_read_tokens > 0
    assert reply.usage.cache_creation_tokens == 0
    assert _tokens("input") - input_before == (
        reply.usage.input_tokens + reply.usage.cache_read_tokens
    )


async def test_gateway_leaves_out_an_empty_tool_list(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock
) -> None:
    gateway = _gateway(server.url, clock)

    await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()

    assert "tools" not in fake.requests[0]


async def test_gateway_relies_on_the_sdk_retries_first(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock
) -> None:
    fake.fail_next(2, status=529)
    fake.reply_text("made it")
    gateway = _gateway(server.url, clock, max_retries=2)

    reply = await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()

    assert reply.text == "made it"
    assert fake.request_count == 3
    assert gateway.breaker.consecutive_failures == 0


async def test_gateway_outage_opens_the_breaker_then_sends_nothing(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock, logs: RecordingLogger
) -> None:
    fake.down = True
    gateway = _gateway(server.url, clock)

    for attempt in range(3):
        with pytest.raises(AIUnavailable, match="HTTP 500"):
            await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
        assert fake.request_count == attempt + 1
    assert gateway.degraded
    assert gateway.breaker.state == "open"
    assert logs.events("warning").count("ai.unavailable") == 3
    assert "ai.circuit_opened" in logs.events("warning")
    _, _, fields = next(r for r in logs.records if r[1] == "ai.unavailable")
    assert fields["status"] == 500
    assert fields["error"] == "InternalServerError"

    with pytest.raises(AIUnavailable, match="circuit open"):
        await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    assert fake.request_count == 3

    # After the wait, one trial goes out; the API is back, so the breaker closes.
    fake.down = False
    clock.advance(30)
    reply = await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()

    assert reply.text
    assert fake.request_count == 4
    assert not gateway.degraded


async def test_gateway_failed_trial_keeps_the_breaker_open(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock
) -> None:
    fake.down = True
    gateway = _gateway(server.url, clock)
    for _ in range(3):
        with pytest.raises(AIUnavailable):
            await gateway.create(system=SYSTEM, messages=HELLO, tools=[])

    clock.advance(30)
    with pytest.raises(AIUnavailable, match="HTTP 500"):
        await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    with pytest.raises(AIUnavailable, match="circuit open"):
        await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()

    assert fake.request_count == 4
    assert gateway.breaker.state == "open"


async def test_gateway_overloaded_is_unavailable(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock, logs: RecordingLogger
) -> None:
    fake.fail_next(1, status=529)
    gateway = _gateway(server.url, clock)

    with pytest.raises(AIUnavailable, match="HTTP 529"):
        await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()

    assert gateway.breaker.consecutive_failures == 1
    assert logs.events("warning") == ["ai.unavailable"]


async def test_gateway_rejected_request_is_logged_as_error_without_the_key(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock, logs: RecordingLogger
) -> None:
    wrong_key = "sk-ant-wrong-key-9876543210"
    gateway = _gateway(server.url, clock, api_key=wrong_key)

    with pytest.raises(AIUnavailable) as caught:
        await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()

    assert "401" in str(caught.value)
    assert wrong_key not in str(caught.value)
    assert gateway.breaker.consecutive_failures == 1
    (record,) = logs.records
    level, event, fields = record
    assert (level, event, fields["status"]) == ("error", "ai.request_rejected", 401)
    assert wrong_key not in repr(record)


async def test_gateway_bad_request_is_rejected(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock, logs: RecordingLogger
) -> None:
    gateway = _gateway(server.url, clock)

    with pytest.raises(AIUnavailable, match="HTTP 400"):
        await gateway.create(system=SYSTEM, messages=[], tools=[])
    await gateway.aclose()

    assert logs.events("error") == ["ai.request_rejected"]


async def test_gateway_connection_refused_is_unavailable(
    clock: FakeClock, logs: RecordingLogger
) -> None:
    gateway = _gateway(unused_tcp_url(), clock)

    with pytest.raises(AIUnavailable, match="APIConnectionError") as caught:
        await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()

    assert KEY not in str(caught.value)
    assert gateway.breaker.consecutive_failures == 1
    assert logs.events("warning") == ["ai.unavailable"]


async def test_gateway_timeout_is_unavailable(
    fake: FakeAnthropic, server: FakeServer, clock: FakeClock
) -> None:
    fake.delay_seconds = 1.0
    gateway = _gateway(server.url, clock, timeout=0.2)

    with pytest.raises(AIUnavailable, match="APITimeoutError"):
        await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()

    assert gateway.breaker.consecutive_failures == 1


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_build_gateway_without_a_key_is_none() -> None:
    assert build_gateway(_settings()) is None


async def test_build_gateway_configures_the_client(fake: FakeAnthropic, server: FakeServer) -> None:
    gateway = build_gateway(
        _settings(anthropic_api_key=KEY, anthropic_base_url=server.url, anthropic_model=MODEL)
    )
    assert gateway is not None
    backend = gateway._backend
    assert isinstance(backend, AnthropicBackend)
    client = backend._client

    assert client.max_retries == 2
    assert isinstance(client.timeout, anthropic.Timeout)
    assert client.timeout.read == 60.0
    assert client.timeout.connect == 5.0
    assert gateway.breaker.state == "closed"
    assert gateway.model == MODEL

    reply = await gateway.create(system=SYSTEM, messages=HELLO, tools=[])
    await gateway.aclose()

    assert reply.text
    assert fake.last_headers["authorization"] == f"Bearer {KEY}"
    assert client.is_closed()
