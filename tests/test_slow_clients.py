"""Requests that break off or never finish: read deadlines, connection limits, drain.

The server tests run the real `orchestrator serve` and talk to it over raw sockets, since
an HTTP client library would never send half a request. They wait out the real 15 s
deadlines (an operator cannot shorten them either), so they are marked slow; the slow
clients run side by side to wait them out once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from project_orchestrator.api import middleware
from project_orchestrator.api.fast_path import OrchestratorAPI
from project_orchestrator.api.middleware import RequestContextMiddleware
from project_orchestrator.http_deadlines import (
    BODY_TIMEOUT_SECONDS,
    HEADER_TIMEOUT_SECONDS,
    LIMIT_CONCURRENCY,
    MAX_OPEN_CONNECTIONS,
    DeadlineHttpToolsProtocol,
)
from project_orchestrator.runtime import GRACEFUL_SHUTDOWN_SECONDS
from project_orchestrator.server import GracefulServer
from tests.support.asgi import Exchange, Message, http_scope
from tests.support.cli import COMMAND, clean_environment
from tests.support.logs import RecordingLogger

API_KEY = "api-key-for-slow-client-tests"
# Scheduling on a busy 2-core machine; a deadline that is off by more is a bug.
SLACK_SECONDS = 4.0
# A JSON route of the framework (not a webhook fast path): FastAPI reads its body itself.
APPROVE = f"/api/v1/projects/{uuid.uuid4()}/gates/{uuid.uuid4()}/approve"


# --- a real server ----------------------------------------------------------------------


@dataclass
class Served:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def records(self) -> list[dict[str, Any]]:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(directory: Path, database_url: str) -> Served:
    port = _free_port()
    env = clean_environment(
        APP_ENV="production",  # JSON logs, which the tests read
        DATABASE_URL=database_url,
        API_KEY=API_KEY,
        HOST="127.0.0.1",
        PORT=str(port),
        AUDIT_LOG_PATH=str(directory / "audit.log"),
        DATA_DIR=str(directory / "data"),
        TELEGRAM_MODE="off",
        LOG_LEVEL="INFO",
    )
    log_path = directory / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*COMMAND, "serve", "--no-worker"],
            env=env,
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(port, process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text(errors="replace")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise AssertionError("the server never answered")


def _stop(served: Served, timeout: float) -> int:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait()
    return served.process.returncode


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Served]:
    running = _start(tmp_path_factory.mktemp("serve"), database_url)
    try:
        yield running
    finally:
        _stop(running, timeout=GRACEFUL_SHUTDOWN_SECONDS + 10)


def _assert_no_server_error(served: Served) -> None:
    records = served.records()
    errors = [r for r in records if r.get("level") in {"error", "critical"}]
    assert not errors, errors
    server_errors = [r for r in records if int(r.get("status", 0)) >= 500]
    assert not server_errors, server_errors
    assert "Exception in ASGI application" not in served.log_path.read_text(errors="replace")


# --- raw clients ------------------------------------------------------------------------


@dataclass
class Outcome:
    closed_after: float | None  # seconds until the server closed; None: still open
    received: bytes


def _headers(method: str, path: str, content_length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: orchestrator", f"Authorization: Bearer {API_KEY}"]
    if content_length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {content_length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _slow_client(port: int, first: bytes, drip: bytes = b"", give_up_after: float = 30) -> Outcome:
    """Send `first`, then one byte of `drip` a second, until the server hangs up."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(first)
        sock.settimeout(1.0)
        dripped = 0
        while time.monotonic() - started < give_up_after:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if dripped < len(drip):
                    try:
                        sock.send(drip[dripped : dripped + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        return Outcome(time.monotonic() - started, received)
                    dripped += 1
                continue
            except ConnectionResetError:
                return Outcome(time.monotonic() - started, received)
            if not chunk:
                return Outcome(time.monotonic() - started, received)
            received += chunk
    return Outcome(None, received)


def _request(port: int, raw: bytes, timeout: float = 5) -> bytes:
    """One request on a new connection; what came back before the server closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: orchestrator\r\nConnection: close\r\n\r\n".encode()


# --- tests ------------------------------------------------------------------------------


@pytest.mark.slow
def test_clients_that_stall_or_drip_are_cut_off_at_the_deadlines(served: Served) -> None:
    half_headers = _headers("POST", APPROVE, 100)[:40]
    headers_then_half_body = _headers("POST", APPROVE, 100) + b'{"decided_by": "'
    cases = {
        "silent": (b"", b""),
        "half the headers": (half_headers, b""),
        "headers a byte a second": (b"GET /health HTTP/1.1\r\nX-Slow: ", b"a" * 60),
        "half the body": (headers_then_half_body, b""),
        "body a byte a second": (_headers("POST", APPROVE, 1000), b" " * 60),
        # Answered at once (no such route), the rest of the body never comes.
        "body after an early answer": (_headers("POST", "/nowhere", 1000) + b"{", b" " * 60),
    }
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {
            name: pool.submit(_slow_client, served.port, first, drip)
            for name, (first, drip) in cases.items()
        }
        outcomes = {name: future.result() for name, future in futures.items()}

    deadline = {name: HEADER_TIMEOUT_SECONDS for name in cases}
    deadline |= {name: BODY_TIMEOUT_SECONDS for name in cases if "body" in name}
    for name, outcome in outcomes.items():
        assert outcome.closed_after is not None, f"{name}: still open"
        # Not cut short either: a slow but honest client has the whole deadline.
        assert deadline[name] - 1 <= outcome.closed_after <= deadline[name] + SLACK_SECONDS, (
            name,
            outcome,
        )
    for name in ("silent", "half the headers", "headers a byte a second", "half the body"):
        assert outcomes[name].received == b"", (name, outcomes[name])
    assert outcomes["body after an early answer"].received.startswith(b"HTTP/1.1 404 ")
    assert served.process.poll() is None
    assert _request(served.port, _get("/health")).startswith(b"HTTP/1.1 200 ")
    _assert_no_server_error(served)


@pytest.mark.slow
def test_connections_over_the_limits_are_refused_not_left_hanging(served: Served) -> None:
    idle: list[socket.socket] = []
    try:
        for _ in range(LIMIT_CONCURRENCY):
            idle.append(socket.create_connection(("127.0.0.1", served.port), timeout=5))
        started = time.monotonic()
        answer = _request(served.port, _get("/health"))
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"connection: close" in answer.lower()
        assert time.monotonic() - started < 2

        while len(idle) < MAX_OPEN_CONNECTIONS:
            idle.append(socket.create_connection(("127.0.0.1", served.port), timeout=5))
        started = time.monotonic()
        # Past the hard cap the connection is closed as soon as it is accepted.
        assert _request(served.port, _get("/health")) == b""
        assert time.monotonic() - started < 2
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.5)  # the server notices the closes on its next loop turns
    assert _request(served.port, _get("/health")).startswith(b"HTTP/1.1 200 ")


@pytest.mark.slow
def test_sigterm_with_a_stalled_body_drains_and_exits_0(tmp_path: Path, database_url: str) -> None:
    running = _start(tmp_path, database_url)
    with ThreadPoolExecutor(2) as pool:
        stalled = pool.submit(
            _slow_client, running.port, _headers("POST", APPROVE, 100) + b"{", b"", 60
        )
        idle = pool.submit(_slow_client, running.port, b"", b"", 60)
        time.sleep(2)  # both connections accepted, the body's request in the app
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        try:
            code = running.process.wait(timeout=GRACEFUL_SHUTDOWN_SECONDS + 10)
        finally:
            if running.process.poll() is None:
                running.process.kill()
        took = time.monotonic() - signalled
        outcomes = [stalled.result(), idle.result()]
    for outcome in outcomes:
        assert outcome.closed_after is not None
        assert b" 500 " not in outcome.received, outcome
    _assert_no_server_error(running)
    assert code == 0, running.log_path.read_text(errors="replace")
    assert took < GRACEFUL_SHUTDOWN_SECONDS, took
    assert any(r.get("event") == "app.stopped" for r in running.records())


# --- 5xx answers and clients that hang up, in-process ------------------------------------


def _app_with_failing_routes() -> OrchestratorAPI:
    app = OrchestratorAPI()
    app.add_middleware(RequestContextMiddleware)
    router = APIRouter()

    @router.get("/raises")
    async def raises() -> None:
        raise RuntimeError("a bug")

    @router.get("/unavailable")
    async def unavailable() -> Response:
        return JSONResponse({"status": "unhealthy"}, status_code=503)

    @router.get("/fine")
    async def fine() -> dict[str, str]:
        return {"status": "ok"}

    @router.post("/reads-the-stream")
    async def reads_the_stream(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    async def fast_raises(request: Request) -> Response:
        raise RuntimeError("a bug on the fast path")

    @router.post("/fast")
    async def fast() -> None:  # the documented route; the fast path serves it
        raise AssertionError("not reached")

    app.include_router(router)
    app.add_fast_path("POST", router.routes[-1], fast_raises)
    return app


async def test_every_5xx_answer_closes_the_connection() -> None:
    transport = httpx.ASGITransport(app=_app_with_failing_routes(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        raised = await client.get("/raises")  # Starlette's outermost 500
        fast = await client.post("/fast", content=b"{}")  # the fast path's own 500
        unavailable = await client.get("/unavailable")  # a 5xx the app chose
        fine = await client.get("/fine")
    for response in (raised, fast, unavailable):
        assert response.status_code >= 500
        assert response.headers.get_list("connection") == ["close"], response.headers
    assert raised.status_code == fast.status_code == 500
    assert "connection" not in fine.headers
    assert "x-request-id" in fast.headers


async def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded = RecordingLogger()
    monkeypatch.setattr(middleware, "log", recorded)
    app = _app_with_failing_routes()
    parts: list[Message] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    scope = http_scope("/reads-the-stream", [(b"content-length", b"100")])
    await Exchange(parts).run(app, scope)  # no exception: nobody is left to answer
    [(level, event, fields)] = recorded.records
    assert event == "http.request"
    assert level == "info"
    assert fields["status"] == 499


# --- the protocol's deadlines, shortened, on an in-process server -------------------------


class _QuickDeadlines(DeadlineHttpToolsProtocol):
    header_timeout = 0.5
    body_timeout = 0.5


async def _reading_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body, then answers; /slow takes its time, /hang never answers."""
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more_body = message.get("more_body", False)
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)
    elif scope["path"] == "/hang":
        await asyncio.Event().wait()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def _in_process_server(graceful_seconds: int = 5) -> Iterator[tuple[int, uvicorn.Server]]:
    port = _free_port()
    config = uvicorn.Config(
        _reading_app,
        host="127.0.0.1",
        port=port,
        http=_QuickDeadlines,
        loop="asyncio",
        lifespan="off",
        log_config=None,
        timeout_graceful_shutdown=graceful_seconds,
    )
    server = GracefulServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield port, server
    finally:
        server.should_exit = True
        thread.join(timeout=graceful_seconds + 5)


def _recv_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float | None]:
    started = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received, None
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def test_the_body_deadline_stays_inside_the_drain() -> None:
    assert BODY_TIMEOUT_SECONDS < GRACEFUL_SHUTDOWN_SECONDS
    assert LIMIT_CONCURRENCY < MAX_OPEN_CONNECTIONS


@pytest.mark.slow
def test_a_slow_app_is_not_cut_off_and_keep_alive_rearms_the_header_deadline() -> None:
    with _in_process_server() as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            # The body arrives in pieces, within the deadline; the app then takes three
            # times the deadline to answer, which is not the client's doing.
            sock.sendall(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
            time.sleep(0.2)
            sock.sendall(b"cd")
            sock.settimeout(5)
            # Headers and body may come in separate segments: read the whole answer.
            answer = b""
            while not answer.endswith(b"\r\n\r\nok") and (chunk := sock.recv(65536)):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            assert answer.endswith(b"ok")
            # Same connection: half the next request's headers, then nothing.
            sock.sendall(b"GET / HTTP/1.1\r\nHo")
            received, closed_after = _recv_until_closed(sock, timeout=5)
        assert received == b""
        assert closed_after is not None
        assert closed_after < 0.5 + 1.0


@pytest.mark.slow
def test_a_request_still_running_when_the_drain_gives_up_gets_no_500() -> None:
    with (
        _in_process_server(graceful_seconds=1) as (port, server),
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
    ):
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        server.should_exit = True
        received, closed_after = _recv_until_closed(sock, timeout=5)
    assert closed_after is not None
    assert received == b"", received
