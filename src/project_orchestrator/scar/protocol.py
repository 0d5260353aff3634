"""What the workflow asks of SCAR, whichever transport carries it (HTTP adapter or GitHub)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ScarInvocation:
    # Deterministic per stored command: a retry reuses it, which is how a transport finds
    # what an earlier attempt already sent instead of sending it again.
    conversation_id: str
    repo: str  # "owner/name"
    repo_url: str  # clone URL, e.g. "https://github.com/owner/name"
    command: str  # "prime", "plan-feature-github", "execute-github", "validate", "merge-pr"
    args: str = ""  # already quoted by the caller, e.g. '"Add a login page"'

    @property
    def repo_name(self) -> str:
        """The folder SCAR clones the repository into (the part after the slash)."""
        return self.repo.rsplit("/", 1)[-1]

    @property
    def text(self) -> str:
        return f"/command-invoke {self.command} {self.args}".rstrip()


@dataclass(frozen=True)
class ScarOutput:
    text: str  # the result messages joined by a blank line
    messages: tuple[str, ...]  # every result message, in order (ack and progress removed)


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
    async def run(self, invocation: ScarInvocation) -> ScarOutput: ...
