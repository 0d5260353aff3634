"""Recording what a module logs, without depending on the process's logging setup."""

from __future__ import annotations

from typing import Any


class RecordingLogger:
    """Stands in for a module's structlog logger: what was logged, at which level."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            self.records.append((level, event, fields))

        return log

    def events(self, level: str | None = None) -> list[str]:
        return [event for lvl, event, _ in self.records if level in (None, lvl)]
