"""POST /webhooks/github: verify, store with its job, acknowledge. Nothing else.

The checks run in the order CONTRACT.md fixes (IP, rate, size and type, headers,
signature, JSON) and every refusal is audited and counted. This is the hot path, so it
stays lean: no ORM, no model validation, orjson, one coalesced commit per batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from project_orchestrator import metrics
from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from project_orchestrator.events.models import EventSource
from project_orchestrator.events.writer import (
    EventWriter,
    NewEvent,
    StoreOutcome,
    StoreUnavailable,
)
from project_orchestrator.ingress.bodies import ClientHungUp, hung_up, read_body
from project_orchestrator.ingress.client_ip import ClientResolver, IpAllowList, forwarded_for
from project_orchestrator.ingress.exchange import Answer, RequestHeaders
from project_orchestrator.ingress.github.signature import signature_matches
from project_orchestrator.ingress.github.vocabulary import (
    event_label,
    repository_problem,
    serial_key_for,
)
from project_orchestrator.ingress.rate_limit import WebhookRateLimit
from project_orchestrator.jsonlimits import MAX_JSON_DEPTH, too_deep
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

ROUTE = "/webhooks/github"
MAX_BODY_BYTES = 25 * 1024 * 1024
SOURCE = "github"
# Headers worth keeping with the event; the signature is not needed once verified.
KEPT_HEADERS = (
    b"x-github-event",
    b"x-github-delivery",
    b"x-github-hook-id",
    b"x-github-hook-installation-target-id",
    b"x-github-hook-installation-target-type",
    b"user-agent",
)


@dataclass(frozen=True)
class GitHubIngress:
    writer: EventWriter
    audit: AuditLog
    secrets: tuple[bytes, ...]
    resolver: ClientResolver
    allow_list: IpAllowList | None  # None: filtering is off
    rate_limit: WebhookRateLimit


def _refuse(
    ingress: GitHubIngress,
    headers: RequestHeaders,
    client_ip: str | None,
    *,
    status: int,
    reason: str,
    message: str,
    action: AuditAction | None = None,
) -> Answer:
    event = event_label(headers.get(b"x-github-event"))
    metrics.webhook_events_total.labels(SOURCE, event, reason).inc()
    # The reason, never the payload or a signature: both are the caller's input.
    log.warning("webhook.refused", source=SOURCE, reason=reason, status=status, ip=client_ip)
    ingress.audit.record(
        action or AuditAction.UNAUTHORIZED_ACCESS,
        result=AuditResult.DENIED,
        details={
            "source": SOURCE,
            "reason": reason,
            "event": event,
            "delivery": (headers.get(b"x-github-delivery") or "")[:100] or None,
        },
        ip_address=client_ip,
    )
    return Answer(status, {"error": reason, "message": message})


def _plain_header(value: str) -> bool:
    # Starlette decodes header bytes as Latin-1: anything outside printable ASCII was not
    # a GitHub id, and would be stored garbled.
    return value.isascii() and value.isprintable()


def _is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    return value.split(";", 1)[0].strip().lower() == "application/json"


def build_router(receive: Callable[[Request], Awaitable[Response]]) -> APIRouter:
    """The documented route; `fast_path` serves the same handler without the framework."""
    router = APIRouter(tags=["webhooks"])

    @router.post(
        ROUTE,
        status_code=202,
        summary="Receive a GitHub webhook delivery",
        responses={
            200: {"description": "Duplicate delivery: already stored, nothing queued again"},
            400: {
                "description": "Missing or non-ASCII headers, a body that is not a JSON object, "
                f"JSON nested deeper than {MAX_JSON_DEPTH} levels, or a repository name GitHub "
                "would not allow"
            },
            403: {"description": "Address not allowed, or signature missing or wrong"},
            413: {"description": "Body over 25 MiB"},
            415: {"description": "Content type is not JSON"},
            429: {"description": "Rate limit exceeded (see Retry-After)"},
            503: {"description": "No webhook secret configured, or database unavailable"},
        },
    )
    async def github_webhook(request: Request) -> Response:
        return await receive(request)

    return router


async def receive_delivery(ingress: GitHubIngress, request: Request) -> Response:
    """Every check of CONTRACT.md, in its order; then store and acknowledge."""
    headers = RequestHeaders(request)
    client = request.client
    client_ip = ingress.resolver.client_ip(client.host if client else None, forwarded_for(request))
    if ingress.allow_list is not None and not ingress.allow_list.allows(client_ip):
        return _refuse(
            ingress,
            headers,
            client_ip,
            status=403,
            reason="ip_denied",
            message="This address may not deliver webhooks.",
            action=AuditAction.WEBHOOK_IP_DENIED,
        )
    decision = await ingress.rate_limit.check(ROUTE, client_ip or "unknown")
    if not decision.allowed:
        refused = _refuse(
            ingress,
            headers,
            client_ip,
            status=429,
            reason="rate_limited",
            message="Too many deliveries; try again later.",
            action=AuditAction.RATE_LIMIT_EXCEEDED,
        )
        refused.add_headers(decision.headers())
        return refused
    response = await _handle(ingress, request, headers, client_ip)
    if isinstance(response, Answer):
        response.add_headers(decision.headers())
    return response


async def _handle(
    ingress: GitHubIngress, request: Request, headers: RequestHeaders, client_ip: str | None
) -> Response:
    try:
        body = await read_body(request, MAX_BODY_BYTES)
    except ClientHungUp:
        return hung_up(SOURCE, event_label(headers.get(b"x-github-event")))
    if body is None:
        return _refuse(
            ingress, headers, client_ip, status=413, reason="too_large", message="Body over 25 MiB."
        )
    if not _is_json_content_type(headers.get(b"content-type")):
        return _refuse(
            ingress,
            headers,
            client_ip,
            status=415,
            reason="unsupported_media_type",
            message="Send the webhook with content type application/json.",
        )
    event_type = headers.get(b"x-github-event")
    delivery = headers.get(b"x-github-delivery")
    if not event_type or not delivery or len(delivery) > 200 or len(event_type) > 100:
        return _refuse(
            ingress,
            headers,
            client_ip,
            status=400,
            reason="missing_headers",
            message="X-GitHub-Event and X-GitHub-Delivery are required.",
        )
    if not (_plain_header(delivery) and _plain_header(event_type)):
        return _refuse(
            ingress,
            headers,
            client_ip,
            status=400,
            reason="bad_headers",
            message="X-GitHub-Event and X-GitHub-Delivery must be printable ASCII.",
        )
    if not ingress.secrets:
        return _refuse(
            ingress,
            headers,
            client_ip,
            status=503,
            reason="not_configured",
            message="No webhook secret is configured; unsigned deliveries are refused.",
        )
    if not signature_matches(headers.get(b"x-hub-signature-256"), body, ingress.secrets):
        return _refuse(
            ingress,
            headers,
            client_ip,
            status=403,
            reason="bad_signature",
            message="X-Hub-Signature-256 is missing or does not match.",
            action=AuditAction.WEBHOOK_SIGNATURE_FAILED,
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        return _refuse(
            ingress,
            headers,
            client_ip,
            status=400,
            reason="bad_json",
            message="Body is not a JSON object.",
        )
    if too_deep(body, payload):
        return _refuse(
            ingress,
            headers,
            client_ip,
            status=400,
            reason="too_deep",
            message=f"JSON nested deeper than {MAX_JSON_DEPTH} levels.",
        )
    problem = repository_problem(payload)
    if problem is not None:
        return _refuse(
            ingress, headers, client_ip, status=400, reason="bad_repository", message=problem
        )
    kept = {
        name.decode(): value for name in KEPT_HEADERS if (value := headers.get(name)) is not None
    }
    event = NewEvent(
        source=EventSource.GITHUB,
        external_id=delivery,
        event_type=event_type,
        serial_key=serial_key_for(payload),
        headers_json=orjson.dumps(kept).decode(),
        payload_json=body.decode("utf-8"),
        correlation_id=request.scope["state"].get("correlation_id"),
        client_ip=client_ip,
    )
    return await _store(ingress, event)


async def _store(ingress: GitHubIngress, event: NewEvent) -> Answer:
    label = event_label(event.event_type)
    delivery = event.external_id
    try:
        stored = await ingress.writer.store(event)
    except StoreUnavailable:
        metrics.webhook_events_total.labels(SOURCE, label, "unavailable").inc()
        return Answer(
            503,
            {"error": "unavailable", "message": "Could not store the delivery; send it again."},
            [(b"retry-after", b"5")],
        )
    except Exception as exc:
        # A row the database refuses (bad data) is the sender's fault, not an outage.
        metrics.webhook_events_total.labels(SOURCE, label, "refused").inc()
        log.warning("webhook.store_refused", error=type(exc).__name__, delivery=delivery)
        return Answer(400, {"error": "unstorable", "message": "The delivery could not be stored."})
    metrics.webhook_events_total.labels(SOURCE, label, stored.outcome.value).inc()
    if stored.outcome is StoreOutcome.DUPLICATE:
        return Answer(200, {"status": "duplicate", "delivery": delivery})
    return Answer(202, {"status": "accepted", "delivery": delivery})
