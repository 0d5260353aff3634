"""FastAPI application factory and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError

from project_orchestrator import SERVICE_NAME, __version__
from project_orchestrator.api import docs, health, page
from project_orchestrator.api.fast_path import OrchestratorAPI
from project_orchestrator.api.guard import ApiGuard, AuthFailureTally, FailedAuthLimit
from project_orchestrator.api.middleware import RequestContextMiddleware, route_template
from project_orchestrator.api.state import AppState
from project_orchestrator.api.v1 import events as v1_events
from project_orchestrator.api.v1 import projects as v1_projects
from project_orchestrator.api.v1 import reports as v1_reports
from project_orchestrator.audit import AuditLog
from project_orchestrator.composition import build_notifier
from project_orchestrator.config import Settings, get_settings
from project_orchestrator.db.embedded import EmbeddedPostgres
from project_orchestrator.db.engine import Database, create_database, worker_pool_size
from project_orchestrator.db.raw import create_pool
from project_orchestrator.db.schema_change import SchemaWatch, is_stale_schema, is_unavailable
from project_orchestrator.errors import OrchestratorError
from project_orchestrator.events.writer import EventWriter
from project_orchestrator.ingress.client_ip import ClientResolver, IpAllowList, parse_networks
from project_orchestrator.ingress.github import route as github_route
from project_orchestrator.ingress.github.route import GitHubIngress
from project_orchestrator.ingress.rate_limit import WebhookRateLimit, build_limiter
from project_orchestrator.ingress.telegram import route as telegram_route
from project_orchestrator.logging import get_logger, set_known_secrets
from project_orchestrator.metrics_gauges import gauge_refreshers
from project_orchestrator.projects.page_links import PageLinks, configure_page_links
from project_orchestrator.projects.spending import configure_prices

log = get_logger(__name__)


def create_app(settings: Settings | None = None, *, with_worker: bool = False) -> FastAPI:
    settings = settings or get_settings()
    settings.check_startable()
    configure_prices(settings.ai_prices)
    configure_page_links(PageLinks.from_settings(settings))
    audit = AuditLog(settings.audit_log_path, known_secrets=settings.secret_values())
    limiter = build_limiter(settings)
    refusals = AuthFailureTally(audit)
    clients = ClientResolver(parse_networks(settings.trusted_proxies))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        set_known_secrets(settings.secret_values())
        embedded: EmbeddedPostgres | None = None
        database_url = settings.database_url
        if database_url is None:
            # `orchestrator serve` starts the embedded server itself; this covers
            # `uvicorn --factory` and tests that build the app directly.
            embedded = EmbeddedPostgres(settings.data_dir)
            database_url = embedded.start()
        pool_size = settings.database_pool_size
        if with_worker:  # the in-process worker's jobs share this pool
            pool_size += worker_pool_size(settings.worker_concurrency)
        db = create_database(
            database_url, pool_size=pool_size, max_overflow=settings.database_max_overflow
        )
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
        # min_size=0: the app starts (and reports 503) while the database is down.
        pool = await create_pool(database_url, min_size=0, max_size=4)
        writer = EventWriter(pool)
        writer.start()
        app.state.orchestrator = state = AppState(
            settings=settings,
            db=db,
            audit=audit,
            http=http,
            github_ingress=_github_ingress(settings, writer, audit),
            telegram_ingress=telegram_route.build_ingress(settings, writer, audit),
            gauge_refreshers=gauge_refreshers(stuck_after_seconds=settings.run_stuck_after_seconds),
            notifier=build_notifier(settings),
            schema_watch=SchemaWatch(resets=[db.engine.dispose, pool.expire_connections]),
            clients=clients,
            refusals=refusals,
            page_links=PageLinks.from_settings(settings),
        )
        stop_telegram_polling = _start_telegram_polling(settings, writer)
        worker_stop = asyncio.Event()
        worker = (
            _start_worker(settings, database_url, db, audit, worker_stop) if with_worker else None
        )
        log.info("app.started", env=settings.app_env, version=__version__, worker=with_worker)
        try:
            yield
        finally:
            if stop_telegram_polling is not None:
                # An ingress like the webhooks: it stops before the writer and database.
                await stop_telegram_polling()
            if worker is not None:
                # Requests have drained by now; the worker finishes the jobs it holds.
                worker_stop.set()
                with contextlib.suppress(Exception):
                    await worker
            await writer.close()
            for ingress in (state.github_ingress, state.telegram_ingress):
                if ingress is not None:
                    await ingress.rate_limit.aclose()
            await pool.close()
            await http.aclose()
            await db.dispose()
            refusals.flush()
            if embedded is not None:
                embedded.stop()
            log.info("app.stopped")

    app = OrchestratorAPI(
        title="Project Orchestrator",
        summary=SERVICE_NAME,
        version=__version__,
        lifespan=lifespan,
        # FastAPI's pages load from a CDN; api.docs serves /docs from the package instead.
        docs_url=None,
        redoc_url=None,
    )
    api_key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    # Added first, so it runs inside the request context (correlation id, metrics, log).
    app.add_middleware(
        ApiGuard,
        api_key=api_key,
        resolver=clients,
        limit=FailedAuthLimit(limiter),
        tally=refusals,
    )
    app.add_middleware(RequestContextMiddleware)
    app.add_exception_handler(OrchestratorError, _orchestrator_error)  # type: ignore[arg-type]
    for database_error in DATABASE_ERRORS:
        app.add_exception_handler(database_error, _database_error)
    app.state.limiter = limiter
    docs.add_docs(app)
    app.include_router(health.router)
    app.include_router(page.router)
    app.include_router(v1_events.router)
    app.include_router(v1_projects.router)
    app.include_router(v1_reports.router)
    github_router = github_route.build_router(_receive_github)
    app.include_router(github_router)
    app.add_fast_path("POST", github_router.routes[0], _receive_github)
    telegram_router = telegram_route.build_router(telegram_route.receive)
    app.include_router(telegram_router)
    app.add_fast_path("POST", telegram_router.routes[0], telegram_route.receive)
    return app


async def _receive_github(request: Request) -> Response:
    ingress: GitHubIngress = request.app.state.orchestrator.github_ingress
    return await github_route.receive_delivery(ingress, request)


def _start_telegram_polling(
    settings: Settings, writer: EventWriter
) -> Callable[[], Awaitable[None]] | None:
    """TELEGRAM_MODE=polling (development without a public URL): fetch updates ourselves.
    Returns what stops it."""
    if settings.telegram_mode != "polling" or settings.telegram_bot_token is None:
        return None
    # Imported here: python-telegram-bot costs startup time a process that does not poll
    # has no use for.
    from project_orchestrator.ingress.telegram.polling import TelegramPoller

    return TelegramPoller.start(settings, writer).stop


def _github_ingress(settings: Settings, writer: EventWriter, audit: AuditLog) -> GitHubIngress:
    allow_list = (
        IpAllowList(parse_networks(settings.github_webhook_ips))
        if settings.webhook_ip_filtering_enabled
        else None
    )
    return GitHubIngress(
        writer=writer,
        audit=audit,
        secrets=tuple(
            s.get_secret_value().encode()
            for s in settings.github_webhook_secret
            if s.get_secret_value()
        ),
        resolver=ClientResolver(parse_networks(settings.trusted_proxies)),
        allow_list=allow_list,
        rate_limit=WebhookRateLimit.from_settings(settings),
    )


async def _orchestrator_error(_: Request, exc: OrchestratorError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status_code)


# What a route raises when the database is away or was rebuilt under us.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    OSError,  # TimeoutError and refused connections included
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


async def _database_error(request: Request, exc: Exception) -> Response:
    """503 with Retry-After, as the webhook routes answer, when the database is away or
    its schema was rebuilt (after throwing the stale connections away); anything else is
    a real error and stays one."""
    if is_stale_schema(exc):
        state: AppState = request.app.state.orchestrator
        await state.schema_watch.reset(f"{type(exc).__name__} in {route_template(request.scope)}")
    elif not is_unavailable(exc):
        raise exc
    # The route, not the path: a path may carry a page link's token.
    log.warning(
        "api.database_unavailable", error=type(exc).__name__, route=route_template(request.scope)
    )
    return JSONResponse(
        {"error": "unavailable", "message": "The database is unavailable; try again shortly."},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _start_worker(
    settings: Settings, database_url: str, db: Database, audit: AuditLog, stop: asyncio.Event
) -> asyncio.Task[None]:
    # Imported here: the worker's clients (PyGithub and its crypto stack) cost memory an
    # API-only process (`serve --no-worker`) has no use for.
    from project_orchestrator.composition.worker import build_workload
    from project_orchestrator.queue.worker import options_from, run_worker_supervised

    return asyncio.create_task(
        run_worker_supervised(
            database_url, build_workload(settings, db, audit), stop, options_from(settings)
        ),
        name="in-process-worker",
    )
