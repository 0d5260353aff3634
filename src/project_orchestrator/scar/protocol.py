"""What the workflow asks of SCAR, whichever transport carries it (HTTP adapter or GitHub)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

# Called just before the command itself goes to SCAR, so a later attempt knows that SCAR
# may have it (and reads SCAR's answers instead of sending it again).
SendHook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ScarInvocation:
    # One SCAR conversation per workflow run: SCAR keeps one AI session per conversation,
    # so what `prime` read is still known when `plan` runs.
    conversation_id: str
    repo: str  # "owner/name"
    repo_url: str  # clone URL, e.g. "https://github.com/owner/name"
    command: str  # "prime", "plan-feature-github", "execute-github", "validate", "merge-pr"
    args: str = ""  # already quoted by the caller, e.g. '"Add a login page"'
    # Deterministic per stored command: a retry reuses it (the GitHub transport keys its
    # comment with it, so the command is never posted twice). Defaults to the conversation.
    command_key: str = ""
    # The workspace folder SCAR keeps the repository in, once SCAR has said it.
    codebase: str | None = None
    # The conversation has no repository open yet (its first command): open it first.
    # `/repo` starts a new AI session, so it is never sent in the middle of a run.
    open_repository: bool = True
    # An earlier attempt may already have handed this command to SCAR.
    sent_before: bool = False

    @property
    def key(self) -> str:
        return self.command_key or self.conversation_id

    @property
    def repo_name(self) -> str:
        """The repository's name (SCAR's folder may differ: see `codebase`)."""
        return self.repo.rsplit("/", 1)[-1]

    @property
    def text(self) -> str:
        return f"/command-invoke {self.command} {self.args}".rstrip()


@dataclass(frozen=True)
class ScarOutput:
    text: str  # the result messages joined by a blank line
    messages: tuple[str, ...]  # every result message, in order (ack and progress removed)
    codebase: str | None = None  # the workspace folder SCAR worked in, when it said


class ScarError(Exception):
    """A failure told in plain language: the message is shown to non-technical people."""

    @property
    def message(self) -> str:
        return str(self)


class ScarCommandFailed(ScarError):
    """SCAR answered, but the command did not run or ended in an error."""

    def __init__(self, message: str, *, answer: str | None = None) -> None:
        super().__init__(message)
        # SCAR's own words, kept for operators (the message is the readable version).
        self.answer = answer


class ScarTimedOut(ScarError):
    """SCAR was still working when the time allowed for the command ran out."""

    @classmethod
    def after(cls, command: str, seconds: float) -> ScarTimedOut:
        return cls(f"SCAR did not finish {command} within {_duration(seconds)}.")


def _duration(seconds: float) -> str:
    if seconds >= 60:
        minutes = round(seconds / 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


class ScarUnavailable(ScarError):
    """SCAR could not be reached or answered nonsense: worth retrying later."""


class ScarClient(Protocol):
    async def run(
        self, invocation: ScarInvocation, *, on_send: SendHook | None = None
    ) -> ScarOutput: ...
