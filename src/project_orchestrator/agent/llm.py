"""The model gateway: the one place the service talks to a model.

The agent speaks one dialect, Anthropic's Messages API (content blocks with `tool_use`
and `tool_result`): it is what is stored and sent back each round. A backend carries it
to the configured provider (`llm_anthropic`, `llm_openai`) and brings the answer back in
it. The gateway keeps a circuit breaker in front of the backend, turns every way a call
can fail into `AIUnavailable`, and counts tokens for Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from project_orchestrator import metrics
from project_orchestrator.agent.breaker import CircuitBreaker
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

# Both SDKs retry connection errors, 408/409/429 and 5xx themselves; the breaker only
# sees what is left after these.
SDK_MAX_RETRIES = 2
REQUEST_TIMEOUT_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 5.0
# The client errors the SDKs retry as transient; any other 4xx is our own bug (or the
# operator's: a revoked key, a model the server does not have).
TRANSIENT_CLIENT_STATUSES = frozenset({408, 409, 429})


class AIUnavailable(Exception):
    """The assistant cannot be reached now. The message is safe to log and to show."""


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_creation_tokens
        )

    @property
    def prompt_tokens(self) -> int:
        """Everything the model read: fresh input plus cached prefix (read or written)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens


def add_usage(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.cache_read_tokens + b.cache_read_tokens,
        a.cache_creation_tokens + b.cache_creation_tokens,
    )


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]
    # Why the model's arguments could not be read (not JSON, not an object); the call
    # is then answered with this as an error, so the model can send it again.
    arguments_error: str | None = None


@dataclass(frozen=True)
class ModelReply:
    # Plain JSON-ready dicts: stored as JSONB and sent back verbatim as the assistant turn.
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: TokenUsage

    @property
    def text(self) -> str:
        return "".join(block["text"] for block in self.content if block.get("type") == "text")

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(
                id=block["id"],
                name=block["name"],
                input=dict(block.get("input") or {}),
                arguments_error=block.get(ARGUMENTS_ERROR),
            )
            for block in self.content
            if block.get("type") == "tool_use"
        ]


# A key of a `tool_use` block that only the OpenAI-compatible backend sets, and strips
# again before anything is sent.
ARGUMENTS_ERROR = "arguments_error"


@dataclass
class CallFailed(Exception):
    """What a backend reports when its SDK gave nothing usable (secret-free)."""

    kind: str  # the SDK's exception type
    status: int | None = None  # the HTTP status, when the API answered
    request_id: str | None = None
    # Nothing came back at all (no connection, a timeout), as opposed to an unusable answer.
    unreached: bool = False


class ModelBackend(Protocol):
    """One provider's API, spoken in the agent's dialect (see the module docstring)."""

    async def complete(
        self,
        *,
        model: str,
        max_tokens: int,
        system: list[dict[str, Any]],
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> ModelReply:
        """One model call; raises `CallFailed`."""
        ...

    async def aclose(self) -> None: ...


class ModelGateway:
    def __init__(
        self,
        backend: ModelBackend,
        model: str,
        breaker: CircuitBreaker,
        *,
        max_output_tokens: int = 1024,
    ) -> None:
        self._backend = backend
        self.model = model
        self.breaker = breaker
        self.max_output_tokens = max_output_tokens

    @property
    def degraded(self) -> bool:
        return self.breaker.state != "closed"

    async def create(
        self,
        *,
        system: list[dict[str, Any]],
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> ModelReply:
        if not self.breaker.allow():
            log.debug("ai.circuit_open", state=self.breaker.state)
            raise AIUnavailable("The AI assistant is unavailable (circuit open after failures)")
        try:
            reply = await self._backend.complete(
                model=self.model,
                max_tokens=self.max_output_tokens,
                system=system,
                messages=messages,
                tools=tools,
            )
        except CallFailed as failure:
            self._failed()
            raise _unavailable(failure) from failure
        if self.breaker.state != "closed":
            log.info("ai.circuit_closed")
        self.breaker.record_success()
        metrics.ai_tokens_total.labels(direction="input").inc(reply.usage.prompt_tokens)
        metrics.ai_tokens_total.labels(direction="output").inc(reply.usage.output_tokens)
        return reply

    def _failed(self) -> None:
        before = self.breaker.state
        self.breaker.record_failure()
        if before != "open" and self.breaker.state == "open":
            log.warning(
                "ai.circuit_opened",
                failures=self.breaker.consecutive_failures,
                reset_after_seconds=self.breaker.reset_after_seconds,
            )

    async def aclose(self) -> None:
        await self._backend.aclose()


def _unavailable(failure: CallFailed) -> AIUnavailable:
    """Logged by kind, and said in words that are safe to show."""
    status = failure.status
    if status is None:
        log.warning("ai.unavailable", error=failure.kind, status=None)
        if failure.unreached:
            return AIUnavailable(f"The AI API could not be reached ({failure.kind})")
        # E.g. a response that does not parse: as unusable as no response.
        return AIUnavailable(f"The AI API gave an unusable answer ({failure.kind})")
    if status >= 500 or status in TRANSIENT_CLIENT_STATUSES:
        log.warning(
            "ai.unavailable", error=failure.kind, status=status, request_id=failure.request_id
        )
        return AIUnavailable(f"The AI API answered HTTP {status}")
    # Bad request, revoked key, too large...: waiting will not help, someone must look.
    log.error(
        "ai.request_rejected", error=failure.kind, status=status, request_id=failure.request_id
    )
    return AIUnavailable(f"The AI API rejected the request (HTTP {status})")
