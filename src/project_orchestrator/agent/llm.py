"""The model gateway: the one place the service talks to the Anthropic Messages API.

It builds the SDK client, keeps a circuit breaker in front of it, turns every way the API
can fail into `AIUnavailable`, and counts tokens for Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import anthropic
from anthropic.types import Message, MessageParam, TextBlockParam, ToolUnionParam

from project_orchestrator import metrics
from project_orchestrator.agent.breaker import CircuitBreaker
from project_orchestrator.config import Settings
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

# The SDK retries connection errors, 408/409/429 and 5xx itself; the breaker only sees
# what is left after these.
SDK_MAX_RETRIES = 2
REQUEST_TIMEOUT_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 5.0
# The client errors the SDK itself retries as transient; any other 4xx is our own bug.
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
            ToolCall(id=block["id"], name=block["name"], input=dict(block.get("input") or {}))
            for block in self.content
            if block.get("type") == "tool_use"
        ]


class ModelGateway:
    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        model: str,
        breaker: CircuitBreaker,
        *,
        max_output_tokens: int = 1024,
    ) -> None:
        self._client = client
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
            message = await self._client.messages.create(
                model=self.model,
                max_tokens=self.max_output_tokens,
                # Callers build these as plain dicts (they are stored as JSON); the API
                # validates their shape, so the casts only tell mypy what they are.
                system=cast("list[TextBlockParam]", system),
                messages=cast("list[MessageParam]", messages),
                tools=cast("list[ToolUnionParam]", tools) if tools else anthropic.omit,
            )
        except anthropic.APIStatusError as exc:
            self._failed()
            status = exc.status_code
            if status >= 500 or status in TRANSIENT_CLIENT_STATUSES:
                log.warning(
                    "ai.unavailable",
                    error=type(exc).__name__,
                    status=status,
                    request_id=exc.request_id,
                )
                raise AIUnavailable(f"The AI API answered HTTP {status}") from exc
            # Bad request, revoked key, too large...: waiting will not help, someone must look.
            log.error(
                "ai.request_rejected",
                error=type(exc).__name__,
                status=status,
                request_id=exc.request_id,
            )
            raise AIUnavailable(f"The AI API rejected the request (HTTP {status})") from exc
        except anthropic.APIConnectionError as exc:
            # APITimeoutError is a subclass: both mean nothing usable came back.
            self._failed()
            log.warning("ai.unavailable", error=type(exc).__name__, status=None)
            raise AIUnavailable(f"The AI API could not be reached ({type(exc).__name__})") from exc
        except anthropic.APIError as exc:
            # E.g. a response that does not parse: as unusable as no response.
            self._failed()
            log.warning("ai.unavailable", error=type(exc).__name__, status=None)
            raise AIUnavailable(
                f"The AI API gave an unusable answer ({type(exc).__name__})"
            ) from exc
        if self.breaker.state != "closed":
            log.info("ai.circuit_closed")
        self.breaker.record_success()
        reply = _reply_from(message)
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
        await self._client.close()


def _reply_from(message: Message) -> ModelReply:
    usage = message.usage
    return ModelReply(
        content=[block.model_dump(mode="json", exclude_none=True) for block in message.content],
        stop_reason=message.stop_reason,
        usage=TokenUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_input_tokens or 0,
            cache_creation_tokens=usage.cache_creation_input_tokens or 0,
        ),
    )


def build_gateway(settings: Settings) -> ModelGateway | None:
    """The gateway for the configured API, or None when no key is configured."""
    if settings.anthropic_api_key is None:
        return None
    client = anthropic.AsyncAnthropic(
        # Explicit key and base URL: the SDK would otherwise read ANTHROPIC_* itself.
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        max_retries=SDK_MAX_RETRIES,
        timeout=anthropic.Timeout(REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
    )
    return ModelGateway(client, settings.anthropic_model, CircuitBreaker())
