"""Wiring the worker: which handler takes which source, with which clients."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol, runtime_checkable

from prometheus_client import start_http_server

from project_orchestrator.agent.conversation import AgentConversation
from project_orchestrator.agent.llm_setup import build_gateway
from project_orchestrator.agent.turns import TurnRunner
from project_orchestrator.audit import AuditLog
from project_orchestrator.channels.github import GitHubReplier
from project_orchestrator.composition.outbound import build_outbound
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database, create_database, worker_pool_size
from project_orchestrator.events.models import EventSource
from project_orchestrator.events.processor import EventProcessor, SourceHandler
from project_orchestrator.ingress.github.handlers import GitHubEventHandler
from project_orchestrator.ingress.telegram.desk import TelegramDesk
from project_orchestrator.ingress.telegram.handlers import TelegramEventHandler
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.budget import Budgets, Limits
from project_orchestrator.projects.page_links import PageLinks, configure_page_links
from project_orchestrator.projects.spending import configure_prices
from project_orchestrator.queue.worker import (
    WorkerOptions,
    Workload,
    options_from,
    run_worker_supervised,
)
from project_orchestrator.repos.pygithub import PyGithubRepositoryHost
from project_orchestrator.scar.github_transport import GitHubScarClient
from project_orchestrator.scar.http_transport import http_scar_client
from project_orchestrator.scar.models import ScarTransport
from project_orchestrator.scar.protocol import ScarClient
from project_orchestrator.workflow.checks_step import ChecksStep
from project_orchestrator.workflow.commands import CommandDesk
from project_orchestrator.workflow.readiness import MergeReadiness
from project_orchestrator.workflow.repository import RunRepositories
from project_orchestrator.workflow.scar_addressing import web_url
from project_orchestrator.workflow.service import Workflow
from project_orchestrator.workflow.steps import StepRunner

log = get_logger(__name__)


def build_workload(settings: Settings, db: Database, audit: AuditLog) -> Workload:
    """Every client built once, for the life of the worker."""
    configure_prices(settings.ai_prices)
    configure_page_links(PageLinks.from_settings(settings))
    outbound = build_outbound(settings, db)
    replier, telegram, notifier = outbound.replier, outbound.telegram, outbound.notifier
    workflow = Workflow(audit)
    budgets = Budgets(
        audit,
        Limits(
            per_project=settings.ai_max_tokens_per_project,
            per_run=settings.ai_max_tokens_per_run,
        ),
    )
    conversation = AgentConversation(
        gateway=build_gateway(settings),
        workflow=workflow,
        notifier=notifier,
        audit=audit,
        budgets=budgets,
    )
    desk = CommandDesk(workflow, notifier, budgets)
    readiness = MergeReadiness(workflow, max_fix_attempts=settings.run_max_fix_attempts)
    handlers: dict[EventSource, SourceHandler] = {
        EventSource.GITHUB: GitHubEventHandler(
            settings, audit, workflow, desk, conversation, readiness
        ),
    }
    telegram_handler = None
    if telegram is not None:
        telegram_handler = TelegramEventHandler(
            telegram.bot, TelegramDesk(settings, audit, desk, conversation)
        )
        handlers[EventSource.TELEGRAM] = telegram_handler
    scar = scar_client(settings, db, replier)
    repositories = None
    github_host = None
    if settings.github_access_token is not None:
        github_host = PyGithubRepositoryHost(
            settings.github_api_url, settings.github_access_token.get_secret_value()
        )
        repositories = RunRepositories(
            db=db,
            host=github_host,
            audit=audit,
            notifier=notifier,
            owner=settings.github_repo_owner,
            private=settings.github_repo_private,
        )
    steps = StepRunner(
        db=db,
        workflow=workflow,
        scar=scar,
        notifier=notifier,
        audit=audit,
        transport=ScarTransport(settings.scar_transport),
        github_web_url=web_url(settings.github_api_url),
        repositories=repositories,
        checks=ChecksStep(
            db=db,
            readiness=readiness,
            notifier=notifier,
            pulls=github_host,
            poll_interval=timedelta(seconds=settings.run_checks_poll_seconds),
        ),
    )
    closers: list[Callable[[], Awaitable[None]]] = [
        c.aclose for c in (scar, conversation.gateway) if isinstance(c, _Closable)
    ]
    if telegram_handler is not None:
        closers.append(telegram_handler.aclose)
    turns = TurnRunner(
        db=db,
        agent=conversation,
        retry_window=timedelta(seconds=settings.ai_retry_window_seconds),
        typing=telegram.typing if telegram is not None else None,
    )
    return Workload(
        processor=EventProcessor(db, handlers),
        steps=steps,
        deliveries=outbound.delivery,
        turns=turns,
        closers=closers,
    )


@runtime_checkable
class _Closable(Protocol):
    async def aclose(self) -> None: ...


def scar_client(settings: Settings, db: Database, replier: GitHubReplier) -> ScarClient:
    if settings.scar_transport == "github":
        return GitHubScarClient(
            db=db,
            replier=replier,
            mention=settings.scar_github_mention,
            timeout_seconds=settings.scar_timeout_seconds,
            poll_interval=settings.scar_poll_interval_seconds,
            ai_retries=settings.scar_ai_retries,
            ai_retry_backoff=settings.scar_ai_retry_backoff_seconds,
        )
    return http_scar_client(settings)


async def worker_main(
    settings: Settings, database_url: str, options: WorkerOptions | None = None
) -> None:
    """`orchestrator worker`: run until SIGTERM/SIGINT, then drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.worker_metrics_port:
        # Worker-only counters live in this process: serve them for Prometheus.
        start_http_server(settings.worker_metrics_port, addr=settings.host)
        log.info("worker.metrics_served", port=settings.worker_metrics_port)
    # One connection per job running, at most: a smaller pool makes jobs wait for one.
    pool_size = max(settings.database_pool_size, worker_pool_size(settings.worker_concurrency))
    db = create_database(
        database_url, pool_size=pool_size, max_overflow=settings.database_max_overflow
    )
    audit = AuditLog(settings.audit_log_path, known_secrets=settings.secret_values())
    try:
        await run_worker_supervised(
            database_url,
            build_workload(settings, db, audit),
            stop,
            options or options_from(settings),
        )
    finally:
        await db.dispose()
