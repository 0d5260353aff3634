"""Is the configured model API (LLM_PROVIDER) reachable? Never a paid call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import httpx

from project_orchestrator.config import Settings

AI_PROBE_TIMEOUT_SECONDS = 3.0

AIState = Literal["reachable", "unreachable", "not_configured"]


@dataclass(frozen=True)
class AIReachability:
    state: AIState
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "reachable"


async def probe_ai(settings: Settings, http: httpx.AsyncClient | None = None) -> AIReachability:
    """Any HTTP answer from the base URL means the API is reachable.

    The probe sends no key and asks for nothing that costs tokens: it only proves that
    DNS, TCP, TLS and the server answer.
    """
    if not settings.ai_configured:
        return AIReachability("not_configured", "ANTHROPIC_API_KEY is not set")
    # Both list models at <base>/v1/models; an OpenAI-compatible base URL ends in /v1.
    if settings.llm_provider == "openai-compatible" and settings.llm_base_url is not None:
        models_url = settings.llm_base_url.rstrip("/") + "/models"
    else:
        models_url = settings.anthropic_base_url.rstrip("/") + "/v1/models"
    own_client = http is None
    client = http or httpx.AsyncClient(timeout=AI_PROBE_TIMEOUT_SECONDS)
    try:
        response = await client.get(models_url, timeout=AI_PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        return AIReachability("unreachable", f"{type(exc).__name__} contacting the AI API")
    finally:
        if own_client:
            await client.aclose()
    if response.status_code >= 500:
        return AIReachability("unreachable", f"AI API answered HTTP {response.status_code}")
    return AIReachability("reachable")
