"""What a phase took and how long a gate waited, counted once the change commits.

Each observation is taken from the rows' own times (a phase's start, a gate's opening),
so a job that runs again after a crash, finding the work already done, counts nothing:
only the transaction that ended the phase or decided the gate observes it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from project_orchestrator import metrics
from project_orchestrator.effects import after_commit
from project_orchestrator.workflow.models import ApprovalGate, PhaseStatus, WorkflowPhase


def end_phase(attempt: WorkflowPhase, status: PhaseStatus) -> None:
    """Mark the attempt ended with `status`; its duration is observed after the commit.

    An attempt that never started (a merge set aside before its gate was approved) has
    no duration to observe.
    """
    finished = datetime.now(UTC)
    attempt.status = status
    attempt.finished_at = finished
    if attempt.started_at is None:
        return
    seconds = max(0.0, (finished - attempt.started_at).total_seconds())
    histogram = metrics.workflow_phase_duration_seconds.labels(attempt.phase.value, status.value)
    after_commit(lambda: histogram.observe(seconds))


def gate_decided(gate: ApprovalGate, decided_at: datetime) -> None:
    """The gate's wait, from opening to the person's decision, after the commit."""
    seconds = max(0.0, (decided_at - gate.created_at).total_seconds())
    histogram = metrics.approval_gate_wait_seconds.labels(gate.kind.value)
    after_commit(lambda: histogram.observe(seconds))
