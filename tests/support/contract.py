"""Names CONTRACT.md fixes, shared by the tests that check them."""

from __future__ import annotations

METRIC_NAMES = (
    "orchestrator_conversations_total",
    "orchestrator_active_projects",
    "scar_command_duration_seconds",
    "http_requests_total",
    "http_request_duration_seconds",
    "approval_gates_pending",
    "vision_documents_generated_total",
    "webhook_events_total",
    "jobs_total",
    "job_queue_depth",
    "ai_tokens_total",
    "workflow_phase_duration_seconds",
    "approval_gate_wait_seconds",
    "workflow_runs_stuck",
)
