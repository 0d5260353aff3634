"""The gateway for the configured provider (LLM_PROVIDER), or none without one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from project_orchestrator.agent.breaker import CircuitBreaker
from project_orchestrator.agent.llm import (
    CONNECT_TIMEOUT_SECONDS,
    REQUEST_TIMEOUT_SECONDS,
    SDK_MAX_RETRIES,
    ModelGateway,
)
from project_orchestrator.config import Settings

if TYPE_CHECKING:
    from project_orchestrator.agent.llm import ModelBackend

# Self-hosted servers often want no key, but the SDK insists on one: it is sent as a
# bearer token that such a server ignores.
NO_KEY = "none"


def build_gateway(settings: Settings) -> ModelGateway | None:
    # Each SDK is imported only for its provider: the other one would add its modules
    # (about 13 MB for openai) to every worker's memory for nothing.
    # Explicit keys and base URLs: the SDKs would otherwise read ANTHROPIC_*/OPENAI_* too.
    backend: ModelBackend
    if settings.llm_provider == "openai-compatible":
        import openai

        from project_orchestrator.agent.llm_openai import OpenAICompatibleBackend

        key = settings.llm_api_key
        backend = OpenAICompatibleBackend(
            openai.AsyncOpenAI(
                api_key=key.get_secret_value() if key is not None else NO_KEY,
                base_url=settings.llm_base_url,
                max_retries=SDK_MAX_RETRIES,
                timeout=openai.Timeout(REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            )
        )
    elif settings.anthropic_api_key is None:
        return None
    else:
        import anthropic

        from project_orchestrator.agent.llm_anthropic import AnthropicBackend

        backend = AnthropicBackend(
            anthropic.AsyncAnthropic(
                api_key=settings.anthropic_api_key.get_secret_value(),
                base_url=settings.anthropic_base_url,
                max_retries=SDK_MAX_RETRIES,
                timeout=anthropic.Timeout(REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            )
        )
    return ModelGateway(backend, settings.ai_model, CircuitBreaker())
