"""`orchestrator serve` in both modes: failures are logged, secrets never are.

Each run configures every secret, makes a job fail (every outside service answers 500)
and makes requests fail unhandled (the audit log stops being writable under the running
service), sending `Authorization: Bearer` values along; then stdout, stderr and the audit
log are searched for every secret and bearer value.
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
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from project_orchestrator.audit import AuditAction, AuditLog, AuditResult
from tests.support.cli import COMMAND, clean_environment
from tests.support.github_payloads import issue_comment, signed

# Distinctive values, so a hit can only be a leak. The development API key is three
# characters long: short secrets must be redacted too.
SHORT_API_KEY = "Zq7"
LONG_API_KEY = "api-key-value-5b1e9c7d2a"
ANTHROPIC_API_KEY = "sk-ant-anthropic-key-8c2f4e"
TELEGRAM_BOT_TOKEN = "7351:telegram-bot-token-c4a9"
TELEGRAM_WEBHOOK_SECRET = "telegram-webhook-secret-2d7b9f"
GITHUB_ACCESS_TOKEN = "ghp_githubaccesstoken6a2d9e1f"
GITHUB_WEBHOOK_SECRETS = ("old-webhook-secret-1e8b4c70", "new-webhook-secret-9f2a7d31")
DATABASE_PASSWORD = "db-password-4c8e1f6a"
# What a client sends, never configured: an Authorization value is redacted as such.
BEARER_VALUE = "client-bearer-value-3e9a7c5b"


class Output(NamedTuple):
    stdout: str
    stderr: str
    audit: str


class _Failing(BaseHTTPRequestHandler):
    """GitHub, Anthropic, Telegram and SCAR all at once, each answering 500."""

    def _fail(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = b'{"message": "Server Error"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _fail

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test's own output stays quiet


@pytest.fixture(scope="module")
def failing_services() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def _admin(url: str, *statements: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def database_with_password(pg_server_url: str, database_url: str) -> Iterator[str]:
    """An empty database owned by a role that logs in with DATABASE_PASSWORD.

    Falls back to the shared test database (no password) on a server where the tests may
    not create roles.
    """
    name = f"orchestrator_secrets_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(
            _admin(
                pg_server_url,
                f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{DATABASE_PASSWORD}'",
                f'CREATE DATABASE "{name}" OWNER "{name}"',
            )
        )
    except asyncpg.InsufficientPrivilegeError:
        yield database_url
        return
    url = make_url(pg_server_url).set(username=name, password=DATABASE_PASSWORD, database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(
            _admin(
                pg_server_url,
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                f'DROP ROLE IF EXISTS "{name}"',
            )
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(base: str, process: subprocess.Popen[bytes], output: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, output.read_text(errors="replace")
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("the server never became ready:\n" + output.read_text(errors="replace"))


def _wait_for(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never logged:\n" + path.read_text(errors="replace"))


def _exercise(base: str, stdout: Path, audit_log: Path) -> None:
    """Audited refusals, a failing job, then requests that fail unhandled."""
    bearer = {"Authorization": f"Bearer {BEARER_VALUE}"}
    assert httpx.get(f"{base}/api/v1/projects", headers=bearer).status_code == 401
    body, headers = signed(
        GITHUB_WEBHOOK_SECRETS[1], "issue_comment", issue_comment("@orchestrator /help")
    )
    forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64, **bearer}
    assert httpx.post(f"{base}/webhooks/github", content=body, headers=forged).status_code == 403
    # The owner asks for help; posting the answer fails (GitHub answers 500), again and again.
    accepted = httpx.post(f"{base}/webhooks/github", content=body, headers={**headers, **bearer})
    assert accepted.status_code == 202, accepted.text
    _wait_for(stdout, "job.failed", timeout=30)

    # The audit log's directory turns into a file: every audited refusal now raises.
    kept = audit_log.parent.with_name("audit-kept")
    audit_log.parent.rename(kept)
    audit_log.parent.write_text("not a directory\n")
    try:
        # A stranger's comment is refused, and that refusal is audited inside the job: the
        # job fails on every attempt until the queue gives up and logs its traceback.
        stranger = issue_comment("@orchestrator /status", login="mallory", association="NONE")
        body, headers = signed(GITHUB_WEBHOOK_SECRETS[0], "issue_comment", stranger)
        assert (
            httpx.post(f"{base}/webhooks/github", content=body, headers=headers).status_code == 202
        )
        assert httpx.get(f"{base}/api/v1/projects", headers=bearer).status_code == 500
        assert (
            httpx.post(f"{base}/webhooks/github", content=body, headers=forged).status_code == 500
        )
        _wait_for(stdout, "Exception while processing entrypoint/job-id: handle_event", 150)
    finally:
        audit_log.parent.unlink()
        kept.rename(audit_log.parent)


def _serve(tmp_path: Path, env: dict[str, str]) -> Output:
    """Run `orchestrator serve` through `_exercise`; its stdout, stderr and audit log."""
    port = _free_port()
    audit_log = tmp_path / "audit" / "audit.log"
    stdout_path, stderr_path = tmp_path / "stdout.log", tmp_path / "stderr.log"
    full_env = clean_environment(PORT=str(port), AUDIT_LOG_PATH=str(audit_log), **env)
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [*COMMAND, "serve"], env=full_env, cwd=tmp_path, stdout=out, stderr=err
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, stdout_path)
        _exercise(base, stdout_path, audit_log)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return Output(
        stdout_path.read_text(errors="replace"),
        stderr_path.read_text(errors="replace"),
        audit_log.read_text(errors="replace"),
    )


def _every_secret(api_key: str) -> list[str]:
    return [
        api_key,
        ANTHROPIC_API_KEY,
        TELEGRAM_BOT_TOKEN,
        TELEGRAM_WEBHOOK_SECRET,
        GITHUB_ACCESS_TOKEN,
        *GITHUB_WEBHOOK_SECRETS,
        DATABASE_PASSWORD,
        BEARER_VALUE,
    ]


def _secrets_env(api_key: str, services: str) -> dict[str, str]:
    return {
        "API_KEY": api_key,
        "ANTHROPIC_API_KEY": ANTHROPIC_API_KEY,
        "ANTHROPIC_BASE_URL": services,
        "TELEGRAM_BOT_TOKEN": TELEGRAM_BOT_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_WEBHOOK_SECRET,
        "TELEGRAM_API_BASE_URL": services,
        "GITHUB_ACCESS_TOKEN": GITHUB_ACCESS_TOKEN,
        "GITHUB_API_URL": services,
        "GITHUB_WEBHOOK_SECRET": ",".join(GITHUB_WEBHOOK_SECRETS),
        "SCAR_BASE_URL": services,
        "AI_RETRY_WINDOW_SECONDS": "0",
    }


def _assert_no_secret(api_key: str, **streams: str) -> None:
    leaks = {
        f"{name}: {secret!r} in {line.strip()[:300]!r}"
        for name, text in streams.items()
        for line in text.splitlines()
        for secret in _every_secret(api_key)
        if secret in line
    }
    assert not leaks, "\n".join(sorted(leaks))


def _assert_failures_logged(stdout: str) -> None:
    # The failures really happened and were logged with their tracebacks, so the search
    # above looked at the output that used to carry the secrets.
    assert "job.failed" in stdout
    assert "Exception while processing entrypoint/job-id: handle_event" in stdout
    assert "Exception in ASGI application" in stdout
    assert "webhook.unhandled_error" in stdout
    assert stdout.count("Traceback (most recent call last)") >= 3


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, failing_services: str, database_with_password: str
) -> dict[str, Output]:
    """Both modes at once: each waits a minute for the queue to give up on its job."""
    development = {
        **_secrets_env(SHORT_API_KEY, failing_services),
        "APP_ENV": "development",
        "DATA_DIR": str(tmp_path_factory.mktemp("development") / "data"),
    }
    production = {
        **_secrets_env(LONG_API_KEY, failing_services),
        "APP_ENV": "production",
        "DATABASE_URL": database_with_password,
        # The test's deliveries come from the loopback address.
        "GITHUB_WEBHOOK_IPS": "127.0.0.0/8",
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            "development": pool.submit(_serve, Path(development["DATA_DIR"]).parent, development),
            "production": pool.submit(_serve, tmp_path_factory.mktemp("production"), production),
        }
        return {mode: future.result() for mode, future in futures.items()}


@pytest.mark.slow
def test_development_prints_no_secret(runs: dict[str, Output]) -> None:
    run = runs["development"]
    _assert_failures_logged(run.stdout)
    _assert_no_secret(SHORT_API_KEY, stdout=run.stdout, stderr=run.stderr, audit=run.audit)
    assert run.audit.strip(), "the audited refusals are on record"


@pytest.mark.slow
def test_production_prints_no_secret(runs: dict[str, Output]) -> None:
    run = runs["production"]
    _assert_failures_logged(run.stdout)
    _assert_no_secret(LONG_API_KEY, stdout=run.stdout, stderr=run.stderr, audit=run.audit)
    records = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert any(r.get("event") == "webhook.unhandled_error" for r in records)
    assert run.audit.strip(), "the audited refusals are on record"


def _audit_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_audit_log_redacts_short_secrets_and_keeps_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    # "res", "ti" and "ed" occur in the contract's keys and values ("result", "timestamp",
    # "denied") and "ed" in "[redacted]" itself: only what was passed in is redacted.
    secrets = [SHORT_API_KEY, "res", "ti", "ed", 'quo"te\\secret']
    audit = AuditLog(path, known_secrets=secrets)
    audit.record(
        AuditAction.UNAUTHORIZED_ACCESS,
        result=AuditResult.DENIED,
        user_id=f"github:{SHORT_API_KEY}",
        details={
            "reason": f'sent {SHORT_API_KEY} and quo"te\\secret',
            "error": ValueError(f"bad key {SHORT_API_KEY}"),
            "items": [{"note": SHORT_API_KEY}],
            "at": datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
            "count": 3,
        },
    )
    raw = path.read_text()
    assert SHORT_API_KEY not in raw
    assert "quo" not in raw
    (entry,) = _audit_lines(path)
    assert set(entry) == {
        "timestamp", "action", "user_id", "project_id", "details", "result", "ip_address"
    }  # fmt: skip
    assert entry["action"] == "unauthorized_access"
    assert entry["result"] == "denied"
    assert entry["user_id"] == "github:[redacted]"
    details = entry["details"]
    assert isinstance(details, dict)
    assert details["error"] == "bad key [redacted]"
    assert details["items"] == [{"note": "[redacted]"}]
    assert details["at"] == "2026-12-01T09:30:00+00:00"  # as JSON renders a datetime
    assert details["count"] == 3


def test_the_audit_log_redacts_authorization_values(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    AuditLog(path).record(
        AuditAction.UNAUTHORIZED_ACCESS,
        result=AuditResult.DENIED,
        details={"request": f"GET / with Authorization: Bearer {BEARER_VALUE}"},
    )
    raw = path.read_text()
    assert BEARER_VALUE not in raw
    assert "Authorization: Bearer [redacted]" in raw
