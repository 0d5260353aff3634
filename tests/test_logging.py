"""Logs: JSON in production with the correlation id, and never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from project_orchestrator.logging import (
    configure_logging,
    get_logger,
    redact_text,
    set_known_secrets,
)


@pytest.fixture
def console_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(level="DEBUG", json_output=False, stream=stream)
    yield stream
    set_known_secrets(())
    configure_logging(level="INFO", json_output=False)


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


class _Client:
    """Holds a token the way library clients do, and shows it in its repr."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"_Client(token={self.token!r})"


def _fail_with_secrets_in_locals(token: str, headers: dict[str, str]) -> None:
    client = _Client(token)
    raise RuntimeError(f"request failed for {client!r} with {headers}")


def _log_failure(logger_name: str) -> None:
    headers = {"Authorization": "Bearer client-bearer-7f3a9c"}
    try:
        _fail_with_secrets_in_locals("Zq7", headers)
    except RuntimeError:
        get_logger(logger_name).exception("job.failed")
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")


def test_console_tracebacks_have_no_locals_and_no_secret(console_logs: io.StringIO) -> None:
    # A three-character secret is redacted like any other.
    set_known_secrets(["Zq7"])
    _log_failure("test")
    output = console_logs.getvalue()
    assert output.count("Traceback (most recent call last)") == 2
    assert "RuntimeError: request failed" in output
    assert "_fail_with_secrets_in_locals" in output  # the frames are there, readable
    assert "Zq7" not in output
    assert "client-bearer-7f3a9c" not in output
    # No locals: the traceback shows code, never variables' values.
    assert "headers = " not in output
    assert "╭" not in output


def test_json_tracebacks_are_redacted(json_logs: io.StringIO) -> None:
    set_known_secrets(["Zq7"])
    _log_failure("test")
    records = _records(json_logs)
    assert len(records) == 2
    for record in records:
        exception = str(record["exception"])
        assert exception.startswith("Traceback (most recent call last)")
        assert "RuntimeError: request failed for _Client(token='[redacted]')" in exception
    assert "Zq7" not in json_logs.getvalue()
    assert "client-bearer-7f3a9c" not in json_logs.getvalue()


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer client-bearer-7f3a9c",
        "{'authorization': 'token client-bearer-7f3a9c'}",
        "[(b'authorization', b'Bearer client-bearer-7f3a9c')]",
        "AUTHORIZATION=Basic client-bearer-7f3a9c",
        "sent Bearer client-bearer-7f3a9c upstream",
    ],
)
def test_authorization_values_are_redacted_without_a_known_secret(
    json_logs: io.StringIO, text: str
) -> None:
    get_logger("test").info("http.sent", detail=text)
    logging.getLogger("httpx").warning("library says %s", text)
    assert "client-bearer-7f3a9c" not in json_logs.getvalue()
    assert "[redacted]" in json_logs.getvalue()


def test_placeholders_and_plain_words_are_kept(json_logs: io.StringIO) -> None:
    hint = "A valid `Authorization: Bearer <API_KEY>` header is required."
    get_logger("test").info("api.refused", hint=hint)
    (record,) = _records(json_logs)
    assert record["hint"] == hint


def test_values_shown_by_their_repr_are_redacted(json_logs: io.StringIO) -> None:
    set_known_secrets(["tok-9f8e7d6c5b4a"])
    get_logger("test").info("client.built", client=_Client("tok-9f8e7d6c5b4a"), attempts=3)
    (record,) = _records(json_logs)
    assert record["client"] == "_Client(token='[redacted]')"
    assert record["attempts"] == 3


def test_redaction_is_one_pass_over_every_length(json_logs: io.StringIO) -> None:
    # "ed" occurs in "[redacted]": replaced one secret after another, it would mangle it.
    set_known_secrets(["Zq7", "ed", "k"])
    assert redact_text("sent Zq7, then k") == "sent [redacted], then [redacted]"


def test_page_link_tokens_are_redacted(json_logs: io.StringIO) -> None:
    token = "0f0e0d0c0b0a09080706050403020100.1764806400.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    logging.getLogger("uvicorn.access").debug(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/page/{token}", "1.1", 200
    )
    get_logger("test").info("sent", link=f"https://orch.example.test/page/{token} (7 days)")
    assert token not in json_logs.getvalue()
    assert json_logs.getvalue().count("/page/[redacted]") == 2
