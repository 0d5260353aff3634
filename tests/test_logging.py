"""Logs: JSON in production with the correlation id, and never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from project_orchestrator.logging import configure_logging, get_logger, set_known_secrets


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(level="DEBUG", json_output=True, stream=stream)
    yield stream
    set_known_secrets(())
    configure_logging(level="INFO", json_output=False)


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_records_redact_known_secrets(json_logs: io.StringIO) -> None:
    set_known_secrets(["tok-9f8e7d6c5b4a"])
    get_logger("test").info("gate.approved", gate_id="g1", note="sent tok-9f8e7d6c5b4a away")
    logging.getLogger("uvicorn.error").info("library says tok-9f8e7d6c5b4a")
    records = _records(json_logs)
    assert [r["event"] for r in records][:1] == ["gate.approved"]
    assert records[0]["gate_id"] == "g1"
    assert "tok-9f8e7d6c5b4a" not in json_logs.getvalue()
    # Library records go through the same pipeline and come out as JSON too.
    assert any(r.get("logger") == "uvicorn.error" for r in records)


async def test_request_log_carries_the_correlation_id(
    json_logs: io.StringIO, client: httpx.AsyncClient
) -> None:
    response = await client.get("/health/db", headers={"X-Request-ID": "trace-0001-abcd"})
    assert response.status_code == 200
    request_lines = [r for r in _records(json_logs) if r["event"] == "http.request"]
    assert request_lines
    assert request_lines[-1]["correlation_id"] == "trace-0001-abcd"
    assert request_lines[-1]["route"] == "/health/db"
    assert request_lines[-1]["status"] == 200
