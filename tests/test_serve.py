"""`orchestrator serve` on a machine with no database: embedded PostgreSQL, migrated, ready."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from project_orchestrator.db.engine import Database
from tests.support.cli import COMMAND, clean_environment, run_cli

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _first_answer(process: subprocess.Popen[str], port: int, limit: float) -> httpx.Response:
    """/health/ready's first answer, once the server listens (failing if it exits)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
        except httpx.TransportError:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.3)
    raise AssertionError("the server never answered")


def _postgres_running(pgdata: Path) -> bool:
    import psutil

    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
            return True
    return False


def test_serve_with_embedded_database_then_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = clean_environment(DATA_DIR=str(tmp_path / "data"), PORT=str(port))
    process = subprocess.Popen(
        [*COMMAND, "serve", "--no-worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = _first_answer(process, port, limit=60)
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read() if process.stdout else ""
    assert "embedded_postgres.stopped" in output
    assert not _postgres_running(tmp_path / "data" / "postgres")


def test_production_logs_are_json(tmp_path: Path, database_url: str) -> None:
    env = {
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "API_KEY": "api-key-for-this-test",
    }
    result = run_cli(["migrate"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert any(r.get("event") == "migrations.at_head" for r in records)
    assert all({"event", "level", "timestamp"} <= set(r) for r in records)
    assert "api-key-for-this-test" not in result.stdout + result.stderr


def _alive(process: Any) -> bool:
    import psutil

    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_serve_with_two_api_processes_and_the_worker_apart(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    """Two API processes share the port, the worker runs as its own process, a delivery
    is stored through either, and SIGTERM stops them all with exit status 0."""
    import hashlib
    import hmac
    import uuid

    import psutil

    port = _free_port()
    secret = "serve-test-secret-0123456789"
    env = clean_environment(
        DATABASE_URL=database_url,
        PORT=str(port),
        GITHUB_WEBHOOK_SECRET=secret,
        WEB_CONCURRENCY="2",
        TELEGRAM_MODE="off",
    )
    process = subprocess.Popen(
        [*COMMAND, "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = _first_answer(process, port, limit=90)
        assert ready.status_code == 200
        children = psutil.Process(process.pid).children(recursive=True)
        commands = [" ".join(child.cmdline()) for child in children]
        assert sum("multiprocessing" in c for c in commands) >= 2, commands
        assert any(c.endswith("project_orchestrator worker") for c in commands), commands
        codes = []
        for _ in range(6):  # new connections: the kernel spreads them over both processes
            body = json.dumps({"zen": "hi"}).encode()
            signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "ping",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": signature,
            }
            url = f"http://127.0.0.1:{port}/webhooks/github"
            codes.append(httpx.post(url, content=body, headers=headers, timeout=5).status_code)
        assert codes == [202] * 6
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0
        # The API processes and the worker are waited for before the parent exits;
        # multiprocessing's resource tracker goes when it sees the parent's pipe close,
        # a moment later.
        deadline = time.monotonic() + 10
        while [child for child in children if _alive(child)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [commands[n] for n, child in enumerate(children) if _alive(child)]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
