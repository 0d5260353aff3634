"""/api/v1/reports: what the builds of a period came to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.api.auth import db_session, require_api_key
from project_orchestrator.api.schemas import error_responses
from project_orchestrator.workflow.report import (
    Summary,
    parse_period,
    render_markdown,
    summarise,
)

router = APIRouter(
    prefix="/api/v1/reports", tags=["reports"], dependencies=[Depends(require_api_key)]
)
Session = Annotated[AsyncSession, Depends(db_session, scope="function")]


@router.get(
    "/summary",
    response_model=Summary,
    responses={
        **error_responses(),
        200: {"content": {"text/markdown": {"schema": {"type": "string"}}}},
    },
)
async def summary(
    session: Session,
    since: Annotated[
        str,
        Query(
            max_length=20,
            description="How far back: a number and a unit (m, h, d, w), such as 7d",
        ),
    ] = "7d",
    output_format: Annotated[
        Literal["json", "markdown"],
        Query(alias="format", description="json, or Markdown to paste into a chat"),
    ] = "json",
) -> Any:
    try:
        period = parse_period(since)
    except ValueError as exc:
        # Refused as FastAPI refuses any other bad query parameter: one 422 shape.
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "since"), "msg": str(exc), "input": since}]
        ) from None
    until = datetime.now(UTC)
    report = await summarise(session, since=until - period, until=until)
    if output_format == "markdown":
        return PlainTextResponse(render_markdown(report), media_type="text/markdown")
    return report
