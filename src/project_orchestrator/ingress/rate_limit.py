"""Per-client rate limits on the webhook routes (slowapi over `limits`)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded

from project_orchestrator import metrics
from project_orchestrator.audit import AuditAction, AuditResult
from project_orchestrator.config import Settings
from project_orchestrator.ingress.github.vocabulary import event_label
from project_orchestrator.logging import get_logger

log = get_logger(__name__)


def _client_key(request: Request) -> str:
    # Set by the IP filter, which runs first and knows which proxies to believe.
    return getattr(request.state, "client_ip", None) or "unknown"


def build_limiter(settings: Settings) -> Limiter:
    return Limiter(
        key_func=_client_key,
        storage_uri=settings.rate_limit_storage_uri,
        headers_enabled=True,
        strategy="fixed-window",
        # A rate-limit store that is down must not take webhook intake down with it.
        swallow_errors=True,
        key_prefix="orchestrator",
    )


async def rate_limit_exceeded(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RateLimitExceeded):  # registered for that type only
        raise exc
    source = "telegram" if request.url.path.endswith("/telegram") else "github"
    event = event_label(request.headers.get("x-github-event")) if source == "github" else "update"
    client_ip = _client_key(request)
    metrics.webhook_events_total.labels(source, event, "rate_limited").inc()
    log.warning("webhook.refused", source=source, reason="rate_limited", status=429, ip=client_ip)
    request.app.state.orchestrator.audit.record(
        AuditAction.RATE_LIMIT_EXCEEDED,
        result=AuditResult.DENIED,
        details={"source": source, "limit": str(exc.detail), "path": request.url.path},
        ip_address=client_ip,
    )
    return _rate_limit_exceeded_handler(request, exc)
