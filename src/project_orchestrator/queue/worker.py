"""The job worker: pgqueuer on a dedicated asyncpg connection, draining on SIGTERM.

Several workers (processes, machines) share one queue: pgqueuer's dequeue takes jobs with
`FOR UPDATE SKIP LOCKED`, so no job is picked twice, and a job whose worker died (no
heartbeat for `heartbeat_timeout`) is picked up again by another.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import structlog
from pgqueuer.errors import RetryRequested
from pgqueuer.executors import (
    DatabaseRetryEntrypointExecutor,
    EntrypointExecutorParameters,
)
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from project_orchestrator import metrics
from project_orchestrator.config import Settings
from project_orchestrator.db import raw
from project_orchestrator.db.jobs import (
    AGENT_TURN,
    DELIVER_OUTBOUND,
    HANDLE_EVENT,
    RUN_STEP,
    DeliveryJob,
    EventJob,
    StepJob,
    TurnJob,
)
from project_orchestrator.events.processor import MAX_ATTEMPTS, EventProcessor
from project_orchestrator.logging import get_logger
from project_orchestrator.workflow.steps import StepRunner

log = get_logger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 8
    heartbeat_timeout: timedelta = timedelta(seconds=30)
    drain_timeout: timedelta = timedelta(seconds=30)
    retry_initial_delay: timedelta = timedelta(seconds=2)
    retry_max_delay: timedelta = timedelta(minutes=5)
    # New jobs wake the worker at once (LISTEN/NOTIFY); retries that come due, and jobs
    # whose worker died, are found by polling this often.
    poll_interval: timedelta = timedelta(seconds=2)


def _retrying_executor(
    options: WorkerOptions, runs: int = MAX_ATTEMPTS
) -> Callable[..., DatabaseRetryEntrypointExecutor]:
    def build(parameters: EntrypointExecutorParameters) -> DatabaseRetryEntrypointExecutor:
        return DatabaseRetryEntrypointExecutor(
            parameters=parameters,
            # pgqueuer counts retries after the first run; `runs` counts runs.
            max_attempts=runs - 1,
            initial_delay=options.retry_initial_delay,
            max_delay=options.retry_max_delay,
        )

    return build


# Deliveries and agent turns keep their own count (a message is given up after its own
# limit, a turn after AI_RETRY_WINDOW_SECONDS) and wait out rate limits and outages by
# asking to be retried later; the job may need many more runs than an event's.
PATIENT_JOB_RUNS = 50


class Deliveries(Protocol):
    async def deliver(self, conversation: str, holder: str | None = None) -> None:
        """Send the conversation's pending outbound messages, in order."""


class Turns(Protocol):
    async def run(self, project_id: uuid.UUID, holder: str) -> None:
        """Answer the project's pending message(s) with the agent."""


@dataclass
class Workload:
    """What a worker runs: inbound events, the workflow's SCAR steps, and the outbox."""

    processor: EventProcessor
    steps: StepRunner
    deliveries: Deliveries
    turns: Turns
    # Clients to close when the worker is done (HTTP connection pools).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in self.closers:
            try:
                await close()
            except Exception as exc:  # closing is best effort; the process is ending
                log.warning("worker.client_close_failed", error=type(exc).__name__)


async def run_event_job(processor: EventProcessor, job: Job) -> None:
    event_job = EventJob.decode(job.payload)
    structlog.contextvars.bind_contextvars(
        correlation_id=event_job.correlation_id, event_id=event_job.event_id, job_id=job.id
    )
    try:
        outcome = await processor.process(event_job.event_id)
    except RetryRequested:
        metrics.jobs_total.labels(HANDLE_EVENT, "deferred").inc()
        raise
    except Exception as exc:
        exhausted = await processor.record_failure(event_job.event_id, exc)
        metrics.jobs_total.labels(HANDLE_EVENT, "failed" if exhausted else "retried").inc()
        raise
    metrics.jobs_total.labels(HANDLE_EVENT, outcome.value).inc()


async def run_step_job(steps: StepRunner, job: Job) -> None:
    step = StepJob.decode(job.payload)
    structlog.contextvars.bind_contextvars(
        correlation_id=step.correlation_id, phase_id=step.phase_id, job_id=job.id
    )
    # pgqueuer counts retries after the first run; the last one must not raise again.
    last_attempt = job.attempts >= MAX_ATTEMPTS - 1
    phase_id = uuid.UUID(step.phase_id)
    try:
        await steps.run(phase_id, last_attempt=last_attempt, poll=step.poll, wake=step.wake)
    except RetryRequested:
        metrics.jobs_total.labels(RUN_STEP, "deferred").inc()
        raise
    except Exception as exc:
        if not last_attempt:
            metrics.jobs_total.labels(RUN_STEP, "retried").inc()
            raise
        log.exception("step.gave_up", error=type(exc).__name__)
        await steps.give_up(phase_id, exc)
        metrics.jobs_total.labels(RUN_STEP, "failed").inc()
        return
    metrics.jobs_total.labels(RUN_STEP, "done").inc()


