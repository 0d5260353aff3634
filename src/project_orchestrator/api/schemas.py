"""Shapes shared by the JSON API's routes."""

from __future__ import annotations

from pydantic import BaseModel

# Ids and offsets past PostgreSQL's bigint are refused as input (422), not at the driver.
MAX_BIGINT = 2**63 - 1


class ErrorBody(BaseModel):
    error: str
    message: str


class UnreadableBody(BaseModel):
    """FastAPI's own answer when a body is not UTF-8 JSON at all."""

    detail: str


UNREADABLE_BODY: dict[int | str, dict[str, object]] = {
    400: {"model": UnreadableBody, "description": "The body could not be read as JSON"}
}


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """401 (every /api/v1 route needs the key) plus the given codes, for OpenAPI."""
    return {code: {"model": ErrorBody} for code in (401, *codes)}
