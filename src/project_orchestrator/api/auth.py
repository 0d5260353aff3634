"""Bearer-token authentication for /api/v1 and the per-request database session."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.api.state import AppState, app_state
from project_orchestrator.audit import AuditAction, AuditResult
from project_orchestrator.errors import UnauthorizedError

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API_KEY>")


async def require_api_key(
    request: Request,
    state: Annotated[AppState, Depends(app_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected = state.settings.api_key
    given = credentials.credentials if credentials else ""
    # No key configured means no API, rather than an open one.
    if expected is None or not hmac.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    ):
        state.audit.record(
            AuditAction.UNAUTHORIZED_ACCESS,
            result=AuditResult.DENIED,
            details={"path": request.url.path, "reason": "bad or missing API key"},
            ip_address=request.client.host if request.client else None,
        )
        raise UnauthorizedError("A valid `Authorization: Bearer <API_KEY>` header is required.")


async def db_session(state: Annotated[AppState, Depends(app_state)]) -> AsyncIterator[AsyncSession]:
    """One session per request, committed when the request succeeds (the edge commits)."""
    async with state.db.session_scope() as session:
        yield session
