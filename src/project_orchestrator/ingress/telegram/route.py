"""POST /webhooks/telegram: verify, store with its job, acknowledge. Nothing else.

Checks in order: rate limit, secret token, size, shape. Every refusal is audited and
counted. Telegram redelivers on any non-2xx, so 503 is the answer when nothing could be
stored, and a redelivered update_id is acknowledged as a duplicate without a second job.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from project_orchestrator import metrics
from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.config import Settings
from project_orchestrator.ingress.bodies import ClientHungUp, hung_up, read_body
from project_orchestrator.ingress.client_ip import ClientResolver, forwarded_for, parse_networks
from project_orchestrator.ingress.exchange import Answer
from project_orchestrator.ingress.rate_limit import WebhookRateLimit
from project_orchestrator.ingress.telegram.updates import (
    SOURCE,
    EventStore,
    Intake,
    event_from_update,
    parse_update,
    store_update,
)
from project_orchestrator.jsonlimits import MAX_JSON_DEPTH
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

ROUTE = "/webhooks/telegram"
MAX_BODY_BYTES = 1024 * 1024
SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105  # a header name
# Headers worth keeping with the event; the secret token is deliberately not among them.
KEPT_HEADERS = ("content-type", "user-agent")
# Refusals happen before the update is read, so they carry no update kind.
_NO_KIND = "unknown"


@dataclass(frozen=True)
class TelegramIngress:
    writer: EventStore
    audit: AuditLog
    secret: bytes | None  # None: nothing can be verified, so everything is refused
    resolver: ClientResolver
    rate_limit: WebhookRateLimit


def build_ingress(settings: Settings, writer: EventStore, audit: AuditLog) -> TelegramIngress:
    secret = settings.telegram_webhook_secret
    return TelegramIngress(
        writer=writer,
        audit=audit,
        secret=secret.get_secret_value().encode() if secret is not None else None,
        resolver=ClientResolver(parse_networks(settings.trusted_proxies)),
        rate_limit=WebhookRateLimit.from_settings(settings),
    )


def _refuse(
    ingress: TelegramIngress,
    request: Request,
    *,
    status: int,
    reason: str,
    message: str,
    action: AuditAction = AuditAction.UNAUTHORIZED_ACCESS,
) -> Answer:
    client_ip = getattr(request.state, "client_ip", None)
    metrics.webhook_events_total.labels(SOURCE, _NO_KIND, reason).inc()
    # The reason only: the body and the secret header are the caller's input.
    log.warning("webhook.refused", source=SOURCE, reason=reason, status=status, ip=client_ip)
    ingress.audit.record(
        action,
        result=AuditResult.DENIED,
        details={"source": SOURCE, "reason": reason},
        ip_address=client_ip,
    )
    return Answer(status, {"error": reason, "message": message})


def secret_matches(expected: bytes, provided: str | None) -> bool:
    if provided is None:
        return False
    # Constant time, so the secret cannot be guessed one character at a time.
    return hmac.compare_digest(expected, provided.encode("utf-8", "surrogateescape"))


def build_router(receive: Callable[[Request], Awaitable[Response]]) -> APIRouter:
    """The documented route; the app may serve the same handler on its fast path."""
    router = APIRouter(tags=["webhooks"])

    @router.post(
        ROUTE,
        status_code=200,
        summary="Receive a Telegram update",
        responses={
            200: {
                "description": 'Stored and queued (`{"status": "accepted", "update_id": N}`), '
                'or a duplicate update_id, already stored (`"status": "duplicate"`)'
            },
            400: {
                "description": "Body is not a JSON object with an integer update_id, or is "
                f"nested deeper than {MAX_JSON_DEPTH} levels"
            },
            403: {
                "description": "X-Telegram-Bot-Api-Secret-Token missing or wrong, or no "
                "TELEGRAM_WEBHOOK_SECRET configured"
            },
            413: {"description": "Body over 1 MiB"},
            429: {"description": "Rate limit exceeded (see Retry-After)"},
            503: {"description": "Database unavailable; Telegram delivers the update again"},
        },
    )
    async def telegram_webhook(request: Request) -> Response:
        return await receive(request)

    return router


async def receive(request: Request) -> Response:
    """The route's handler, with the ingress the app's lifespan built."""
    state = getattr(request.app.state, "orchestrator", None)
    ingress: TelegramIngress | None = getattr(state, "telegram_ingress", None)
    if ingress is None:
        return Answer(503, {"error": "starting", "message": "Not ready yet; send it again."})
    return await receive_update(ingress, request)


async def receive_update(ingress: TelegramIngress, request: Request) -> Response:
    client = request.client
    client_ip = ingress.resolver.client_ip(client.host if client else None, forwarded_for(request))
    request.state.client_ip = client_ip
    decision = await ingress.rate_limit.check(ROUTE, client_ip or "unknown")
    if not decision.allowed:
        refused = _refuse(
            ingress,
            request,
            status=429,
            reason="rate_limited",
            message="Too many updates; try again later.",
            action=AuditAction.RATE_LIMIT_EXCEEDED,
        )
        refused.add_headers(decision.headers())
        return refused
    response = await _handle(ingress, request)
    if isinstance(response, Answer):
        response.add_headers(decision.headers())
    return response


async def _handle(ingress: TelegramIngress, request: Request) -> Response:
    # The secret first: a caller without it must not make us read a megabyte.
    if ingress.secret is None:
        return _refuse(
            ingress,
            request,
            status=403,
            reason="not_configured",
            message="TELEGRAM_WEBHOOK_SECRET is not configured, so no update can be verified; "
            "all are refused.",
            action=AuditAction.WEBHOOK_SIGNATURE_FAILED,
        )
    if not secret_matches(ingress.secret, request.headers.get(SECRET_HEADER)):
        return _refuse(
            ingress,
            request,
            status=403,
            reason="bad_secret",
            message="X-Telegram-Bot-Api-Secret-Token is missing or does not match.",
            action=AuditAction.WEBHOOK_SIGNATURE_FAILED,
        )
    try:
        body = await read_body(request, MAX_BODY_BYTES)
    except ClientHungUp:
        return hung_up(SOURCE, _NO_KIND)
    if body is None:
        return _refuse(ingress, request, status=413, reason="too_large", message="Body over 1 MiB.")
    update = parse_update(body)
    if update is None:
        return _refuse(
            ingress,
            request,
            status=400,
            reason="bad_update",
            message="Body is not a JSON object with an integer update_id, nested at most "
            f"{MAX_JSON_DEPTH} levels deep.",
        )
    headers = {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}
    event = event_from_update(
        update,
        # parse_update succeeded, so these are valid UTF-8 JSON bytes: kept as received.
        payload_json=body.decode("utf-8"),
        headers=headers,
        correlation_id=getattr(request.state, "correlation_id", None),
        client_ip=getattr(request.state, "client_ip", None),
    )
    update_id = update["update_id"]
    outcome = await store_update(ingress.writer, event)
    if outcome is Intake.UNAVAILABLE:
        return Answer(
            503,
            {"error": "unavailable", "message": "Could not store the update; send it again."},
            [(b"retry-after", b"5")],
        )
    if outcome is Intake.REFUSED:
        return Answer(400, {"error": "unstorable", "message": "The update could not be stored."})
    return Answer(200, {"status": outcome.value, "update_id": update_id})
