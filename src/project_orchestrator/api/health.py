"""Health probes and /metrics, shaped exactly as CONTRACT.md says."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from project_orchestrator import SERVICE_NAME
from project_orchestrator.agent.health import AIReachability, probe_ai
from project_orchestrator.agent.status import ai_outage
from project_orchestrator.api.state import AppState, app_state
from project_orchestrator.db.engine import PROBE_TIMEOUT_SECONDS
from project_orchestrator.db.migrations import pending_migrations
from project_orchestrator.logging import get_logger, redact_text
from project_orchestrator.metrics import ai_degraded, render_latest

router = APIRouter(tags=["health"])
log = get_logger(__name__)

# /health/ready is polled often; the AI answer is cached so a slow AI cannot slow it down.
AI_STATUS_TTL_SECONDS = 30.0


def _describe_error(exc: BaseException) -> str:
    """A short, secret-free reason: the exception type and the first line of its text."""
    if isinstance(exc, TimeoutError):
        return "timed out connecting to the database"
    first_line = (str(exc).splitlines() or [""])[0][:200]
    reason = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
    return redact_text(reason)


async def _database_status(state: AppState) -> tuple[bool, bool, bool]:
    """(reachable, migrations_pending, schema_rebuilt: its stale connections just went)"""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS), state.db.engine.connect() as conn:
            pending = await pending_migrations(conn)
            unchanged = await state.schema_watch.unchanged(conn)
    except Exception as exc:
        log.warning("health.database_unreachable", error=_describe_error(exc))
        return False, False, False
    return True, pending, not unchanged


async def _ai_status(state: AppState) -> AIReachability:
    cached = state.ai_status_cache
    now = time.monotonic()
    if cached is not None and now - cached[0] < AI_STATUS_TTL_SECONDS:
        return cached[1]
    status = await probe_ai(state.settings, state.http)
    if status.ok:
        status = await _worker_view_of_ai(state) or status
    state.ai_status_cache = (now, status)
    return status


async def _worker_view_of_ai(state: AppState) -> AIReachability | None:
    """The API may reach the AI while real requests fail (overloaded, rejected): the
    worker's recent experience, shared through the database, has the last word."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS), state.db.engine.connect() as conn:
            outage = await ai_outage(conn)
    except Exception as exc:
        log.warning("health.ai_status_unreadable", error=_describe_error(exc))
        return None
    if outage is None:
        return None
    return AIReachability("unreachable", redact_text(f"recent AI requests failed: {outage}"))


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy", "service": SERVICE_NAME}


@router.get("/health/db", responses={503: {"description": "database unreachable"}})
async def health_db(request: Request) -> JSONResponse:
    state = app_state(request)
    try:
        await state.db.ping()
    except Exception as exc:
        log.warning("health.database_unreachable", error=_describe_error(exc))
        return JSONResponse(
            {"status": "unhealthy", "database": "disconnected", "error": _describe_error(exc)},
            status_code=503,
        )
    return JSONResponse({"status": "healthy", "database": "connected"})


@router.get("/health/ai")
async def health_ai(request: Request) -> dict[str, Any]:
    status = await _ai_status(app_state(request))
    if status.ok:
        return {"status": "healthy", "ai_service": "reachable"}
    return {"status": "degraded", "ai_service": status.state, "detail": status.detail}


@router.get("/health/ready", responses={503: {"description": "not ready"}})
async def health_ready(request: Request) -> JSONResponse:
    state = app_state(request)
    (reachable, pending, rebuilt), ai = await asyncio.gather(
        _database_status(state), _ai_status(state)
    )
    ai_service = "ok" if ai.ok else "degraded"
    if ai.state == "not_configured":
        ai_service = "not_configured"
    body: dict[str, Any] = {
        "status": "ready",
        "database": "ok" if reachable else "fail",
        "ai_service": ai_service,
    }
    if reachable and not pending and not rebuilt:
        return JSONResponse(body)
    body["status"] = "not ready"
    if pending:
        body["migrations"] = "pending"
    if rebuilt:
        body["schema"] = "rebuilt; reconnecting"
    return JSONResponse(body, status_code=503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    state = app_state(request)
    await state.refresh_gauges()
    # The same cached answer as /health/ai, so scraping costs no extra AI probe.
    ai_degraded.set(0 if (await _ai_status(state)).ok else 1)
    payload, content_type = render_latest()
    return Response(content=payload, media_type=content_type)
