"""structlog pipeline: JSON on stdout in production, console in development.

Everything (our loggers, uvicorn, alembic, libraries) goes through one stdlib handler
with a structlog ProcessorFormatter, so every record gets the same shape, the bound
correlation id, and secret redaction.
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor

_REDACTED = "[redacted]"
_secrets: tuple[str, ...] = ()


def set_known_secrets(secrets: Iterable[str]) -> None:
    """Remember the configured secret values so no log line can carry them."""
    global _secrets
    _secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))


def redact_text(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def _redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    if not _secrets:
        return event_dict
    for key, value in list(event_dict.items()):
        event_dict[key] = redact_value(value)
    return event_dict


def _drop_color_message(_: Any, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours in `color_message`.
    event_dict.pop("color_message", None)
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
        shared.append(structlog.processors.format_exc_info)
    else:
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
