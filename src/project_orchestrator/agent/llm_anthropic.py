"""The Anthropic Messages API: the agent's own dialect, so blocks pass through as they are."""

from __future__ import annotations

from typing import Any, cast

import anthropic
from anthropic.types import Message, MessageParam, TextBlockParam, ToolUnionParam

from project_orchestrator.agent.llm import CallFailed, ModelReply, TokenUsage


class AnthropicBackend:
    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self._client = client

    async def complete(
        self,
        *,
        model: str,
        max_tokens: int,
        system: list[dict[str, Any]],
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> ModelReply:
        try:
            message = await self._client.messages.create(
                model=model,
                max_tokens=max_tokens,
                # Callers build these as plain dicts (they are stored as JSON); the API
                # validates their shape, so the casts only tell mypy what they are.
                system=cast("list[TextBlockParam]", system),
                messages=cast("list[MessageParam]", messages),
                tools=cast("list[ToolUnionParam]", tools) if tools else anthropic.omit,
            )
        except anthropic.APIStatusError as exc:
            raise CallFailed(type(exc).__name__, exc.status_code, exc.request_id) from exc
        except anthropic.APIConnectionError as exc:
            # APITimeoutError is a subclass: both mean nothing came back.
            raise CallFailed(type(exc).__name__, unreached=True) from exc
        except anthropic.APIError as exc:
            raise CallFailed(type(exc).__name__) from exc
        return _reply_from(message)

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
