"""Per-request correlation id, request log line and HTTP metrics, as plain ASGI.

Plain ASGI rather than BaseHTTPMiddleware: it adds almost nothing to the hot path of
webhook ingress and never buffers bodies.
"""

from __future__ import annotations

import re
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from project_orchestrator.logging import get_logger, new_correlation_id
from project_orchestrator.metrics import http_request_duration_seconds, http_requests_total

log = get_logger("project_orchestrator.http")
REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{8,64}$")
# Routes polled by machines are logged at debug level so they do not drown real traffic.
_QUIET_ROUTES = frozenset({"/health", "/health/db", "/health/ready", "/health/ai", "/metrics"})
# An accepted delivery is already on record (the event row carries its correlation id);
# logging each one again would cost more than storing it. Refusals still log.
_RECORDED_ROUTES = frozenset({"/webhooks/github", "/webhooks/telegram"})


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER and _SAFE_REQUEST_ID.match(value):
            return str(value.decode("ascii"))
    return None


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Unmatched paths are folded into one label so scanners cannot explode cardinality.
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = _incoming_request_id(scope) or new_correlation_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        # Each request gets its own state (some servers hand every request the same
        # lifespan dict); routes that store work hand the correlation id on to the job.
        scope["state"] = {**scope.get("state", {}), "correlation_id": correlation_id}
        started = time.perf_counter()
        status_code = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, correlation_id.encode("ascii")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            labels = (scope["method"], route, str(status_code))
            http_requests_total.labels(*labels).inc()
            http_request_duration_seconds.labels(*labels).observe(elapsed)
            quiet = (route in _QUIET_ROUTES and status_code < 500) or (
                route in _RECORDED_ROUTES and status_code < 300
            )
            emit = log.debug if quiet else log.info
            emit(
                "http.request",
                method=scope["method"],
                route=route,
                status=status_code,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()
