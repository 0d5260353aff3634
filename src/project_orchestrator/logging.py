"""structlog pipeline: JSON on stdout in production, console in development.

Everything (our loggers, uvicorn, alembic, libraries) goes through one stdlib handler
with a structlog ProcessorFormatter, so every record gets the same shape, the bound
correlation id, and secret redaction.

Exceptions are rendered as plain text tracebacks without local variables, in both modes,
and before redaction: a traceback's locals hold settings, request headers and clients
with their tokens, and a traceback rendered after the redaction step is never redacted.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor

_REDACTED = "[redacted]"
# All known secrets in one alternation, longest first, replaced in a single pass: one
# by one, a short secret could match inside an earlier "[redacted]" (or a secret left
# behind by another's replacement).
_secrets: re.Pattern[str] | None = None

# A credential a client sent, which no configured secret covers: the value of an
# Authorization header however it is printed (`Authorization: token x`, a dict or header
# list repr), and any `Bearer <token>`. A `<placeholder>` in help texts is left alone.
_AUTHORIZATION_VALUE = re.compile(
    # The name; a separator (a comma only after a quoted name: a header tuple's repr); an
    # opening quote (b'' for bytes); the scheme, kept as it is no secret (possessive, so
    # the scheme itself is never taken for the value); then the value.
    r"""(?i)(authorization(?:['"]\s*[:=,]|\s*[:=])\s*(?:b?['"])?"""
    r"""(?:(?:bearer|basic|token|digest)\s+)?+)(?!<)[^\s'",;)}\]]+"""
)
_BEARER_TOKEN = re.compile(r"\b(Bearer\s+)(?!<)[A-Za-z0-9._~+/=-]+")
# A project page's link opens the page for whoever has it: its token is not logged
# (uvicorn's access log at DEBUG quotes the path).
_PAGE_TOKEN = re.compile(r"(/page/)(?!\[redacted\])[^\s\"'?#]+")
_PLAIN_TYPES = (int, float, bool, type(None))


def set_known_secrets(secrets: Iterable[str]) -> None:
    """Remember the configured secret values so no log line can carry them.

    Every length counts: a three-character API key is as secret as a long one. The
    longest go first, so a secret containing a shorter one is removed whole.
    """
    global _secrets
    _secrets = secrets_pattern(secrets)


def secrets_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern matching any of `secrets` (longest first), or None for none at all."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


def redact_text(text: str) -> str:
    if _secrets is not None:
        text = _secrets.sub(_REDACTED, text)
    return redact_credentials(text)


def redact_credentials(text: str) -> str:
    """`text` without the credentials a client may have sent (Authorization values, page
    link tokens)."""
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTHORIZATION_VALUE.sub(lambda m: m.group(1) + _REDACTED, text)
    if "Bearer" in text:
        text = _BEARER_TOKEN.sub(lambda m: m.group(1) + _REDACTED, text)
    if "/page/" in text:
        text = _PAGE_TOKEN.sub(lambda m: m.group(1) + _REDACTED, text)
    return text


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, _PLAIN_TYPES):
        return value
    # Anything else is printed through its repr (both renderers fall back to it), which
    # may quote a secret: such a value is logged as its redacted repr instead.
    text = repr(value)
    redacted = redact_text(text)
    return value if redacted == text else redacted


def _redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key, value in list(event_dict.items()):
        event_dict[key] = redact_value(value)
    return event_dict


def _drop_color_message(_: Any, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours in `color_message`.
    event_dict.pop("color_message", None)
    # ...and ends some messages with a newline ("Exception in ASGI application\n"), which
    # would push the rest of the console line, and the traceback, one line down.
    event = event_dict.get("event")
    if isinstance(event, str) and event.endswith("\n"):
        event_dict["event"] = event.rstrip()
    return event_dict


def configure_logging(
    *, level: str = "INFO", json_output: bool = False, stream: TextIO | None = None
) -> None:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
    ]
    renderer: Processor
    if json_output:
        renderer = structlog.processors.JSONRenderer()
    else:
        # Given an `exception` string (and no exc_info) it prints that text under the
        # line as it is; its own exception formatter, which shows locals, never runs.
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text (no locals) here, so the next step redacts them too.
            structlog.processors.format_exc_info,
            _redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers[:] = []
        lib_logger.propagate = True
        # Whatever level an earlier uvicorn config left, the root level decides.
        lib_logger.setLevel(logging.NOTSET)
    # These narrate every step at INFO; their warnings still come through.
    for name in ("pgserver", "alembic.runtime.plugins", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # The access log duplicates our own request log line; keep it for debugging only.
    logging.getLogger("uvicorn.access").setLevel(
        logging.DEBUG if level == "DEBUG" else logging.WARNING
    )


def new_correlation_id() -> str:
    # 128 random bits as 32 hex digits, like uuid4().hex at a fraction of the cost.
    return secrets.token_hex(16)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
