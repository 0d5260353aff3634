"""Names GitHub uses, reduced to what is safe to label metrics and key work with."""

from __future__ import annotations

import re
from typing import Any

from project_orchestrator import keys

# Metric labels come from this list only: a header is the caller's input, and an
# unbounded label would let anyone grow the metrics without limit.
KNOWN_EVENTS = frozenset(
    {
        "ping",
        "issue_comment",
        "issues",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "push",
        "check_run",
        "check_suite",
        "status",
        "workflow_run",
        "installation",
        "repository",
    }
)


def event_label(event_type: str | None) -> str:
    if not event_type:
        return "none"
    return event_type if event_type in KNOWN_EVENTS else "other"


def serial_key_for(payload: dict[str, Any]) -> str:
    """Events about one repository are handled one at a time, in order of arrival."""
    repository = payload.get("repository")
    if isinstance(repository, dict):
        full_name = repository.get("full_name")
        if isinstance(full_name, str) and full_name:
            return keys.github_serial(full_name)
    return keys.github_serial(None)


# GitHub's own limits: a login is at most 39 characters, a repository name at most 100.
MAX_OWNER_LENGTH = 39
MAX_NAME_LENGTH = 100
_PLAIN_NAME = re.compile(
    rf"[A-Za-z0-9_.-]{{1,{MAX_OWNER_LENGTH}}}/[A-Za-z0-9_.-]{{1,{MAX_NAME_LENGTH}}}"
)


def repository_problem(payload: dict[str, Any]) -> str | None:
    """Why `repository.full_name` cannot be a GitHub repository, or None when it can be
    (or is absent: not every event is about a repository)."""
    repository = payload.get("repository")
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(full_name, str):
        return None
    if _PLAIN_NAME.fullmatch(full_name):
        return None  # nearly every delivery: checked in one step
    owner, slash, name = full_name.partition("/")
    if not slash or "/" in name or not owner or not name:
        return "repository.full_name is not owner/name."
    if not full_name.isprintable() or any(c.isspace() for c in full_name):
        return "repository.full_name holds characters GitHub does not allow."
    if len(owner) > MAX_OWNER_LENGTH or len(name) > MAX_NAME_LENGTH:
        return (
            f"repository.full_name is longer than GitHub allows ({MAX_OWNER_LENGTH} characters "
            f"for the owner, {MAX_NAME_LENGTH} for the name)."
        )
    return None
