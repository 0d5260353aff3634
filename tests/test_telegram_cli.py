"""`orchestrator telegram ...` through the console script, against the fake Bot API."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from project_orchestrator.ingress.telegram.bot import ALLOWED_UPDATES
from tests.support.cli import run_cli
from tests.support.fake_http import FakeServer, unused_tcp_url
from tests.support.fake_telegram import FakeTelegram, text_update

pytestmark = pytest.mark.slow  # every test starts the console script

TOKEN = "424242:cli-test-token-abcdef"
SECRET = "cli-webhook-secret_0123456789"
HOOK = "https://bot.example.com/webhooks/telegram"


class FailingDeliveries(FakeTelegram):
    """A bot whose webhook deliveries have been failing, as Telegram reports it."""

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info = await super()._get_webhook_info(params)
        info["last_error_date"] = int(datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp())
        info["last_error_message"] = "Wrong response from the webhook: 403 Forbidden"
        return info


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(token=TOKEN)
    with FakeServer(fake.app) as server:
        fake.base_url = server.url  # type: ignore[attr-defined]
        yield fake


def env_for(fake: FakeTelegram, **overrides: str) -> dict[str, str]:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": fake.base_url,  # type: ignore[attr-defined]
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def telegram(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    result = run_cli(["telegram", *args], env, tmp_path)
    output = result.stdout + result.stderr
    # Whatever happened, neither secret is ever shown.
    assert TOKEN not in output
    assert SECRET not in output
    return result


def test_set_webhook_sends_the_secret_but_never_prints_it(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    result = telegram(["set-webhook", HOOK], env_for(fake), tmp_path)
    assert result.returncode == 0, result.stderr
    assert HOOK in result.stdout
    assert "@orchestrator_bot" in result.stdout
    assert "message, callback_query" in result.stdout
    webhook = fake.webhook
    assert webhook["url"] == HOOK
    assert webhook["secret_token"] == SECRET
    assert webhook["allowed_updates"] == ALLOWED_UPDATES
    assert webhook["drop_pending_updates"] is False


def test_set_webhook_needs_https_unless_insecure(fake: FakeTelegram, tmp_path: Path) -> None:
    local = "http://127.0.0.1:8000/webhooks/telegram"
    refused = telegram(["set-webhook", local], env_for(fake), tmp_path)
    assert refused.returncode == 2
    assert "https://" in refused.stderr
    assert "--insecure" in refused.stderr
    assert "setWebhook" not in fake.calls

    fake.strict_webhook_url = False  # the real Telegram would refuse it too
    allowed = telegram(["set-webhook", local, "--insecure"], env_for(fake), tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert fake.webhook["url"] == local


def test_set_webhook_notes_an_unexpected_path(fake: FakeTelegram, tmp_path: Path) -> None:
    result = telegram(["set-webhook", "https://bot.example.com/"], env_for(fake), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "/webhooks/telegram" in result.stdout


@pytest.mark.parametrize("url", ["bot.example.com/webhooks/telegram", "ftp://x/y", "https://"])
def test_set_webhook_refuses_what_is_not_a_url(
    fake: FakeTelegram, tmp_path: Path, url: str
) -> None:
    result = telegram(["set-webhook", url], env_for(fake), tmp_path)
    assert result.returncode == 2
    assert "not a URL" in result.stderr
    assert fake.calls == []


def test_set_webhook_without_a_secret_is_refused(fake: FakeTelegram, tmp_path: Path) -> None:
    result = telegram(["set-webhook", HOOK], env_for(fake, TELEGRAM_WEBHOOK_SECRET=""), tmp_path)
    assert result.returncode == 2
    assert "TELEGRAM_WEBHOOK_SECRET is not set" in result.stderr
    assert fake.calls == []


def test_set_webhook_with_a_secret_telegram_would_refuse(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    env = env_for(fake, TELEGRAM_WEBHOOK_SECRET="has spaces and !")
    result = run_cli(["telegram", "set-webhook", HOOK], env, tmp_path)
    assert result.returncode == 2
    assert "TELEGRAM_WEBHOOK_SECRET must be" in result.stderr
    assert "has spaces" not in result.stdout + result.stderr
    assert fake.calls == []


@pytest.mark.parametrize(
    "args", [["set-webhook", HOOK], ["delete-webhook"], ["webhook-info"]], ids=str
)
def test_every_command_needs_a_token(fake: FakeTelegram, tmp_path: Path, args: list[str]) -> None:
    result = telegram(args, env_for(fake, TELEGRAM_BOT_TOKEN=""), tmp_path)
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN is not set" in result.stderr
    assert fake.calls == []


def test_a_rejected_token_is_named_not_echoed(fake: FakeTelegram, tmp_path: Path) -> None:
    wrong = "999:not-the-right-token"
    result = telegram(["webhook-info"], env_for(fake, TELEGRAM_BOT_TOKEN=wrong), tmp_path)
    assert result.returncode == 2
    assert "Telegram rejected TELEGRAM_BOT_TOKEN" in result.stderr
    assert wrong not in result.stdout + result.stderr


def test_telegram_refusing_is_reported(fake: FakeTelegram, tmp_path: Path) -> None:
    result = telegram(
        ["set-webhook", "https://bot.example.com:9000/webhooks/telegram"], env_for(fake), tmp_path
    )
    assert result.returncode == 1
    assert "Telegram refused" in result.stderr
    assert "ports 80, 88, 443 or 8443" in result.stderr
    assert fake.webhook["url"] == ""


def test_an_unreachable_bot_api_is_reported(tmp_path: Path) -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": unused_tcp_url(),
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    result = telegram(["delete-webhook"], env, tmp_path)
    assert result.returncode == 1
    assert "Could not reach the Bot API" in result.stderr


def test_delete_webhook_keeps_or_drops_pending_updates(fake: FakeTelegram, tmp_path: Path) -> None:
    assert telegram(["set-webhook", HOOK], env_for(fake), tmp_path).returncode == 0
    fake.push_update(text_update(1, 555, 777, "hi"))

    kept = telegram(["delete-webhook"], env_for(fake), tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert "deleted" in kept.stdout
    assert fake.webhook["url"] == ""
    assert len(fake.pending_updates) == 1

    dropped = telegram(["delete-webhook", "--drop-pending"], env_for(fake), tmp_path)
    assert dropped.returncode == 0, dropped.stderr
    assert "dropped" in dropped.stdout
    assert fake.pending_updates == []
    last = [call for call in fake.requests if call.method == "deleteWebhook"][-1]
    assert last.params["drop_pending_updates"] is True


def test_webhook_info_shows_url_pending_and_last_error(tmp_path: Path) -> None:
    fake = FailingDeliveries(token=TOKEN)
    with FakeServer(fake.app) as server:
        fake.base_url = server.url  # type: ignore[attr-defined]
        assert telegram(["set-webhook", HOOK], env_for(fake), tmp_path).returncode == 0
        fake.push_update(text_update(1, 555, 777, "hi"))
        fake.push_update(text_update(2, 555, 777, "there"))
        result = telegram(["webhook-info"], env_for(fake), tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"url: {HOOK}" in lines
    assert "pending_update_count: 2" in lines
    assert "last_error_message: Wrong response from the webhook: 403 Forbidden" in lines
    assert "allowed_updates: message, callback_query" in lines


def test_webhook_info_without_a_webhook(fake: FakeTelegram, tmp_path: Path) -> None:
    result = telegram(["webhook-info"], env_for(fake), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "url: (none" in result.stdout
    assert "pending_update_count: 0" in result.stdout
    assert "last_error_message: (none)" in result.stdout
