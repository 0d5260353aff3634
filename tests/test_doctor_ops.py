"""doctor's operational checks: a queue nobody works, failed events, the rate-limit store."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import text

from project_orchestrator.db.engine import Database
from project_orchestrator.doctor_ops import check_queue, check_rate_limit_storage
from project_orchestrator.doctor_results import CheckStatus
from tests.conftest import make_settings
from tests.support.fake_http import unused_tcp_url


async def test_an_idle_healthy_queue_is_ok(db: Database, database_url: str) -> None:
    result = await check_queue(database_url)
    assert result.status is CheckStatus.OK
    assert result.message == "0 jobs waiting, no failed events"


async def test_a_job_nobody_takes_fails_and_failed_events_warn(
    db: Database, database_url: str
) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO inbound_events (source, external_id, event_type, serial_key, "
                "headers, payload, status) VALUES ('github', 'd-1', 'ping', 'github:-', "
                "'{}', '{}', 'failed')"
            )
        )
    result = await check_queue(database_url)
    assert result.status is CheckStatus.WARN
    assert "1 events ran out of attempts" in result.message
    assert result.hint is not None
    assert "events replay" in result.hint
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO pgqueuer (priority, entrypoint, payload, execute_after, status) "
                "VALUES (0, 'handle_event', NULL, now() - interval '10 minutes', 'queued')"
            )
        )
    stale = await check_queue(database_url)
    assert stale.status is CheckStatus.FAIL
    assert "no worker is taking jobs" in stale.message


async def test_rate_limit_storage(tmp_path: Path) -> None:
    memory = await check_rate_limit_storage(make_settings(tmp_path))
    assert memory.status is CheckStatus.OK
    dead = unused_tcp_url().replace("http://", "redis://")
    down = await check_rate_limit_storage(make_settings(tmp_path, rate_limit_storage_uri=dead))
    assert down.status is CheckStatus.FAIL
    assert "RATE_LIMIT_STORAGE_URI" in (down.hint or "")


async def test_a_running_redis_is_ok(tmp_path: Path) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 6379)) != 0:
            pytest.skip("no Redis on 127.0.0.1:6379 on this machine")
    uri = "redis://127.0.0.1:6379/0"
    result = await check_rate_limit_storage(make_settings(tmp_path, rate_limit_storage_uri=uri))
    assert result.status is CheckStatus.OK
