"""`orchestrator serve --api-processes N`: N API processes on one port, and the worker apart.

One Python process runs on one core. Here the parent binds the listening socket once and
starts N API processes that accept on it (the kernel hands each connection to one of
them); each has its own database pools and its own batching event writer. The job worker
runs as a process of its own (`orchestrator worker`), not inside an API process. The
parent only supervises:

- SIGTERM or SIGINT: every child gets SIGTERM and drains as a single `serve` does (up to
  GRACEFUL_SHUTDOWN_SECONDS for requests, then the worker's own drain); the parent exits
  0 once they have, and kills what is still there past its patience.
- A child that dies on its own is started again, unless it died while starting (bad
  configuration would fail the same way each time): then everything stops, exit 1.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from project_orchestrator.config import Settings
from project_orchestrator.logging import get_logger

log = get_logger(__name__)

# A child that dies sooner than this after it started failed to start.
STARTUP_SECONDS = 30.0
# How long the parent waits for its children after passing SIGTERM on: their request
# drain, the worker's job drain, and some slack.
_EXIT_SLACK_SECONDS = 10.0


def _api_process(settings: Settings, sock: socket.socket) -> None:
    """One API process (spawned: nothing of the parent's state but what is passed)."""
    from project_orchestrator.app import create_app
    from project_orchestrator.logging import configure_logging, set_known_secrets
    from project_orchestrator.runtime import settle_garbage_collector, uvicorn_config
    from project_orchestrator.server import GracefulServer

    configure_logging(level=settings.log_level, json_output=settings.is_production)
    set_known_secrets(settings.secret_values())
    host, port = sock.getsockname()[:2]
    app = create_app(settings, with_worker=False)
    settle_garbage_collector()
    GracefulServer(uvicorn_config(app, host, port)).run(sockets=[sock])


class _Supervisor:
    def __init__(self, settings: Settings, sock: socket.socket, count: int, worker: bool):
        self.settings = settings
        self.sock = sock
        self.count = count
        self.worker = worker
        self.context = multiprocessing.get_context("spawn")
        self.stopping = threading.Event()
        self.failed = False
        self.api: list[tuple[BaseProcess, float]] = []
        self.worker_process: subprocess.Popen[bytes] | None = None
        self.worker_started = 0.0

    def _start_api(self) -> tuple[BaseProcess, float]:
        process = self.context.Process(
            target=_api_process, args=(self.settings, self.sock), name="orchestrator-api"
        )
        process.start()
        log.info("api_process.started", pid=process.pid)
        return process, time.monotonic()

    def _start_worker(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.settings.database_url or ""}
        self.worker_process = subprocess.Popen(
            [sys.executable, "-m", "project_orchestrator", "worker"], env=env
        )
        self.worker_started = time.monotonic()
        log.info("worker_process.started", pid=self.worker_process.pid)

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.api = [self._start_api() for _ in range(self.count)]
        if self.worker:
            self._start_worker()
        while not self.stopping.wait(0.5):
            self._replace_the_dead()
        self._stop_all()
        return 1 if self.failed else 0

    def _died_starting(self, started: float) -> bool:
        return time.monotonic() - started < STARTUP_SECONDS

    def _replace_the_dead(self) -> None:
        for index, (process, started) in enumerate(self.api):
            if process.is_alive():
                continue
            log.error("api_process.died", pid=process.pid, exit_code=process.exitcode)
            if self._died_starting(started):
                self.failed = True
                self.stopping.set()
                return
            self.api[index] = self._start_api()
        if self.worker_process is not None and self.worker_process.poll() is not None:
            code = self.worker_process.returncode
            log.error("worker_process.died", pid=self.worker_process.pid, exit_code=code)
            if self._died_starting(self.worker_started):
                self.failed = True
                self.stopping.set()
                return
            self._start_worker()

    def _stop_all(self) -> None:
        from project_orchestrator.runtime import GRACEFUL_SHUTDOWN_SECONDS

        for process, _ in self.api:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        if self.worker_process is not None and self.worker_process.poll() is None:
            self.worker_process.send_signal(signal.SIGTERM)
        patience = (
            GRACEFUL_SHUTDOWN_SECONDS
            + self.settings.worker_drain_timeout_seconds
            + _EXIT_SLACK_SECONDS
        )
        deadline = time.monotonic() + patience
        for process, _ in self.api:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("api_process.killed", pid=process.pid)
                process.kill()
                process.join()
        if self.worker_process is not None:
            try:
                self.worker_process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker_process.killed", pid=self.worker_process.pid)
                self.worker_process.kill()
                self.worker_process.wait()


def serve_in_processes(
    settings: Settings, host: str, port: int, count: int, *, with_worker: bool
) -> None:
    """Serve until SIGTERM/SIGINT; the database is migrated and `settings` point at it."""
    from project_orchestrator import http_deadlines

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(http_deadlines.BACKLOG)
    sock.set_inheritable(True)
    log.info("api_processes.serving", host=host, port=port, processes=count, worker=with_worker)
    try:
        code = _Supervisor(settings, sock, count, with_worker).run()
    finally:
        sock.close()
    log.info("api_processes.stopped")
    if code:
        raise SystemExit(code)
