"""The repositories the orchestrator creates for projects, and the files it commits there.

`ensure_repository` is safe to repeat after a crash: the repository's description carries a
marker (the project's own), so a later attempt recognises the repository an earlier one
created, even when that attempt never saw GitHub's answer.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

from pgqueuer.errors import RetryRequested

from project_orchestrator.errors import OrchestratorError

MAX_NAME_LENGTH = 100
# `name`, `name-2`, ... `name-20`: beyond that the project name itself should change.
MAX_CANDIDATES = 20
FALLBACK_NAME = "project"
# GitHub keeps descriptions short; the marker must survive, so the free text gives way.
MAX_DESCRIPTION_LENGTH = 350
VALID_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@dataclass(frozen=True)
class HostedRepository:
    full_name: str
    html_url: str
    clone_url: str
    default_branch: str
    created: bool  # False: it already existed (an earlier attempt made it)


class RepositoryError(OrchestratorError):
    """GitHub would not do what was asked; the message is plain and never holds the token.

    `transient` is True for failures worth retrying as they are (GitHub's 5xx, timeouts,
    unreachable); False when something must change first (permissions, names, settings).
    """

    status_code = 502
    code = "repository_error"

    def __init__(
        self, message: str, *, github_status: int | None = None, transient: bool = False
    ) -> None:
        super().__init__(message)
        self.github_status = github_status
        self.transient = transient


class RepositoryRateLimited(RetryRequested):
    """GitHub asked us to wait `delay`; raised from a job, the queue runs it again then."""


class RepositoryHost(Protocol):
    async def ensure_repository(
        self, owner: str, name: str, *, private: bool, marker: str, description: str
    ) -> HostedRepository:
        """The repository for the project that `marker` names, created when none exists:
        under `owner` (the token's own account or an organisation), called `name` or, when
        that is taken by something else, `name-2`, `name-3`, ..."""
        ...

    async def publish_file(
        self, full_name: str, path: str, content: str, message: str, *, branch: str | None = None
    ) -> bool:
        """Commit `content` at `path` (default branch unless `branch`); False, and no
        commit, when the file already says exactly that."""
        ...

    async def read_file(
        self, full_name: str, path: str, *, branch: str | None = None
    ) -> str | None:
        """The file's text, or None when there is no such file."""
        ...


def repository_name(project_name: str) -> str:
    """A valid GitHub repository name for a project: "My Café App!" -> "my-cafe-app"."""
    ascii_text = unicodedata.normalize("NFKD", project_name).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9_.-]+", "-", ascii_text.lower())
    name = re.sub(r"([-_.])[-_.]+", r"\1", name).strip("-_.")
    name = name[:MAX_NAME_LENGTH].rstrip("-_.")
    # Clients and SCAR treat a ".git" ending as part of the URL, not of the name.
    while name.endswith(".git"):
        name = name.removesuffix(".git").rstrip("-_.")
    return name or FALLBACK_NAME


def check_name(name: str) -> None:
    if not VALID_NAME.fullmatch(name) or name.startswith("."):
        raise ValueError(f"not a valid GitHub repository name: {name!r}")


def candidate_names(name: str, count: int = MAX_CANDIDATES) -> list[str]:
    """`name`, `name-2`, ... each cut to fit GitHub's 100 characters with its suffix."""
    names = []
    for n in range(1, count + 1):
        suffix = "" if n == 1 else f"-{n}"
        names.append(name[: MAX_NAME_LENGTH - len(suffix)] + suffix)
    return names


def marked_description(description: str, marker: str) -> str:
    """One line (GitHub refuses control characters) ending in the marker."""
    if not marker.strip() or marker != " ".join(marker.split()):
        raise ValueError("the marker must be non-empty text on one line without extra spaces")
    room = MAX_DESCRIPTION_LENGTH - len(marker) - 1
    if room < 0:
        raise ValueError("the marker is too long for a GitHub description")
    text = " ".join(description.split())
    if len(text) > room:
        text = text[: room - 1].rstrip() + "…" if room > 1 else ""
    return f"{text} {marker}" if text else marker


def blob_sha(data: bytes) -> str:
    """Git's id for a file's content: what the contents API reports as the file's `sha`."""
    header = f"blob {len(data)}\0".encode()
    return hashlib.sha1(header + data, usedforsecurity=False).hexdigest()
