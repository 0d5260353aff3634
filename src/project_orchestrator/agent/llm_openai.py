"""An OpenAI-compatible `/v1/chat/completions` (vLLM, llama.cpp server, Ollama), spoken
in the agent's dialect: Anthropic-style blocks out, the same blocks back.

Out: the system blocks become one system message; an assistant's `tool_use` blocks become
its `tool_calls`; a user turn of `tool_result` blocks becomes one `tool` message per result
(an error says so in its text: the format has no flag for it). Back: the reply's text and
tool calls become `text` and `tool_use` blocks. Arguments that do not parse as a JSON object
(small models get them wrong) become a `tool_use` with empty input and the reason, which the
turn answers as an error, so the model can try again and nothing of the person's is lost.

Servers that report no usage get an estimate (about four characters a token): a budget
must not be defeated by a server that does not count.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, cast

import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageParam,
    ChatCompletionToolUnionParam,
)

from project_orchestrator.agent.llm import ARGUMENTS_ERROR, CallFailed, ModelReply, TokenUsage
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

# OpenAI's finish reasons in Anthropic's words; Ollama says "stop" even after tool calls,
# so the turn goes by whether there are tool calls, never by this.
STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}
ERROR_PREFIX = "Error: "
CHARACTERS_PER_TOKEN = 4
# Enough of a malformed argument text for the model to see what it sent.
QUOTED_ARGUMENTS = 200


class OpenAICompatibleBackend:
    def __init__(self, client: openai.AsyncOpenAI) -> None:
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
        chat = chat_messages(system, messages)
        try:
            completion = await self._client.chat.completions.create(
                model=model,
                # max_tokens, not max_completion_tokens: what self-hosted servers know.
                max_tokens=max_tokens,
                messages=cast("list[ChatCompletionMessageParam]", chat),
                tools=(
                    cast("list[ChatCompletionToolUnionParam]", chat_tools(tools))
                    if tools
                    else openai.omit
                ),
            )
        except openai.APIStatusError as exc:
            raise CallFailed(type(exc).__name__, exc.status_code, exc.request_id) from exc
        except openai.APIConnectionError as exc:
            raise CallFailed(type(exc).__name__, unreached=True) from exc
        except openai.APIError as exc:
            raise CallFailed(type(exc).__name__) from exc
        return reply_from(completion, chat)

    async def aclose(self) -> None:
        await self._client.close()


# --- out ---------------------------------------------------------------------------------


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool["name"],
                "description": tool.get("description", ""),
                "parameters": tool["input_schema"],
            },
        }
        for tool in tools
    ]


def chat_messages(
    system: list[dict[str, Any]], messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    instructions = "\n\n".join(block["text"] for block in system if block.get("type") == "text")
    chat: list[dict[str, Any]] = [{"role": "system", "content": instructions}]
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            chat.append({"role": message["role"], "content": content})
        elif message["role"] == "assistant":
            chat.append(_assistant(content))
        else:
            chat.extend(_user(content))
    return chat


def _text_of(blocks: list[dict[str, Any]]) -> str:
    return "".join(block["text"] for block in blocks if block.get("type") == "text")


def _assistant(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    calls = [
        {
            "id": block["id"],
            "type": "function",
            # Sent back as read: servers that parse earlier calls (vLLM does) must get JSON.
            "function": {"name": block["name"], "arguments": json.dumps(block.get("input", {}))},
        }
        for block in blocks
        if block.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": _text_of(blocks) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") != "tool_result":
            continue
        output = block.get("content", "")
        if isinstance(output, list):
            output = _text_of(output)
        if block.get("is_error"):
            output = ERROR_PREFIX + output
        chat.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": output})
    text = _text_of(blocks)
    if text:
        chat.append({"role": "user", "content": text})
    return chat


# --- back --------------------------------------------------------------------------------


def reply_from(completion: ChatCompletion, sent: list[dict[str, Any]]) -> ModelReply:
    if not completion.choices:
        raise CallFailed("NoChoices")
    choice = completion.choices[0]
    message = choice.message
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is None:  # a custom (non-function) tool call: we offer none
            continue
        arguments, error = parse_arguments(function.arguments)
        block: dict[str, Any] = {
            "type": "tool_use",
            # llama.cpp has sent empty ids; the result must still find its call.
            "id": call.id or "call_" + secrets.token_hex(8),
            "name": function.name,
            "input": arguments,
        }
        if error is not None:
            block[ARGUMENTS_ERROR] = error
            log.warning("ai.tool_arguments_malformed", tool=function.name)
        blocks.append(block)
    reason = choice.finish_reason
    return ModelReply(
        content=blocks,
        stop_reason=STOP_REASONS.get(reason, reason) if reason else None,
        usage=_usage(completion, sent, blocks),
    )


def parse_arguments(raw: str | None) -> tuple[dict[str, Any], str | None]:
    """The arguments as an object, or empty and why not."""
    if raw is None or not raw.strip():
        return {}, None  # no arguments is an empty object to every server
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        quoted = raw[:QUOTED_ARGUMENTS] + ("…" if len(raw) > QUOTED_ARGUMENTS else "")
        return {}, f"the arguments are not valid JSON ({exc.msg} at character {exc.pos}): {quoted}"
    if not isinstance(value, dict):
        return {}, f"the arguments must be a JSON object, not {type(value).__name__}"
    return value, None


def _usage(
    completion: ChatCompletion, sent: list[dict[str, Any]], blocks: list[dict[str, Any]]
) -> TokenUsage:
    usage = completion.usage
    if usage is None:
        log.info("ai.usage_estimated", model=completion.model)
        return TokenUsage(
            input_tokens=_estimate(sent),
            output_tokens=_estimate(blocks),
        )
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    # OpenAI counts cached tokens inside prompt_tokens; the ledger counts them apart.
    cached = min(cached, usage.prompt_tokens)
    return TokenUsage(
        input_tokens=usage.prompt_tokens - cached,
        output_tokens=usage.completion_tokens,
        cache_read_tokens=cached,
    )


def _estimate(value: Any) -> int:
    return max(1, len(json.dumps(value, ensure_ascii=False)) // CHARACTERS_PER_TOKEN)
