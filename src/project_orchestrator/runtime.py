"""Starting the service: database (embedded or configured), migrations, uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from project_orchestrator.config import Settings
from project_orchestrator.db.embedded import EmbeddedPostgres
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

# How long SIGTERM waits for requests in flight before cancelling them. Longer than
# http_deadlines.BODY_TIMEOUT_SECONDS (a test holds it so), so that a client stalled
# half-way through its body is cut off, and its request ends, before the drain gives up.
GRACEFUL_SHUTDOWN_SECONDS = 20


@contextmanager
def database_url_for_cli(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one under DATA_DIR for as long as needed."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()


def migrate_database(database_url: str) -> None:
    from project_orchestrator.db.migrations import upgrade_to_head

    log.info("migrations.upgrading")
    upgrade_to_head(database_url)
    log.info("migrations.at_head")


def uvicorn_config(app: Any, host: str, port: int) -> Any:
    """How every API process serves: our protocol, limits and shutdown."""
    import uvicorn

    from project_orchestrator import http_deadlines

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep uvicorn's records in our structlog pipeline
        loop="uvloop",
        # httptools with header and body read deadlines and a cap on connections.
        http=http_deadlines.DeadlineHttpToolsProtocol,
        ws="none",  # no route speaks websocket; an upgrade request is plain HTTP
        limit_concurrency=http_deadlines.LIMIT_CONCURRENCY,
        backlog=http_deadlines.BACKLOG,
        proxy_headers=False,  # TRUSTED_PROXIES decides whom to believe, not uvicorn
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def run_server(
    settings: Settings,
    *,
    with_worker: bool,
    host: str | None,
    port: int | None,
    api_processes: int = 1,
) -> None:
    from project_orchestrator.app import create_app
    from project_orchestrator.server import GracefulServer

    with database_url_for_cli(settings) as url:
        migrate_database(url)
        effective = settings.model_copy(update={"database_url": url})
        host, port = host or settings.host, port or settings.port
        if api_processes > 1:
            from project_orchestrator.api_processes import serve_in_processes

            serve_in_processes(effective, host, port, api_processes, with_worker=with_worker)
            return
        app = create_app(effective, with_worker=with_worker)
        settle_garbage_collector()
        GracefulServer(uvicorn_config(app, host, port)).run()


def run_worker_process(settings: Settings) -> None:
    import uvloop

    from project_orchestrator.composition.worker import worker_main

    with database_url_for_cli(settings) as url:
        # As the API process: uvloop's event loop, and the collector kept off what lives
        # for the whole process (a turn makes many short-lived ORM objects).
        settle_garbage_collector()
        uvloop.run(worker_main(settings, url))


def settle_garbage_collector() -> None:
    """Everything loaded at startup lives for the whole process: move it out of the
    collector's sight and collect young objects less often, so full collections (which
    pause every request in flight) stay rare under load."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    _return_freed_memory()


def _return_freed_memory() -> None:
    """Migrations allocate and free a lot before serving starts; glibc keeps freed pages
    unless asked to give them back."""
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
