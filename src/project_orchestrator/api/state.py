"""What the running app holds: settings, database, clients; built once at startup."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from fastapi import Request

from project_orchestrator.agent.health import AIReachability
from project_orchestrator.api.guard import AuthFailureTally
from project_orchestrator.audit import AuditLog
from project_orchestrator.channels.base import Notifier
from project_orchestrator.config import Settings
from project_orchestrator.db.engine import Database
from project_orchestrator.db.schema_change import SchemaWatch
from project_orchestrator.ingress.client_ip import ClientResolver
from project_orchestrator.ingress.github.route import GitHubIngress
from project_orchestrator.ingress.telegram.route import TelegramIngress
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.page_links import PageLinks

log = get_logger(__name__)
GAUGE_REFRESH_TIMEOUT_SECONDS = 2.0


@dataclass
class AppState:
    settings: Settings
    db: Database
    audit: AuditLog
    http: httpx.AsyncClient
    github_ingress: GitHubIngress
    # Who asked (behind TRUSTED_PROXIES) and the bounded audit of refusals, shared with
    # the API's door.
    clients: ClientResolver
    refusals: AuthFailureTally
    ai_status_cache: tuple[float, AIReachability] | None = None
    # Tells people about decisions made through the API; None when no channel is configured.
    notifier: Notifier | None = None
    # POST /webhooks/telegram; refuses everything until TELEGRAM_WEBHOOK_SECRET is set.
    telegram_ingress: TelegramIngress | None = None
    gauge_refreshers: list[Callable[[Database], Awaitable[None]]] = field(default_factory=list)
    # Throws away connections that cached a schema rebuilt under the running service.
    schema_watch: SchemaWatch = field(default_factory=SchemaWatch)
    # Signs and opens project page links; None until PUBLIC_BASE_URL and PAGE_LINK_SECRET.
    page_links: PageLinks | None = None

    async def refresh_gauges(self) -> None:
        """Gauges that describe shared state are read from the database at scrape time,
        so every process reports the same truth. A database outage leaves them stale
        rather than failing the scrape."""
        for refresher in self.gauge_refreshers:
            try:
                async with asyncio.timeout(GAUGE_REFRESH_TIMEOUT_SECONDS):
                    await refresher(self.db)
            except Exception as exc:
                log.warning("metrics.gauge_refresh_failed", error=type(exc).__name__)


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.orchestrator
    return state
