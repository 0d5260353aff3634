"""What every `orchestrator doctor` check returns, and the limits they share."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

import httpx

HTTP_TIMEOUT_SECONDS = 5.0
DATABASE_CONNECT_TIMEOUT_SECONDS = 3.0
DATABASE_TIMEOUT_SECONDS = 5.0
ANTHROPIC_VERSION = "2023-06-01"
GITHUB_API_VERSION = "2022-11-28"


class CheckStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: CheckStatus
    message: str
    hint: str | None = None


def ok(name: str, message: str) -> CheckResult:
    return CheckResult(name, CheckStatus.OK, message)


def warn(name: str, message: str, hint: str | None = None) -> CheckResult:
    return CheckResult(name, CheckStatus.WARN, message, hint)


def fail(name: str, message: str, hint: str | None = None) -> CheckResult:
    return CheckResult(name, CheckStatus.FAIL, message, hint)


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment (where credentials hide)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def http_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {HTTP_TIMEOUT_SECONDS:g} s"
    # Only the type: httpx's text carries the URL, which may carry a token.
    return type(exc).__name__
