"""`orchestrator serve` on a machine with no database: embedded PostgreSQL, migrated, ready."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cli import COMMAND, clean_environment, run_cli

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                time.sleep(0.3)
        assert ready is not None, "the server never answered"
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
