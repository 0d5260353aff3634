"""`orchestrator doctor` against a real PostgreSQL and fake Anthropic, Bot API, GitHub, SCAR."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from project_orchestrator.config import Settings
from project_orchestrator.doctor import exit_code, render, run_checks
from project_orchestrator.doctor_results import CheckResult, CheckStatus
from tests.conftest import make_settings
from tests.support import postgres
from tests.support.cli import run_cli
from tests.support.fake_http import FakeServer, unused_tcp_url

ANTHROPIC_KEY = "sk-ant-doctor-test-key-0001"
BOT_TOKEN = "123456:AAdoctor-test-bot-token"
GITHUB_TOKEN = "ghp_doctortesttoken0001"
WEBHOOK_SECRET = "gh-webhook-secret-0001"
TELEGRAM_SECRET = "tg-webhook-secret-0001"
API_KEY = "api-key-doctor-0001"
NAMES = [
    "config",
    "database",
    "migrations",
    "queue",
    "rate-limit",
    "ai",
    "telegram",
    "github",
    "scar",
]


@dataclass
class Fakes:
    """Fake upstreams; tests change `state` to make one misbehave."""

    anthropic: FakeServer
    telegram: FakeServer
    github: FakeServer
    scar: FakeServer
    state: dict[str, Any] = field(default_factory=dict)


def _anthropic_app(state: dict[str, Any]) -> Starlette:
    async def models(request: Request) -> JSONResponse:
        key = request.headers.get("x-api-key")
        if state.get("anthropic_reject") or key != ANTHROPIC_KEY:
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return JSONResponse({"type": "error", "error": error}, status_code=401)
        model = {"type": "model", "id": "claude-sonnet-4-5-20250929"}
        return JSONResponse({"data": [model], "has_more": False})

    return Starlette(routes=[Route("/v1/models", models)])


def _telegram_app(state: dict[str, Any]) -> Starlette:
    async def method(request: Request) -> JSONResponse:
        if request.path_params["token"] != BOT_TOKEN:
            body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
            return JSONResponse(body, status_code=401)
        name = request.path_params["method"]
        if name == "getMe":
            bot = {"id": 123456, "is_bot": True, "first_name": "Orc", "username": "orc_test_bot"}
            return JSONResponse({"ok": True, "result": bot})
        if name == "getWebhookInfo":
            info: dict[str, Any] = {
                "url": state.get("webhook_url", "https://orc.example/webhooks/telegram"),
                "has_custom_certificate": False,
                "pending_update_count": 0,
            }
            return JSONResponse({"ok": True, "result": info})
        body = {"ok": False, "error_code": 404, "description": "Not Found"}
        return JSONResponse(body, status_code=404)

    return Starlette(routes=[Route("/bot{token}/{method}", method)])


def _github_app() -> Starlette:
    async def user(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {GITHUB_TOKEN}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse({"login": "orc-bot", "id": 1}, headers={"X-OAuth-Scopes": "repo"})

    return Starlette(routes=[Route("/user", user)])


def _scar_app() -> Starlette:
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def concurrency(_: Request) -> JSONResponse:
        return JSONResponse({"activeConversationIds": [], "queuedByConversation": {}})

    return Starlette(routes=[Route("/health", health), Route("/health/concurrency", concurrency)])


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    state: dict[str, Any] = {}
    servers = [
        FakeServer(_anthropic_app(state)),
        FakeServer(_telegram_app(state)),
        FakeServer(_github_app()),
        FakeServer(_scar_app()),
    ]
    started: list[FakeServer] = []
    try:
        for server in servers:
            started.append(server.start())
        anthropic, telegram, github, scar = servers
        yield Fakes(anthropic, telegram, github, scar, state=state)
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def unmigrated_database_url(pg_server_url: str) -> Iterator[str]:
    url = postgres.create_database(pg_server_url)
    yield url
    postgres.drop_database(pg_server_url, url)


def all_good(tmp_path: Path, fakes: Fakes, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_key": API_KEY,
        "anthropic_api_key": ANTHROPIC_KEY,
        "anthropic_base_url": fakes.anthropic.url,
        "telegram_bot_token": BOT_TOKEN,
        "telegram_api_base_url": fakes.telegram.url,
        "TELEGRAM_MODE": "webhook",
        "telegram_webhook_secret": TELEGRAM_SECRET,
        "telegram_allowed_user_ids": "42",
        "github_access_token": GITHUB_TOKEN,
        "github_api_url": fakes.github.url,
        "github_webhook_secret": WEBHOOK_SECRET,
        "github_bot_mention": "@orc-bot",
        "scar_base_url": fakes.scar.url,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def assert_no_secrets(output: str, *extra: str) -> None:
    for secret in (ANTHROPIC_KEY, BOT_TOKEN, GITHUB_TOKEN, WEBHOOK_SECRET, TELEGRAM_SECRET):
        assert secret not in output
    for secret in extra:
        assert secret not in output


async def test_all_good_configuration(tmp_path: Path, fakes: Fakes, database_url: str) -> None:
    results = await run_checks(all_good(tmp_path, fakes, database_url))

    assert [r.name for r in results] == NAMES
    assert {r.name: r.status for r in results} == dict.fromkeys(NAMES, CheckStatus.OK)
    assert exit_code(results) == 0
    checks = by_name(results)
    assert "@orc_test_bot" in checks["telegram"].message
    assert "orc-bot" in checks["github"].message

    output = render(results)
    lines = output.splitlines()
    assert len(lines) == len(NAMES)  # no hints when everything is fine
    assert all(line.startswith("[ ok ] ") for line in lines)
    assert re.search(r"^\[ ok \] database +connected to \S+:\d+/\w+", output, re.MULTILINE)
    password = make_url(database_url).password
    assert_no_secrets(output, *([password] if password else []))

    # The checks really authenticated against the fakes, with the documented headers.
    (models,) = fakes.anthropic.requests
    assert models.headers["x-api-key"] == ANTHROPIC_KEY
    assert models.headers["anthropic-version"] == "2023-06-01"
    assert [r.path.rsplit("/", 1)[1] for r in fakes.telegram.requests] == [
        "getMe",
        "getWebhookInfo",
    ]
    assert fakes.github.requests[0].headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert [r.path for r in fakes.scar.requests] == ["/health", "/health/concurrency"]


async def test_unmigrated_database_fails_migrations(
    tmp_path: Path, fakes: Fakes, unmigrated_database_url: str
) -> None:
    results = await run_checks(all_good(tmp_path, fakes, unmigrated_database_url))

    checks = by_name(results)
    assert checks["database"].status is CheckStatus.OK
    assert checks["migrations"].status is CheckStatus.FAIL
    assert checks["migrations"].hint is not None
    assert "orchestrator migrate" in checks["migrations"].hint
    assert exit_code(results) == 1
    assert "fix: run `orchestrator migrate`" in render(results)


async def test_database_from_a_newer_release_fails_migrations(
    tmp_path: Path, fakes: Fakes, unmigrated_database_url: str
) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(unmigrated_database_url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32))"))
        await conn.execute(text("INSERT INTO alembic_version VALUES ('fromthefuture')"))
    await engine.dispose()

    migrations = by_name(await run_checks(all_good(tmp_path, fakes, unmigrated_database_url)))[
        "migrations"
    ]
    assert migrations.status is CheckStatus.FAIL
    assert "fromthefuture" in migrations.message
    assert migrations.hint is not None
    assert "orchestrator migrate" not in migrations.hint


async def test_unreachable_database_fails_without_password(tmp_path: Path, fakes: Fakes) -> None:
    url = "postgresql://u:secretpw@127.0.0.1:1/x"
    results = await run_checks(all_good(tmp_path, fakes, url))

    checks = by_name(results)
    assert checks["database"].status is CheckStatus.FAIL
    assert checks["database"].hint
    assert "127.0.0.1:1" in checks["database"].message
    assert checks["migrations"].status is CheckStatus.WARN
    # The other checks still ran.
    assert checks["ai"].status is CheckStatus.OK
    assert checks["scar"].status is CheckStatus.OK
    assert exit_code(results) == 1
    output = render(results)
    assert re.search(r"^\[FAIL\] database ", output, re.MULTILINE)
    assert "secretpw" not in output


async def test_database_url_argument_overrides_settings(
    tmp_path: Path, fakes: Fakes, database_url: str
) -> None:
    settings = all_good(tmp_path, fakes, "postgresql://u:secretpw@127.0.0.1:1/x")
    results = await run_checks(settings, database_url=database_url)
    assert by_name(results)["database"].status is CheckStatus.OK


async def test_no_database_url_means_embedded_without_starting_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, scar_transport="github")
    results = await run_checks(settings)

    checks = by_name(results)
    assert checks["database"].status is CheckStatus.WARN
    assert "embedded PostgreSQL under DATA_DIR" in checks["database"].message
    assert checks["migrations"].status is CheckStatus.WARN
    assert not (tmp_path / "data").exists()  # nothing was started or created
    for name in ("ai", "telegram", "github"):
        assert checks[name].status is CheckStatus.WARN
        assert "not configured" in checks[name].message
    # SCAR over GitHub needs GitHub access.
    assert checks["scar"].status is CheckStatus.FAIL
    assert checks["config"].status is CheckStatus.WARN
    assert "ANTHROPIC_API_KEY" in checks["config"].message


async def test_rejected_ai_key_fails(tmp_path: Path, fakes: Fakes, database_url: str) -> None:
    fakes.state["anthropic_reject"] = True
    results = await run_checks(all_good(tmp_path, fakes, database_url))

    ai = by_name(results)["ai"]
    assert ai.status is CheckStatus.FAIL
    assert "key rejected" in ai.message
    assert ai.hint is not None
    assert "ANTHROPIC_API_KEY" in ai.hint
    assert exit_code(results) == 1
    assert_no_secrets(render(results))


async def test_unreachable_ai_and_rejected_tokens(tmp_path: Path, fakes: Fakes) -> None:
    settings = all_good(
        tmp_path,
        fakes,
        "postgresql://u:secretpw@127.0.0.1:1/x",
        anthropic_base_url=unused_tcp_url(),
        telegram_bot_token="999:wrong-token-value",
        github_access_token="ghp_wrongtokenvalue",
    )
    results = await run_checks(settings)

    checks = by_name(results)
    assert checks["ai"].status is CheckStatus.FAIL
    assert "unreachable" in checks["ai"].message
    assert checks["telegram"].status is CheckStatus.FAIL
    assert "token rejected" in checks["telegram"].message
    assert checks["github"].status is CheckStatus.FAIL
    assert "rejected" in checks["github"].message
    output = render(results)
    assert "wrong-token-value" not in output
    assert "ghp_wrongtokenvalue" not in output


async def test_telegram_webhook_mode_without_webhook_warns(
    tmp_path: Path, fakes: Fakes, database_url: str
) -> None:
    fakes.state["webhook_url"] = ""
    results = await run_checks(all_good(tmp_path, fakes, database_url))

    telegram = by_name(results)["telegram"]
    assert telegram.status is CheckStatus.WARN
    assert telegram.hint is not None
    assert "orchestrator telegram set-webhook" in telegram.hint
    assert exit_code(results) == 0
    assert_no_secrets(render(results))


async def test_telegram_polling_with_a_webhook_set_warns(
    tmp_path: Path, fakes: Fakes, database_url: str
) -> None:
    settings = all_good(tmp_path, fakes, database_url, TELEGRAM_MODE="polling")
    telegram = by_name(await run_checks(settings))["telegram"]
    assert telegram.status is CheckStatus.WARN
    assert telegram.hint is not None
    assert "delete-webhook" in telegram.hint


async def test_a_mention_that_is_not_the_tokens_login_warns(
    tmp_path: Path, fakes: Fakes, database_url: str
) -> None:
    settings = all_good(tmp_path, fakes, database_url, github_bot_mention="@orchestrator")
    github = by_name(await run_checks(settings))["github"]
    assert github.status is CheckStatus.WARN
    assert "GITHUB_BOT_MENTION is @orchestrator" in github.message
    assert "mention @orc-bot are ignored" in github.message
    assert github.hint == "set GITHUB_BOT_MENTION=@orc-bot, the account people mention"


async def test_github_without_webhook_secret_warns(
    tmp_path: Path, fakes: Fakes, database_url: str
) -> None:
    settings = all_good(tmp_path, fakes, database_url, github_webhook_secret="")
    github = by_name(await run_checks(settings))["github"]
    assert github.status is CheckStatus.WARN
    assert "GITHUB_WEBHOOK_SECRET" in github.message


async def test_unreachable_scar_fails(tmp_path: Path, fakes: Fakes, database_url: str) -> None:
    settings = all_good(tmp_path, fakes, database_url, scar_base_url=unused_tcp_url())
    results = await run_checks(settings)

    scar = by_name(results)["scar"]
    assert scar.status is CheckStatus.FAIL
    assert "unreachable" in scar.message
    assert scar.hint
    assert exit_code(results) == 1


async def test_production_with_missing_secrets_fails_config(
    tmp_path: Path, fakes: Fakes, database_url: str
) -> None:
    settings = all_good(
        tmp_path,
        fakes,
        database_url,
        app_env="production",
        api_key=None,
        github_webhook_secret="",
        telegram_webhook_secret=None,
    )
    results = await run_checks(settings)

    config = by_name(results)["config"]
    assert config.status is CheckStatus.FAIL
    for name in ("API_KEY", "GITHUB_WEBHOOK_SECRET", "TELEGRAM_WEBHOOK_SECRET"):
        assert name in config.message
    assert config.hint
    assert exit_code(results) == 1
    assert_no_secrets(render(results))


async def test_a_stuck_threshold_within_scars_time_warns(
    tmp_path: Path, fakes: Fakes, database_url: str
) -> None:
    settings = all_good(
        tmp_path, fakes, database_url, scar_timeout_seconds=3600, run_stuck_after_seconds=1800
    )
    config = by_name(await run_checks(settings))["config"]
    assert config.status is CheckStatus.WARN
    assert "RUN_STUCK_AFTER_SECONDS (1800) is not above SCAR_TIMEOUT_SECONDS (3600)" in (
        config.message
    )
    assert config.hint is not None
    assert "above SCAR_TIMEOUT_SECONDS" in config.hint


async def test_production_with_short_secrets_fails_config(
    tmp_path: Path, fakes: Fakes, database_url: str
) -> None:
    settings = all_good(
        tmp_path, fakes, database_url, app_env="production", api_key="short-key-123"
    )
    results = await run_checks(settings)

    config = by_name(results)["config"]
    assert config.status is CheckStatus.FAIL
    assert "API_KEY" in config.message
    assert "16 characters" in config.message
    assert "short-key-123" not in render(results)
    assert exit_code(results) == 1


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"public_base_url": "https://orch.example.test"}, "PAGE_LINK_SECRET"),
        ({"page_link_secret": "page-link-secret-0123456789"}, "PUBLIC_BASE_URL"),
    ],
)
async def test_half_set_project_pages_warn(
    tmp_path: Path, fakes: Fakes, database_url: str, given: dict[str, str], missing: str
) -> None:
    config = by_name(await run_checks(all_good(tmp_path, fakes, database_url, **given)))["config"]
    assert config.status is CheckStatus.WARN
    assert f"but {missing} is not" in config.message
    both = all_good(
        tmp_path,
        fakes,
        database_url,
        public_base_url="https://orch.example.test",
        page_link_secret="page-link-secret-0123456789",
    )
    assert by_name(await run_checks(both))["config"].status is CheckStatus.OK


def test_render_and_exit_code() -> None:
    results = [
        CheckResult("config", CheckStatus.OK, "fine"),
        CheckResult("database", CheckStatus.WARN, "meh", "do this"),
        CheckResult("scar", CheckStatus.FAIL, "broken", "do that"),
    ]
    assert render(results).splitlines() == [
        "[ ok ] config    fine",
        "[warn] database  meh",
        "       fix: do this",
        "[FAIL] scar      broken",
        "       fix: do that",
    ]
    assert exit_code(results) == 1
    assert exit_code(results[:2]) == 0


def test_cli_doctor_exits_non_zero_when_the_database_is_down(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://u:secretpw@127.0.0.1:1/x",
        "GITHUB_ACCESS_TOKEN": GITHUB_TOKEN,
        "GITHUB_API_URL": unused_tcp_url(),
        "SCAR_BASE_URL": unused_tcp_url(),
    }
    result = run_cli(["doctor"], env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"^\[FAIL\] database ", result.stdout, re.MULTILINE), result.stdout
    for name in NAMES:
        assert re.search(rf"^\[(?: ok |warn|FAIL)\] {name} ", result.stdout, re.MULTILINE)
    assert "secretpw" not in result.stdout + result.stderr
    assert GITHUB_TOKEN not in result.stdout + result.stderr
