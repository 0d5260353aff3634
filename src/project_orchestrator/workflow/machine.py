"""The workflow as a table of transitions: which phase follows which, and what each runs.

Pure functions only: the service applies them to rows, the tests check them exhaustively.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from project_orchestrator.workflow.models import GateKind, Phase, RunKind, RunStatus

PHASE_ORDER: tuple[Phase, ...] = (
    Phase.VISION,
    Phase.PRIME,
    Phase.PLAN,
    Phase.EXECUTE,
    Phase.VALIDATE,
    Phase.CHECKS,
    Phase.MERGE,
)

# Phases the worker runs by itself: one SCAR command each, except the checks phase, which
# reads GitHub's verdict on the pull request. The vision phase is a conversation and the
# merge phase waits for its gate before its command runs.
AUTOMATIC_PHASES = frozenset({Phase.PRIME, Phase.PLAN, Phase.EXECUTE, Phase.VALIDATE, Phase.CHECKS})
# Failures that code fixes: approving the error gate (or a fix by itself) builds again.
FIXED_BY_BUILDING = frozenset({Phase.VALIDATE, Phase.CHECKS})

# SCAR commands that change code: they run only inside a run, after the gate covering them.
CODE_CHANGING_COMMANDS = frozenset({"execute-github", "merge-pr"})


def first_phase(kind: RunKind) -> Phase:
    return Phase.VISION if kind is RunKind.INITIAL else Phase.PRIME


@dataclass(frozen=True)
class StartPhase:
    phase: Phase


@dataclass(frozen=True)
class OpenGate:
    kind: GateKind


@dataclass(frozen=True)
class CompleteRun:
    pass


Next = StartPhase | OpenGate | CompleteRun


def after_success(phase: Phase) -> Next:
    """What follows a phase that finished well."""
    match phase:
        case Phase.VISION:
            return OpenGate(GateKind.VISION)
        case Phase.PRIME:
            return StartPhase(Phase.PLAN)
        case Phase.PLAN:
            return OpenGate(GateKind.PLAN)
        case Phase.EXECUTE:
            return StartPhase(Phase.VALIDATE)
        case Phase.VALIDATE:
            return StartPhase(Phase.CHECKS)
        case Phase.CHECKS:
            return OpenGate(GateKind.MERGE)
        case Phase.MERGE:
            return CompleteRun()


def after_approval(gate: GateKind, failed_phase: Phase | None) -> StartPhase:
    """The phase an approved gate lets run.

    Approving an error-resolution gate means "fix it": a failed validation, or checks that
    failed on GitHub, go back to execute (with the failure as feedback) and are validated
    again; any other failed phase is tried again.
    """
    match gate:
        case GateKind.VISION:
            return StartPhase(Phase.PRIME)
        case GateKind.PLAN:
            return StartPhase(Phase.EXECUTE)
        case GateKind.MERGE:
            return StartPhase(Phase.MERGE)
        case GateKind.ERROR_RESOLUTION:
            if failed_phase is None:
                raise ValueError("an error-resolution gate needs the phase that failed")
            return StartPhase(Phase.EXECUTE if failed_phase in FIXED_BY_BUILDING else failed_phase)


@dataclass(frozen=True)
class HoldRun:
    pass


@dataclass(frozen=True)
class KeepBrainstorming:
    pass


AfterRejection = StartPhase | HoldRun | KeepBrainstorming


def after_rejection(gate: GateKind) -> AfterRejection:
    """Rejection carries feedback into the next attempt; rejecting a fix pauses the run."""
    match gate:
        case GateKind.VISION:
            return KeepBrainstorming()
        case GateKind.PLAN:
            return StartPhase(Phase.PLAN)
        case GateKind.MERGE:
            return StartPhase(Phase.EXECUTE)
        case GateKind.ERROR_RESOLUTION:
            return HoldRun()


def can_hold(status: RunStatus) -> bool:
    return status in (RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL)


@dataclass(frozen=True)
class ScarStep:
    command: str
    args: str


def _quoted(text: str) -> str:
    """One line in double quotes: SCAR reads the command as a single line."""
    flat = " ".join(text.replace('"', "'").split())
    return f'"{flat}"'


_PLAN_FILE = re.compile(r"[\w./-]*\.agents/plans/[\w./-]+\.md|[\w./-]+/plans?/[\w./-]+\.md")


def plan_reference(plan_output: str) -> str:
    """The plan file SCAR wrote, or the plan itself when it names no file."""
    found = _PLAN_FILE.findall(plan_output)
    return found[-1] if found else _quoted(plan_output[:500])


def fix_request(report: str) -> str:
    """What SCAR is asked when checks failed on GitHub: fix exactly those, same branch."""
    return (
        "The pull request's checks failed on GitHub. Fix what they report, on the same "
        f"branch and pull request, without changing anything else. {report}"
    )


def branch_name(feature: str, run_number: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", feature.lower()).strip("-")[:40].strip("-") or "feature"
    return f"feature/{slug}-{run_number}"


VISION_PATH = "docs/vision.md"


def plan_request(feature: str, vision_brief: str | None, feedback: str | None) -> str:
    """What SCAR is asked to plan: the person's words, the approved vision, the feedback.

    The vision travels in the command itself, so the plan cannot miss it even when SCAR's
    copy of the repository predates the vision file.
    """
    parts = [feature.rstrip(". ") + "."]
    if vision_brief:
        parts.append(
            f"Build it as the approved vision describes (full text in {VISION_PATH}): "
            f"{vision_brief}"
        )
    if feedback:
        parts.append(f"Feedback on the last plan, to take into account: {feedback}")
    return " ".join(parts)


def scar_step(
    phase: Phase,
    *,
    feature: str,
    feedback: str | None,
    plan_output: str | None,
    branch: str,
    pr_number: int | None,
    vision_brief: str | None = None,
) -> ScarStep:
    """The SCAR command a phase attempt runs."""
    match phase:
        case Phase.PRIME:
            return ScarStep("prime", "")
        case Phase.PLAN:
            return ScarStep(
                "plan-feature-github", _quoted(plan_request(feature, vision_brief, feedback))
            )
        case Phase.EXECUTE:
            args = f"{plan_reference(plan_output or feature)} {branch}"
            if feedback:
                args += " " + _quoted(f"Also fix: {feedback}")
            return ScarStep("execute-github", args)
        case Phase.VALIDATE:
            return ScarStep("validate", "")
        case Phase.MERGE:
            if pr_number is None:
                raise ValueError("there is no pull request to merge")
            return ScarStep("merge-pr", str(pr_number))
        case Phase.VISION:
            raise ValueError("the vision phase is a conversation, not a SCAR command")
        case Phase.CHECKS:
            raise ValueError("the checks phase reads GitHub, not a SCAR command")


_VALIDATION_FAILED = re.compile(
    r"❌|\bfail(?:ed|ing|ures?)?\b|\berrors? found\b|\bnot pass", re.IGNORECASE
)
_VALIDATION_PASSED = re.compile(
    r"all (?:checks|tests) pass|✅|\b0 fail|\bno (?:errors|failures)\b", re.IGNORECASE
)


def validation_failed(report: str) -> bool:
    """SCAR reports validation in prose; a failure word without an all-clear is a failure."""
    if _VALIDATION_FAILED.search(report) is None:
        return False
    return _VALIDATION_PASSED.search(report) is None or "❌" in report


def artifact_version(kind: str, content: str) -> str:
    return f"{kind}:{hashlib.sha256(content.encode()).hexdigest()}"
