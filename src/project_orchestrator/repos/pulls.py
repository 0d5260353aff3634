"""What GitHub says about a pull request, and whether that lets it merge.

GitHub answers in three places: the pull request itself (`mergeable`, `mergeable_state`,
merged or closed), the check runs on its head commit (GitHub Actions and other apps) and
the commit statuses on it (older CI services). The branch's protection names the checks
that are required; a token without admin rights may not read it, and then every check
counts. `verdict` turns one reading into what the workflow needs to know, in plain words.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

# Check run conclusions and status states that mean "this check failed".
_FAILED_CONCLUSIONS = frozenset(
    {"failure", "timed_out", "cancelled", "action_required", "startup_failure", "stale"}
)
_FAILED_STATES = frozenset({"failure", "error"})
SUMMARY_LIMIT = 600


class CheckState(enum.StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class Check:
    """One check on the head commit: a check run or a commit status, reduced."""

    name: str
    state: CheckState
    summary: str = ""

    @classmethod
    def from_check_run(
        cls, name: str, status: str | None, conclusion: str | None, summary: str = ""
    ) -> Check:
        if status != "completed":
            return cls(name, CheckState.PENDING, summary)
        failed = (conclusion or "") in _FAILED_CONCLUSIONS
        return cls(name, CheckState.FAILED if failed else CheckState.PASSED, summary)

    @classmethod
    def from_status(cls, context: str, state: str | None, description: str = "") -> Check:
        if state == "success":
            return cls(context, CheckState.PASSED, description)
        if state in _FAILED_STATES:
            return cls(context, CheckState.FAILED, description)
        return cls(context, CheckState.PENDING, description)


@dataclass(frozen=True)
class PullRequestReading:
    number: int
    state: str  # "open" or "closed"
    merged: bool
    draft: bool
    # None while GitHub is still working it out (it starts when someone asks).
    mergeable: bool | None
    mergeable_state: str
    head_sha: str
    checks: tuple[Check, ...] = ()
    # The checks branch protection requires; None when the token may not read them.
    required: frozenset[str] | None = None


class PullRequests(Protocol):
    async def read_pull_request(self, full_name: str, number: int) -> PullRequestReading:
        """The pull request, its mergeability and the checks on its head commit."""
        ...


class Readiness(enum.StrEnum):
    READY = "ready"
    PENDING = "pending"  # wait: GitHub or the checks are not done
    FAILING = "failing"  # checks failed: SCAR can try to fix them
    BLOCKED = "blocked"  # something a person (or SCAR, if asked) must change
    MERGED = "merged"
    CLOSED = "closed"


@dataclass(frozen=True)
class Verdict:
    readiness: Readiness
    # Plain words for the person: why it can or cannot merge yet.
    reason: str
    failing: tuple[Check, ...] = ()
    # GitHub has yet to work out mergeability: worth asking again soon.
    computing: bool = False

    def failure_report(self) -> str:
        """What failed, check by check, for the person and for SCAR's fix."""
        lines = [self.reason]
        for check in self.failing:
            summary = " ".join(check.summary.split())[:SUMMARY_LIMIT]
            lines.append(f"- {check.name}" + (f": {summary}" if summary else ""))
        return "\n".join(lines)


def latest_per_name(checks: Iterable[Check]) -> list[Check]:
    """GitHub lists newest first; a check re-run under the same name replaces the old."""
    seen: dict[str, Check] = {}
    for check in checks:
        seen.setdefault(check.name, check)
    return list(seen.values())


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _names(checks: Iterable[Check]) -> str:
    return ", ".join(check.name for check in checks)


def verdict(reading: PullRequestReading) -> Verdict:
    """Whether GitHub would merge the pull request now, and if not, why."""
    return (
        _state_verdict(reading)
        or _checks_verdict(reading)
        or _rules_verdict(reading)
        or _ready(reading)
    )


def _state_verdict(reading: PullRequestReading) -> Verdict | None:
    number = reading.number
    if reading.merged:
        return Verdict(Readiness.MERGED, f"Pull request #{number} was merged on GitHub.")
    if reading.state != "open":
        return Verdict(Readiness.CLOSED, f"Pull request #{number} was closed without merging.")
    if reading.draft:
        return Verdict(
            Readiness.BLOCKED,
            f"Pull request #{number} is marked as a draft on GitHub; mark it ready for review "
            "so it can be merged.",
        )
    if reading.mergeable is False or reading.mergeable_state == "dirty":
        return Verdict(
            Readiness.BLOCKED,
            f"Pull request #{number} has conflicts with the branch it merges into: the same "
            "lines were changed there meanwhile.",
        )
    return None


def _counted(reading: PullRequestReading) -> tuple[list[Check], list[Check]]:
    """Every check (latest per name), and those that decide: the required ones if known."""
    checks = latest_per_name(reading.checks)
    if reading.required is None:
        return checks, checks
    return checks, [c for c in checks if c.name in reading.required]


def _checks_verdict(reading: PullRequestReading) -> Verdict | None:
    checks, counted = _counted(reading)
    failing = tuple(c for c in counted if c.state is CheckState.FAILED)
    if failing:
        return Verdict(
            Readiness.FAILING,
            f"{_count(len(failing), 'check')} failed on pull request #{reading.number}: "
            f"{_names(failing)}.",
            failing=failing,
        )
    reported = {c.name for c in checks}
    missing = sorted((reading.required or frozenset()) - reported)
    waiting = [c.name for c in counted if c.state is CheckState.PENDING] + missing
    if waiting:
        return Verdict(
            Readiness.PENDING,
            f"Waiting for {_count(len(waiting), 'check')} to finish: {', '.join(waiting)}.",
        )
    return None


def _rules_verdict(reading: PullRequestReading) -> Verdict | None:
    number = reading.number
    if reading.mergeable is None or reading.mergeable_state == "unknown":
        return Verdict(
            Readiness.PENDING,
            "GitHub is still working out whether the pull request can merge.",
            computing=True,
        )
    if reading.mergeable_state == "behind":
        return Verdict(
            Readiness.BLOCKED,
            f"Pull request #{number} is behind the branch it merges into, and the repository "
            "requires it to be up to date first.",
        )
    if reading.mergeable_state == "blocked":
        # Checks are green, so what blocks it is a rule of the repository: a review most often.
        return Verdict(
            Readiness.PENDING,
            f"GitHub will not merge pull request #{number} yet: the repository's rules ask for "
            "something more, usually an approving review.",
        )
    return None


def _ready(reading: PullRequestReading) -> Verdict:
    checks, counted = _counted(reading)
    passed = sum(1 for c in counted if c.state is CheckState.PASSED)
    evidence = f"its {_count(passed, 'check')} passed" if passed else "no checks run on it"
    if reading.required is not None:
        evidence = f"its {_count(passed, 'required check')} passed"
        optional = [c for c in checks if c not in counted and c.state is CheckState.FAILED]
        if optional:
            evidence += f" (checks that are not required failed: {_names(optional)})"
    return Verdict(
        Readiness.READY, f"GitHub says pull request #{reading.number} can merge; {evidence}."
    )
