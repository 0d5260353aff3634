"""`orchestrator doctor`'s AI check: the configured provider (LLM_PROVIDER) takes its key
and serves its model. It lists models; it never makes a paid call."""

from __future__ import annotations

import httpx

from project_orchestrator.config import Settings
from project_orchestrator.doctor_results import (
    ANTHROPIC_VERSION,
    CheckResult,
    fail,
    http_error,
    ok,
    safe_url,
    warn,
)

NAME = "ai"
BUSY = "try again shortly; the agent retries such errors by itself"


async def check_ai(settings: Settings, http: httpx.AsyncClient) -> CheckResult:
    if settings.llm_provider == "openai-compatible":
        return await _check_openai_compatible(settings, http)
    key = settings.anthropic_api_key
    if key is None:
        return warn(
            NAME,
            "not configured (ANTHROPIC_API_KEY unset): the agent cannot answer",
            "set ANTHROPIC_API_KEY, or LLM_PROVIDER=openai-compatible for a self-hosted model",
        )
    base = settings.anthropic_base_url.rstrip("/")
    answer = await _list_models(
        http,
        f"{base}/v1/models",
        {"x-api-key": key.get_secret_value(), "anthropic-version": ANTHROPIC_VERSION},
        reach_hint="check network access to the Anthropic API and ANTHROPIC_BASE_URL",
        key_hint="check ANTHROPIC_API_KEY: it may be mistyped, revoked or for another organisation",
        url_hint="check ANTHROPIC_BASE_URL",
    )
    if isinstance(answer, CheckResult):
        return answer
    return ok(NAME, f"key accepted by {safe_url(base)} (model {settings.anthropic_model})")


async def _check_openai_compatible(settings: Settings, http: httpx.AsyncClient) -> CheckResult:
    base = (settings.llm_base_url or "").rstrip("/")
    model = settings.llm_model
    where = safe_url(base)
    key = settings.llm_api_key
    answer = await _list_models(
        http,
        f"{base}/models",
        {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {},
        reach_hint="check that the model server runs and that LLM_BASE_URL points at it",
        key_hint="check LLM_API_KEY",
        # A server's /v1/models answers; without the /v1 it is a 404.
        url_hint="LLM_BASE_URL is the URL up to and including /v1 (e.g. http://127.0.0.1:11434/v1)",
    )
    if isinstance(answer, CheckResult):
        return answer
    served = _model_ids(answer)
    if served is None:
        return warn(NAME, f"{where} answered, but not with a model list", "check LLM_BASE_URL")
    # Ollama serves "llama3.2" as "llama3.2:latest"; either name reaches it.
    if model in served or f"{model}:latest" in served:
        return ok(NAME, f"{where} serves {model} (OpenAI-compatible)")
    listed = ", ".join(sorted(served)[:10]) or "none"
    return warn(
        NAME,
        f"{where} does not list LLM_MODEL {model} (it lists: {listed})",
        "set LLM_MODEL to a model the server serves, or load that model there",
    )


async def _list_models(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    *,
    reach_hint: str,
    key_hint: str,
    url_hint: str,
) -> httpx.Response | CheckResult:
    """Either provider's model list (a 200), or the verdict on why there is none."""
    where = safe_url(url)
    try:
        response = await http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return fail(NAME, f"unreachable: {where} ({http_error(exc)})", reach_hint)
    code = response.status_code
    if code == 200:
        return response
    if code in {401, 403}:
        return fail(NAME, f"key rejected by {where} (HTTP {code})", key_hint)
    if code == 429 or code >= 500:
        return warn(NAME, f"{where} answered HTTP {code} (rate limited or overloaded)", BUSY)
    return fail(NAME, f"unexpected answer from {where} (HTTP {code})", url_hint)


def _model_ids(response: httpx.Response) -> set[str] | None:
    try:
        data = response.json()["data"]
        return {str(entry["id"]) for entry in data}
    except (ValueError, KeyError, TypeError):
        return None
