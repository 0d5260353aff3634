"""Whether a signed GitHub event has the fields its handler reads, with their types.

A signature proves who sent an event, not that it is well formed: a replayed example, a
hand-made test delivery or a GitHub change can leave out `issue` or send a number as
text. Such an event can never succeed, so it is ignored with the reason logged instead of
being retried until it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MISSING = object()


def _at(payload: Any, path: str) -> Any:
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(part, _MISSING)
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: Any) -> bool:
    return isinstance(value, dict)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _id(value: Any) -> bool:
    return _number(value) or _text(value)


def _optional_text(value: Any) -> bool:
    return value is _MISSING or value is None or isinstance(value, str)


def _optional_object(value: Any) -> bool:
    return value is _MISSING or value is None or isinstance(value, dict)


Check = Callable[[Any], bool]
_REPOSITORY: dict[str, Check] = {"repository": _object, "repository.full_name": _text}
_COMMENT: dict[str, Check] = {
    "comment": _object,
    "comment.id": _id,
    "comment.body": _optional_text,
    "comment.user": _optional_object,
    "comment.user.login": _optional_text,
}
# The fields each handled (event, action) reads; events not listed are not read at all.
_REQUIRED: dict[tuple[str, str], dict[str, Check]] = {
    ("issue_comment", "created"): {**_REPOSITORY, "issue": _object, "issue.number": _number}
    | _COMMENT,
    ("pull_request_review_comment", "created"): {
        **_REPOSITORY,
        "pull_request": _object,
        "pull_request.number": _number,
    }
    | _COMMENT,
    ("issues", "opened"): {
        **_REPOSITORY,
        "issue": _object,
        "issue.number": _number,
        "issue.body": _optional_text,
        "issue.user": _optional_object,
        "issue.user.login": _optional_text,
    },
    ("pull_request", "synchronize"): {
        **_REPOSITORY,
        "pull_request": _object,
        "pull_request.number": _number,
        "pull_request.head": _optional_object,
    },
    ("pull_request", "closed"): {
        **_REPOSITORY,
        "pull_request": _object,
        "pull_request.number": _number,
        "pull_request.merged_by": _optional_object,
        "sender": _optional_object,
    },
    ("check_suite", "completed"): {
        **_REPOSITORY,
        "check_suite": _object,
        "check_suite.head_sha": _text,
    },
    ("check_run", "completed"): {
        **_REPOSITORY,
        "check_run": _object,
        "check_run.head_sha": _text,
    },
}
# A commit status event has no `action`: it is keyed by None.
_STATUS: dict[str, Check] = {**_REPOSITORY, "sha": _text, "state": _text}
_REQUIRED[("issue_comment", "edited")] = _REQUIRED[("issue_comment", "created")]
_REQUIRED[("pull_request_review_comment", "edited")] = _REQUIRED[
    ("pull_request_review_comment", "created")
]


def shape_problem(event_type: str, payload: Any) -> str | None:
    """The first field the handler of this event would trip over, or None."""
    if not isinstance(payload, dict):
        return "the payload is not an object"
    action = payload.get("action")
    required = _REQUIRED.get((event_type, action)) if isinstance(action, str) else None
    if event_type == "status":
        required = _STATUS
    for path, valid in (required or {}).items():
        if not valid(_at(payload, path)):
            return f"`{path}` is missing or of the wrong type"
    return None
