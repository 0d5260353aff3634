"""/api/v1/events: inspect inbound events and replay one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import Text, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.api.auth import db_session, require_api_key
from project_orchestrator.api.schemas import MAX_BIGINT, error_responses
from project_orchestrator.api.state import AppState, app_state
from project_orchestrator.audit import AuditAction
from project_orchestrator.errors import NotFoundError
from project_orchestrator.events.models import EventStatus, InboundEvent
from project_orchestrator.events.replay import UnknownEvent, replay_event
from project_orchestrator.jsonlimits import MAX_JSON_DEPTH, too_deep

router = APIRouter(
    prefix="/api/v1/events", tags=["events"], dependencies=[Depends(require_api_key)]
)
# scope="function": commit before the response goes out, so a 2xx means it is stored.
Session = Annotated[AsyncSession, Depends(db_session, scope="function")]
EventId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]


class EventSummary(BaseModel):
    id: int
    source: str
    external_id: str
    event_type: str
    status: EventStatus
    attempts: int
    last_error: str | None
    correlation_id: str | None
    received_at: datetime
    handled_at: datetime | None


class EventDetail(EventSummary):
    headers: dict[str, Any]
    payload: Any = Field(
        description="The payload as JSON; as the stored text for one nested deeper than "
        f"{MAX_JSON_DEPTH} levels"
    )


class ReplayAccepted(BaseModel):
    status: str = "queued"
    event_id: int


def _summary(event: InboundEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "source": event.source.value,
        "external_id": event.external_id,
        "event_type": event.event_type,
        "status": event.status,
        "attempts": event.attempts,
        "last_error": event.last_error,
        "correlation_id": event.correlation_id,
        "received_at": event.received_at,
        "handled_at": event.handled_at,
    }


@router.get("", response_model=list[EventSummary], responses=error_responses())
async def list_events(
    session: Session,
    failed: Annotated[bool, Query(description="Only events that ran out of attempts")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    query = select(InboundEvent).order_by(InboundEvent.id.desc()).limit(limit)
    if failed:
        query = query.where(InboundEvent.status == EventStatus.FAILED)
    return [_summary(e) for e in (await session.execute(query)).scalars()]


def _shown_payload(stored: str) -> Any:
    """The payload as JSON, or as the stored text when it cannot be shown as JSON (nested
    deeper than any sender's, as events stored before the ingress refused those were)."""
    try:
        payload = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return stored
    return stored if too_deep(stored.encode(), payload) else payload


@router.get("/{event_id}", response_model=EventDetail, responses=error_responses(404))
async def get_event(event_id: EventId, session: Session) -> dict[str, Any]:
    event = await session.get(InboundEvent, event_id)
    if event is None:
        raise NotFoundError(f"There is no event {event_id}.")
    # The stored text, decoded here under the depth limit, never by the ORM's decoder.
    stored = (
        await session.execute(
            select(cast(InboundEvent.payload, Text)).where(InboundEvent.id == event_id)
        )
    ).scalar_one()
    return {**_summary(event), "headers": event.headers, "payload": _shown_payload(stored)}


@router.post(
    "/{event_id}/replay",
    status_code=202,
    response_model=ReplayAccepted,
    responses=error_responses(404),
)
async def replay(
    event_id: EventId, session: Session, state: Annotated[AppState, Depends(app_state)]
) -> ReplayAccepted:
    try:
        await replay_event(session, event_id)
    except UnknownEvent as exc:
        raise NotFoundError(str(exc)) from None
    state.audit.record(
        AuditAction.EVENT_REPLAYED, user_id="api", details={"event_id": event_id, "via": "api"}
    )
    return ReplayAccepted(event_id=event_id)
