"""One error base class carrying an HTTP status; expected refusals are 4xx."""

from __future__ import annotations


class OrchestratorError(Exception):
    """An expected failure with a message safe to show to the caller."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class ConfigurationError(OrchestratorError):
    status_code = 500
    code = "configuration_error"


class NotFoundError(OrchestratorError):
    status_code = 404
    code = "not_found"


class ForbiddenError(OrchestratorError):
    status_code = 403
    code = "forbidden"


class UnauthorizedError(OrchestratorError):
    status_code = 401
    code = "unauthorized"


class ConflictError(OrchestratorError):
    status_code = 409
    code = "conflict"