async def run_delivery_job(deliveries: Deliveries, job: Job) -> None:
    delivery = DeliveryJob.decode(job.payload)
    structlog.contextvars.bind_contextvars(
        correlation_id=delivery.correlation_id, conversation=delivery.conversation, job_id=job.id
    )
    await _counted(DELIVER_OUTBOUND, deliveries.deliver(delivery.conversation, _holder(job)))


async def run_turn_job(turns: Turns, job: Job) -> None:
    turn = TurnJob.decode(job.payload)
    structlog.contextvars.bind_contextvars(
        correlation_id=turn.correlation_id, project_id=turn.project_id, job_id=job.id
    )
    await _counted(AGENT_TURN, turns.run(uuid.UUID(turn.project_id), _holder(job)))


async def _counted(name: str, work: Awaitable[None]) -> None:
    """Run a job's work, counting how it ended; the queue retries what raises."""
    try:
        await work
    except RetryRequested:
        metrics.jobs_total.labels(name, "deferred").inc()
        raise
    except Exception as exc:
        log.warning("job.failed", job=name, error=type(exc).__name__)
        metrics.jobs_total.labels(name, "retried").inc()
        raise
    metrics.jobs_total.labels(name, "done").inc()


def _holder(job: Job) -> str:
    """Leases are named after the job: picked up again after a crash, it is still theirs."""
    return f"job-{job.id}"


async def run_worker(
    database_url: str,
    workload: Workload,
    stop: asyncio.Event,
    options: WorkerOptions | None = None,
) -> None:
    """Take jobs until `stop` is set, then finish the ones in hand (bounded) and return."""
    options = options or WorkerOptions()
    connection = await raw.connect(database_url)
    manager = QueueManager(Queries.from_asyncpg_connection(connection))

    @manager.entrypoint(
        HANDLE_EVENT,
        on_failure="hold",  # a job out of attempts stays visible, to be replayed
        executor_factory=_retrying_executor(options),
    )
    async def handle_event(job: Job) -> None:
        await run_event_job(workload.processor, job)

    @manager.entrypoint(RUN_STEP, executor_factory=_retrying_executor(options))
    async def run_step(job: Job) -> None:
        await run_step_job(workload.steps, job)

    @manager.entrypoint(
        DELIVER_OUTBOUND, executor_factory=_retrying_executor(options, PATIENT_JOB_RUNS)
    )
    async def deliver_outbound(job: Job) -> None:
        await run_delivery_job(workload.deliveries, job)

    @manager.entrypoint(AGENT_TURN, executor_factory=_retrying_executor(options, PATIENT_JOB_RUNS))
    async def agent_turn(job: Job) -> None:
        await run_turn_job(workload.turns, job)

    batch = max(1, options.concurrency // 2)
    running = asyncio.create_task(
        manager.run(
            batch_size=batch,
            max_concurrent_tasks=max(options.concurrency, 2 * batch),
            heartbeat_timeout=options.heartbeat_timeout,
            dequeue_timeout=options.poll_interval,
        ),
        name="queue-manager",
    )
    stopping = asyncio.create_task(stop.wait())
    log.info("worker.started", concurrency=options.concurrency)
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            running.result()  # the queue manager died: let the caller see why
            return
        log.info("worker.draining", timeout_seconds=options.drain_timeout.total_seconds())
        manager.shutdown.set()
        try:
            await asyncio.wait_for(asyncio.shield(running), options.drain_timeout.total_seconds())
        except TimeoutError:
            # Jobs still running are abandoned; their heartbeats stop and another
            # worker picks them up, and idempotent handlers make that safe.
            log.warning("worker.drain_timed_out")
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    finally:
        stopping.cancel()
        await connection.close()
        log.info("worker.stopped")


async def run_worker_supervised(
    database_url: str,
    workload: Workload,
    stop: asyncio.Event,
    options: WorkerOptions | None = None,
) -> None:
    """`run_worker`, started again (with backoff) whenever it dies, until `stop` is set.

    The queue rides one database connection; when the database restarts that connection
    is gone and the queue manager stops. Nothing is lost (jobs stay in the table), but
    nothing would run either, so the worker comes back by itself, like the probes do.
    """
    try:
        await _supervise(database_url, workload, stop, options)
    finally:
        await workload.aclose()


async def _supervise(
    database_url: str, workload: Workload, stop: asyncio.Event, options: WorkerOptions | None
) -> None:
    failures = 0
    while not stop.is_set():
        try:
            await run_worker(database_url, workload, stop, options)
            if stop.is_set():
                return
            error = "stopped by itself"
        except Exception as exc:
            error = type(exc).__name__
        failures += 1
        delay = min(30.0, 0.5 * 2 ** min(failures, 6))
        log.error("worker.crashed", error=error, restart_in_seconds=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


def options_from(settings: Settings) -> WorkerOptions:
    return WorkerOptions(
        concurrency=settings.worker_concurrency,
        heartbeat_timeout=timedelta(seconds=settings.worker_heartbeat_timeout_seconds),
        drain_timeout=timedelta(seconds=settings.worker_drain_timeout_seconds),
    )
