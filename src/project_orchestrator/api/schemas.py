"""Shapes shared by the JSON API's routes."""

from __future__ import annotations

from pydantic import BaseModel

from project_orchestrator.jsonlimits import MAX_JSON_DEPTH

# Ids and offsets past PostgreSQL's bigint are refused as input (422), not at the driver.
MAX_BIGINT = 2**63 - 1


class ErrorBody(BaseModel):
    error: str
    message: str


# What any /api/v1 route may answer: the API's door (api.guard) before the route runs,
# and the database being away.
_EVERY_ROUTE: dict[int, str] = {
    401: "Missing or wrong `Authorization: Bearer <API_KEY>`",
    429: "Too many failed authentications from this address (see Retry-After)",
    503: "The database is unavailable (see Retry-After)",
}
BODY_REFUSALS: dict[int | str, dict[str, object]] = {
    400: {
        "model": ErrorBody,
        "description": f"The body is not UTF-8 JSON, or nests deeper than {MAX_JSON_DEPTH} levels",
    },
    413: {"model": ErrorBody, "description": "Body over 1 MiB"},
}


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """What every /api/v1 route may answer plus the given codes, for OpenAPI."""
    responses: dict[int | str, dict[str, object]] = {
        code: {"model": ErrorBody, "description": text} for code, text in _EVERY_ROUTE.items()
    }
    responses.update({code: {"model": ErrorBody} for code in codes})
    return responses
