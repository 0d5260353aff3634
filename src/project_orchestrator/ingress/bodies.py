"""Reading a webhook's body: bounded, and telling a sender who hung up from a server error.

A client that goes away half-way through its body is not our failure: nothing was stored,
nobody is left to answer, and the sender (GitHub, Telegram) sends it again. It is counted
under its own outcome and answered 499 (nginx's "client closed request", for the request
log and metrics only: the socket is gone), never 500.
"""

from __future__ import annotations

from fastapi.responses import Response
from starlette.requests import ClientDisconnect, Request

from project_orchestrator import metrics
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

CLIENT_CLOSED_REQUEST = 499


class ClientHungUp(Exception):
    """The sender disconnected before its body was complete."""


async def read_body(request: Request, max_bytes: int) -> bytes | None:
    """The raw body, or None when it is larger than `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientHungUp from None
    return b"".join(chunks)


def hung_up(source: str, event: str) -> Response:
    metrics.webhook_events_total.labels(source, event, "client_disconnected").inc()
    log.info("webhook.client_disconnected", source=source)
    return Response(status_code=CLIENT_CLOSED_REQUEST)
