"""Names GitHub uses, reduced to what is safe to label metrics and key work with."""

from __future__ import annotations

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
