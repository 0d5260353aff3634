"""Telling the person where their build stands, in plain words, on every channel.

`announce` is safe to call any number of times: the progress message is edited in place
and each question or closing message has its own key, so retries never repeat them.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator import keys
from project_orchestrator.channels.base import GateQuestion, Notifier, ProjectAddress
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.models import Project
from project_orchestrator.projects.page_links import page_link
from project_orchestrator.projects.spending import RunSpending, run_spending
from project_orchestrator.scar.protocol import ScarError, ScarUnavailable
from project_orchestrator.vision.models import VisionDocument
from project_orchestrator.workflow.machine import PHASE_ORDER
from project_orchestrator.workflow.models import (
    ApprovalGate,
    GateKind,
    GateStatus,
    Phase,
    PhaseStatus,
    RunKind,
    RunStatus,
    WorkflowPhase,
    WorkflowRun,
)

log = get_logger(__name__)

PHASE_NAMES = {
    Phase.VISION: "Vision: agree on what we are building",
    Phase.PRIME: "Prime: SCAR reads the project",
    Phase.PLAN: "Plan: SCAR plans the change",
    Phase.EXECUTE: "Build: SCAR writes the code and opens a pull request",
    Phase.VALIDATE: "Check: SCAR tests the change",
    Phase.CHECKS: "GitHub: the pull request can merge and its checks pass",
    Phase.MERGE: "Merge: the change goes live",
}

PHASE_STATE = {
    PhaseStatus.PENDING: "up next",
    PhaseStatus.RUNNING: "working on it…",
    PhaseStatus.SUCCEEDED: "done",
    PhaseStatus.FAILED: "ran into a problem",
    PhaseStatus.SKIPPED: "set aside",
    PhaseStatus.CANCELLED: "stopped",
}

RUN_STATE = {
    RunStatus.RUNNING: "in progress",
    RunStatus.AWAITING_APPROVAL: "waiting for your decision",
    RunStatus.ON_HOLD: "on hold (say `/resume` to continue)",
    RunStatus.COMPLETED: "finished",
    RunStatus.CANCELLED: "cancelled",
    RunStatus.FAILED: "failed",
}

_GATE_NAMES = {
    GateKind.VISION: "the vision",
    GateKind.PLAN: "the plan",
    GateKind.MERGE: "merging the change",
    GateKind.ERROR_RESOLUTION: "what to do about a problem",
}

QUESTION_LIMIT = 3000


def board_key(run_id: uuid.UUID) -> str:
    return keys.run_progress(run_id)


def gate_key(gate_id: uuid.UUID) -> str:
    return keys.gate_question(gate_id)


def gate_name(kind: GateKind) -> str:
    return _GATE_NAMES[kind]


def _clip(text: str, limit: int = QUESTION_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def render_board(
    run: WorkflowRun,
    attempts: list[WorkflowPhase],
    gate: ApprovalGate | None,
    spending: RunSpending | None = None,
) -> str:
    latest: dict[Phase, WorkflowPhase] = {}
    for each in attempts:
        if each.phase not in latest or each.attempt > latest[each.phase].attempt:
            latest[each.phase] = each
    lines = [
        f"**Build #{run.number}: {_clip(run.feature_request, 200)}**",
        f"Status: {RUN_STATE[run.status]}",
        "",
    ]
    for phase in PHASE_ORDER:
        attempt = latest.get(phase)
        if phase is Phase.VISION and run.kind is RunKind.FEATURE:
            lines.append(f"- [x] {PHASE_NAMES[phase]}: agreed earlier")
            continue
        done = attempt is not None and attempt.status is PhaseStatus.SUCCEEDED
        state = "" if attempt is None else f": {PHASE_STATE[attempt.status]}"
        if (
            gate is not None
            and attempt is not None
            and gate.phase_id == attempt.id
            and gate.kind is not GateKind.ERROR_RESOLUTION
        ):
            state = ": waiting for your approval"
        if attempt is not None and attempt.attempt > 1:
            state += f" (try {attempt.attempt})"
        if attempt is not None and _waiting_on_github(attempt):
            state += f". {_clip(attempt.output or '', 300)}"
        lines.append(f"- [{'x' if done else ' '}] {PHASE_NAMES[phase]}{state}")
    if run.pr_url:
        lines += ["", f"Pull request: {run.pr_url}"]
    if spending is not None and (spending.ai.tokens or spending.scar_seconds):
        lines += ["", f"Spent so far: {spending.words()}"]
    return "\n".join(lines)


def _waiting_on_github(attempt: WorkflowPhase) -> bool:
    """A checks attempt still waiting, whose latest reading says what it waits for."""
    return (
        attempt.phase is Phase.CHECKS
        and attempt.status is PhaseStatus.RUNNING
        and bool(attempt.output)
    )


def gate_question(gate: ApprovalGate, run: WorkflowRun, vision: VisionDocument | None) -> str:
    ask = "Say `/approve` to go ahead, or `/reject` followed by what should change."
    match gate.kind:
        case GateKind.VISION:
            body = vision.markdown if vision is not None else (gate.summary or "")
            link = page_link(run.project_id)
            page = f"\n\nTo read it on a page of its own: {link}" if link else ""
            return (
                "Here is the vision we worked out together. Please read it: is this what "
                f"you want?\n\n{_clip(body, 6000)}{page}\n\n{ask}"
            )
        case GateKind.PLAN:
            return (
                f"SCAR has a plan for “{_clip(run.feature_request, 200)}”:\n\n"
                f"{_clip(gate.summary or '')}\n\n{ask}"
            )
        case GateKind.MERGE:
            link = f" {run.pr_url}" if run.pr_url else ""
            verdict = f"\n\n{_clip(gate.summary, 600)}" if gate.summary else ""
            return (
                f"The change is built and its checks passed.{link}{verdict}\n\n"
                f"Shall I merge it? {ask}"
            )
        case GateKind.ERROR_RESOLUTION:
            return (
                "Something went wrong and nothing more will happen until you decide:\n\n"
                f"{_clip(gate.summary or 'The step failed.')}\n\n"
                "Say `/approve` and I will have SCAR try to fix it, or `/reject` with a note "
                "to pause the build here."
            )


async def announce(session: AsyncSession, notifier: Notifier, run_id: uuid.UUID) -> None:
    """Bring the run's progress message up to date and ask any question still open.

    The messages go into the outbox of `session`: they leave when what they report commits.
    """
    run = await session.get(WorkflowRun, run_id)
    if run is None:
        return
    project = await session.get(Project, run.project_id)
    if project is None:
        return
    attempts = list(
        (
            await session.execute(select(WorkflowPhase).where(WorkflowPhase.run_id == run.id))
        ).scalars()
    )
    gate = (
        await session.execute(
            select(ApprovalGate).where(
                ApprovalGate.run_id == run.id, ApprovalGate.status == GateStatus.PENDING
            )
        )
    ).scalar_one_or_none()
    to = ProjectAddress.of(project)
    current = [a for a in attempts if a.phase is run.current_phase]
    stage = f"{run.current_phase}:{max((a.attempt for a in current), default=0)}"
    board = render_board(run, attempts, gate, await run_spending(session, run.id))
    await notifier.progress(session, to, board_key(run.id), board, stage=stage)
    if gate is not None:
        vision = None
        if gate.kind is GateKind.VISION:
            vision = (
                await session.execute(
                    select(VisionDocument).where(
                        VisionDocument.project_id == project.id,
                        VisionDocument.content_hash
                        == gate.artifact_version.removeprefix("vision:"),
                    )
                )
            ).scalar_one_or_none()
        await notifier.ask(
            session, to, gate_key(gate.id), GateQuestion(gate.id, gate_question(gate, run, vision))
        )
    if run.status is RunStatus.COMPLETED:
        link = f" ({run.pr_url})" if run.pr_url else ""
        await notifier.send(
            session,
            to,
            keys.run_completed(run.id),
            f"Done! “{_clip(run.feature_request, 200)}” is merged{link}. "
            "Tell me what you would like next, or `/build` it.",
        )


def explain_scar_failure(attempt: WorkflowPhase, error: ScarError) -> str:
    what = {
        Phase.PRIME: "reading the project",
        Phase.PLAN: "planning",
        Phase.EXECUTE: "building",
        Phase.VALIDATE: "checking the change",
        Phase.MERGE: "merging",
    }.get(attempt.phase, attempt.phase.value)
    if isinstance(error, ScarUnavailable):
        # The detail (SCAR's address, the exception) is for operators: logs, not the issue.
        log.warning("scar.gave_up_unreachable", phase=attempt.phase.value, error=str(error))
        return (
            f"SCAR could not be reached while {what}, even after several tries. The "
            "operators can see why in the logs; once SCAR is back, approve to try again."
        )
    return f"SCAR stopped while {what}: {error}"
