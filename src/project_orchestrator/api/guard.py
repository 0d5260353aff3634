"""The door of /api/v1: the key, the caller's failures and the body, before any route.

FastAPI reads and decodes a request's body before it solves the dependencies that check
the key, so an unauthenticated caller could make every route read 25 MiB and decode JSON
nested a thousand deep. This ASGI layer refuses first, in this order:

1. A client over FAILED_AUTH_LIMIT failed authentications: 429 with Retry-After, whatever
   key it sends now (a guesser must not learn that its next guess was right).
2. A missing or wrong `Authorization: Bearer <API_KEY>`: 401.
3. A body over MAX_API_BODY_BYTES: 413. A JSON body that does not decode, or nests deeper
   than MAX_JSON_DEPTH: 400. A client that hangs up mid-body: 499; the route never runs.

Refusals are audited without flooding the log: AuthFailureTally writes the first few of
each minute one by one and the rest as one summary line.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from limits import RateLimitItem, parse
from slowapi import Limiter
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.ingress.bodies import CLIENT_CLOSED_REQUEST
from project_orchestrator.ingress.client_ip import ClientResolver, forwarded_for
from project_orchestrator.jsonlimits import MAX_JSON_DEPTH, too_deep
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

API_PREFIX = "/api/v1"
MAX_API_BODY_BYTES = 1024 * 1024
# Ten wrong keys a minute is more than a person retyping one makes, and far too few to guess.
FAILED_AUTH_LIMIT = "10/minute"
RATE_KEY = "api-auth-failures"
# Audit lines written one by one per minute; the rest of that minute is one summary line.
AUDITED_REFUSALS_PER_WINDOW = 10
AUDIT_WINDOW_SECONDS = 60.0
_TRACKED_CLIENTS = 1000  # distinct addresses remembered for a summary, at most
BAD_KEY = "bad or missing API key"
TOO_MANY_FAILURES = "too many failed authentications"


@dataclass
class AuthFailureTally:
    """Audits refusals at /api/v1 with a bounded number of lines, however many arrive."""

    audit: AuditLog
    clock: Callable[[], float] = time.monotonic
    window_started: float = field(default=-math.inf)
    written: int = 0
    # (action, reason) -> refusals not written one by one in this window, and by whom.
    held_back: dict[tuple[AuditAction, str], int] = field(default_factory=dict)
    clients: set[str] = field(default_factory=set)

    def refused(self, action: AuditAction, reason: str, path: str, ip: str | None) -> None:
        now = self.clock()
        if now - self.window_started >= AUDIT_WINDOW_SECONDS:
            self.flush()
            self.window_started = now
        if self.written < AUDITED_REFUSALS_PER_WINDOW:
            self.written += 1
            self.audit.record(
                action,
                result=AuditResult.DENIED,
                details={"path": path[:200], "reason": reason},
                ip_address=ip,
            )
            return
        key = (action, reason)
        self.held_back[key] = self.held_back.get(key, 0) + 1
        if ip is not None and len(self.clients) < _TRACKED_CLIENTS:
            self.clients.add(ip)

    def flush(self) -> None:
        """The summary of what was held back in the current window (at shutdown too)."""
        for (action, reason), count in self.held_back.items():
            self.audit.record(
                action,
                result=AuditResult.DENIED,
                details={
                    "reason": reason,
                    "aggregated": True,
                    "refusals": count,
                    "clients": len(self.clients),
                    "window_seconds": int(AUDIT_WINDOW_SECONDS),
                },
            )
        self.held_back.clear()
        self.clients.clear()
        self.written = 0


@dataclass(frozen=True)
class FailedAuthLimit:
    limiter: Limiter
    item: RateLimitItem = field(default_factory=lambda: parse(FAILED_AUTH_LIMIT))

    def retry_after(self, client: str) -> int | None:
        """Seconds until this client may try again, or None when it may now."""
        strategy = self.limiter.limiter
        try:
            if strategy.test(self.item, RATE_KEY, client):
                return None
            reset = strategy.get_window_stats(self.item, RATE_KEY, client).reset_time
        except Exception as exc:
            # A rate-limit store that is down must not lock everyone out of the API.
            log.warning("rate_limit.storage_failed", error=type(exc).__name__)
            return None
        return max(1, math.ceil(reset - time.time()))

    def failed(self, client: str) -> None:
        try:
            self.limiter.limiter.hit(self.item, RATE_KEY, client)
        except Exception as exc:
            log.warning("rate_limit.storage_failed", error=type(exc).__name__)


class ApiGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        resolver: ClientResolver,
        limit: FailedAuthLimit,
        tally: AuthFailureTally,
    ) -> None:
        self.app = app
        # No key configured means no API, rather than an open one.
        self.expected = api_key.encode() if api_key else None
        self.resolver = resolver
        self.limit = limit
        self.tally = tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        peer = connection.client.host if connection.client else None
        ip = self.resolver.client_ip(peer, forwarded_for(connection))
        path = scope["path"]
        wait = self.limit.retry_after(ip or "unknown")
        if wait is not None:
            self.tally.refused(AuditAction.RATE_LIMIT_EXCEEDED, TOO_MANY_FAILURES, path, ip)
            await _answer(
                send,
                429,
                "rate_limited",
                f"Too many failed authentications; try again in {wait} s.",
                [(b"retry-after", str(wait).encode())],
            )
            return
        if not self._authorized(connection.headers.get("authorization")):
            self.limit.failed(ip or "unknown")
            self.tally.refused(AuditAction.UNAUTHORIZED_ACCESS, BAD_KEY, path, ip)
            await _answer(
                send,
                401,
                "unauthorized",
                "A valid `Authorization: Bearer <API_KEY>` header is required.",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self._with_checked_body(scope, receive, send, connection)

    def _authorized(self, header: str | None) -> bool:
        if self.expected is None or header is None:
            return False
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant time, so the key cannot be guessed one character at a time.
        return hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), self.expected)

    async def _with_checked_body(
        self, scope: Scope, receive: Receive, send: Send, connection: HTTPConnection
    ) -> None:
        declared = connection.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_API_BODY_BYTES:
            await _too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                log.info("api.client_disconnected", path=scope["path"])
                # Nobody is left to read it; the status is for the request log only.
                await _answer(send, CLIENT_CLOSED_REQUEST, "disconnected", "Client went away.")
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_API_BODY_BYTES:
                await _too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _json_problem(body, connection.headers.get("content-type"))
        if problem is not None:
            await _answer(send, 400, *problem)
            return
        await self.app(scope, _replay(body, receive), send)


def _is_json(content_type: str | None) -> bool:
    # FastAPI decodes a body as JSON when it has no content type or a JSON one.
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _json_problem(body: bytes, content_type: str | None) -> tuple[str, str] | None:
    """(error, message) for a JSON body the routes must never see, else None."""
    if not body or not _is_json(content_type):
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "bad_json", "The body is not UTF-8 JSON."
    if too_deep(body, value):
        return "too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels."
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body, already read, handed to the route as if it came from the socket."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes

    return replay


async def _too_large(send: Send) -> None:
    await _answer(send, 413, "too_large", f"Body over {MAX_API_BODY_BYTES // 2**20} MiB.")


async def _answer(
    send: Send,
    status: int,
    error: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = orjson.dumps({"error": error, "message": message})
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
