"""Per-request correlation id, request log line and HTTP metrics, as plain ASGI.

Plain ASGI rather than BaseHTTPMiddleware: it adds almost nothing to the hot path of
webhook ingress and never buffers bodies.

Two kinds of answer are marked here for every route, the fast path's included:
- a 5xx answer carries `Connection: close`: whatever went wrong may have left the
  connection's state in doubt, and a client retrying on a fresh connection does no harm;
- a request whose client hung up before it was answered (a read deadline, a sender that
  gave up) is logged and counted as 499, nginx's "client closed request": what the app
  tried to answer then went nowhere, and it is not the server's failure.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from project_orchestrator.ingress.bodies import CLIENT_CLOSED_REQUEST
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
_CONNECTION = b"connection"
_CLOSE = b"close"


_stdlib_log = logging.getLogger("project_orchestrator.http")
# (method, route template, status) -> the two metrics' children: prometheus_client looks
# a child up under a lock on every `labels()`. Bounded: methods, templates and statuses
# are few (unmatched paths share one template), and past the cap nothing more is kept.
_METRIC_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_MAX_METRIC_CHILDREN = 1000


def _http_metrics(method: str, route: str, status: int) -> tuple[Any, Any]:
    key = (method, route, status)
    children = _METRIC_CHILDREN.get(key)
    if children is None:
        labels = (method, route, str(status))
        children = (
            http_requests_total.labels(*labels),
            http_request_duration_seconds.labels(*labels),
        )
        if len(_METRIC_CHILDREN) < _MAX_METRIC_CHILDREN:
            _METRIC_CHILDREN[key] = children
    return children


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER and _SAFE_REQUEST_ID.match(value):
            return str(value.decode("ascii"))
    return None


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # A mount (the docs' assets) answers any path under it, so its label is the mount's
    # path: the part of root_path it added to the app's own.
    if scope.get("endpoint") is not None and "app_root_path" in scope:
        mount = str(scope.get("root_path", ""))[len(str(scope["app_root_path"])) :]
        if mount:
            return mount
    # A plain Starlette route (/docs, /openapi.json) sets its endpoint but not "route".
    # Without path parameters its path is its template: as few labels as such routes.
    if scope.get("endpoint") is not None and not scope.get("path_params"):
        matched = scope.get("path")
        if isinstance(matched, str):
            return matched
    # Unmatched paths are folded into one label so scanners cannot explode cardinality.
    return "unmatched"


def close_after_server_error(message: Message) -> None:
    """Add `Connection: close` to a 5xx response start that does not close already."""
    if message["type"] != "http.response.start" or message["status"] < 500:
        return
    headers = list(message.get("headers", []))
    for name, value in headers:
        if name.lower() == _CONNECTION and _CLOSE in value.lower():
            return
    headers.append((_CONNECTION, _CLOSE))
    message["headers"] = headers


def closing_on_server_error(send: Send) -> Send:
    """`send`, with `Connection: close` on a 5xx answer: for what answers outside the
    request-context middleware (Starlette's outermost 500 for an unhandled exception)."""

    async def send_closing(message: Message) -> None:
        close_after_server_error(message)
        await send(message)

    return send_closing


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
        # None until the response starts: an exception before that becomes Starlette's 500.
        answered: int | None = None
        hung_up = False

        async def receive_noting_hang_up() -> Message:
            nonlocal hung_up
            message = await receive()
            if message["type"] == "http.disconnect" and answered is None:
                hung_up = True
            return message

        async def send_with_request_id(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, correlation_id.encode("ascii")))
                message["headers"] = headers
                if answered >= 500:
                    close_after_server_error(message)
            await send(message)

        try:
            await self.app(scope, receive_noting_hang_up, send_with_request_id)
        except ClientDisconnect:
            # Raised by a route that read its body itself when the client went away: nobody
            # is left to answer, and it is not an error to report.
            hung_up = hung_up or answered is None
        finally:
            status_code = (
                CLIENT_CLOSED_REQUEST if hung_up else (500 if answered is None else answered)
            )
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            counted, timed = _http_metrics(scope["method"], route, status_code)
            counted.inc()
            timed.observe(elapsed)
            quiet = (route in _QUIET_ROUTES and status_code < 500) or (
                route in _RECORDED_ROUTES and status_code < 300
            )
            # A quiet line is built only when someone reads debug lines: building one costs
            # more than storing an accepted delivery's row.
            if not quiet or _stdlib_log.isEnabledFor(logging.DEBUG):
                emit = log.debug if quiet else log.info
                emit(
                    "http.request",
                    method=scope["method"],
                    route=route,
                    status=status_code,
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.clear_contextvars()
