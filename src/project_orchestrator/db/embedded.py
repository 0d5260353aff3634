"""Embedded PostgreSQL under ./data/ for running with no DATABASE_URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from project_orchestrator.logging import get_logger

log = get_logger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server (from the `pgserver` wheel) whose files live in data_dir.

    It listens on a Unix socket only, so nothing outside this machine can reach it.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._server: Any = None

    def start(self) -> str:
        from pgserver.postgres_server import get_server  # heavy; only this path needs it

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode="stop": the server stops with the last process using it; the data stays.
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        socket_dir = self._server.get_postmaster_info().socket_dir
        url = f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"
        log.info("embedded_postgres.started", pgdata=str(self.pgdata))
        return url

    def stop(self) -> None:
        if self._server is None:
            return
        # Stops the server unless another process of ours still holds it.
        self._server.cleanup()
        self._server = None
        log.info("embedded_postgres.stopped", pgdata=str(self.pgdata))
