"""Prometheus metrics (names fixed by CONTRACT.md) and the HTTP metrics middleware."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

registry: CollectorRegistry = REGISTRY

orchestrator_conversations_total = Counter(
    "orchestrator_conversations_total",
    "Conversation messages handled by the agent.",
    ["channel"],
)
orchestrator_active_projects = Gauge(
    "orchestrator_active_projects",
    "Projects with a workflow run in progress (read from the database at scrape time).",
)
scar_command_duration_seconds = Histogram(
    "scar_command_duration_seconds",
    "Wall time of SCAR commands, from send to completion.",
    ["command"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
http_requests_total = Counter(
    "http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
)
http_request_duration_seconds = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
approval_gates_pending = Gauge(
    "approval_gates_pending",
    "Approval gates waiting for a human decision (read from the database at scrape time).",
)
vision_documents_generated_total = Counter(
    "vision_documents_generated_total",
    "Vision document versions generated.",
)
webhook_events_total = Counter(
    "webhook_events_total",
    "Inbound webhook deliveries by source, event and outcome.",
    ["source", "event", "outcome"],
)
jobs_total = Counter(
    "jobs_total",
    "Jobs run by the worker, by job name and outcome.",
    ["job", "outcome"],
)
outbound_messages_total = Counter(
    "outbound_messages_total",
    "Outbound messages delivered from the outbox, by channel and outcome (sent, failed).",
    ["channel", "outcome"],
)
job_queue_depth = Gauge(
    "job_queue_depth",
    "Jobs waiting in the queue (read from the database at scrape time).",
)
ai_tokens_total = Counter(
    "ai_tokens_total",
    "Tokens exchanged with the AI model, by direction (input/output).",
    ["direction"],
)


workflow_phase_duration_seconds = Histogram(
    "workflow_phase_duration_seconds",
    "Wall time of a phase attempt, from its start to its end, by phase and outcome "
    "(succeeded, failed, cancelled).",
    ["phase", "outcome"],
    buckets=(1, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400),
)
approval_gate_wait_seconds = Histogram(
    "approval_gate_wait_seconds",
    "Time a gate waited from being opened to a person's decision (approve or reject).",
    ["kind"],
    buckets=(10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400),
)
workflow_runs_stuck = Gauge(
    "workflow_runs_stuck",
    "Running runs (not waiting for a person, not on hold) with no progress for "
    "RUN_STUCK_AFTER_SECONDS (read from the database at scrape time).",
)


ai_degraded = Gauge(
    "ai_degraded",
    "1 while the AI is unreachable, failing for the workers, or not configured (set at scrape).",
)


def render_latest() -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST
