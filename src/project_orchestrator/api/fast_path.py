"""Serving the webhook routes without the framework's per-request machinery.

GitHub may deliver thousands of events a second; FastAPI's routing, dependency solving
and exception middleware would cost more than verifying and storing each one. A fast path
is the same handler as the documented route, behind the same request-context middleware
(correlation id, metrics, request log), called directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from project_orchestrator.api.middleware import RequestContextMiddleware, closing_on_server_error
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(handler: Handler, route: BaseRoute) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = route  # so metrics and logs name the route template
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception:
            log.exception("webhook.unhandled_error")
            response = JSONResponse(
                {"error": "internal", "message": "Unexpected error; send it again."},
                status_code=500,
            )
        await response(scope, receive, send)

    return app


class OrchestratorAPI(FastAPI):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fast_paths: dict[tuple[str, str], ASGIApp] = {}

    def add_fast_path(self, method: str, route: BaseRoute, handler: Handler) -> None:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            raise ValueError("a fast path needs a route with a path")
        self._fast_paths[(method, path)] = RequestContextMiddleware(_endpoint(handler, route))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            fast = self._fast_paths.get((scope["method"], scope["path"]))
            if fast is not None:
                scope["app"] = self
                await fast(scope, receive, send)
                return
            # Starlette answers an unhandled exception's 500 outside every middleware
            # added to the app, the request-context one included; it closes too.
            send = closing_on_server_error(send)
        await super().__call__(scope, receive, send)
