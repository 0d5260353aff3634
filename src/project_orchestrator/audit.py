"""The audit log: one JSON object per line, exactly the CONTRACT.md keys.

Lines are written with a single `write()` on an O_APPEND descriptor under an exclusive
`flock`, so concurrent writers (threads or processes) never interleave partial lines.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from project_orchestrator import effects
from project_orchestrator.logging import redact_credentials, secrets_pattern

_REDACTED = "[redacted]"
# Keys whose values are secrets by their very nature, whoever passes them in.
_SECRET_KEY_PARTS = ("secret", "token", "password", "signature", "authorization", "api_key")


class AuditAction(StrEnum):
    PROJECT_CREATED = "project_created"
    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_HELD = "workflow_held"
    WORKFLOW_RESUMED = "workflow_resumed"
    WORKFLOW_CANCELLED = "workflow_cancelled"
    WORKFLOW_COMPLETED = "workflow_completed"
    VISION_GENERATED = "vision_generated"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_GRANTED = "approval_granted"
    APPROVAL_REJECTED = "approval_rejected"
    SCAR_COMMAND_EXECUTED = "scar_command_executed"
    WEBHOOK_SIGNATURE_FAILED = "webhook_signature_failed"
    WEBHOOK_IP_DENIED = "webhook_ip_denied"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    UNAUTHORIZED_ACCESS = "unauthorized_access"
    EVENT_REPLAYED = "event_replayed"
    IDENTITY_LINKED = "identity_linked"
    REPOSITORY_CREATED = "repository_created"
    REPOSITORY_LINKED = "repository_linked"
    BUDGET_RAISED = "budget_raised"


class AuditResult(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class AuditLog:
    def __init__(self, path: Path, *, known_secrets: Iterable[str] = ()) -> None:
        self.path = path
        # Every length, in one pass, longest first (a secret containing a shorter one
        # goes whole).
        self._secrets = secrets_pattern(known_secrets)
        self._lock = threading.Lock()

    def record(
        self,
        action: AuditAction | str,
        *,
        result: AuditResult | str = AuditResult.SUCCESS,
        user_id: str | None = None,
        project_id: object | None = None,
        details: Mapping[str, Any] | None = None,
        ip_address: str | None = None,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "timestamp": datetime.now(UTC).isoformat(),
            "action": str(action),
            "user_id": None if user_id is None else self._redact(str(user_id)),
            "project_id": None if project_id is None else self._redact(str(project_id)),
            "details": self._scrub(dict(details or {})),
            "result": str(AuditResult(result)),
            "ip_address": None if ip_address is None else self._redact(str(ip_address)),
        }
        line = orjson.dumps(entry) + b"\n"
        if entry["result"] == AuditResult.DENIED:
            # A refusal stores nothing and is what happened whatever the transaction does.
            self._append(line)
        else:
            effects.after_commit(lambda: self._append(line))
        return entry

    def _append(self, line: bytes) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(line)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            finally:
                os.close(fd)  # closing releases the flock

    def _scrub(self, value: Any, key: str = "") -> Any:
        if any(part in key.lower() for part in _SECRET_KEY_PARTS):
            return _REDACTED
        if isinstance(value, Mapping):
            return {self._redact(str(k)): self._scrub(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set):
            return [self._scrub(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            # A known secret is removed wherever it hides. Values rather than the encoded
            # line: the contract's own keys stay intact however short a secret is, and a
            # secret that JSON would escape still matches.
            return self._redact(value)
        # Anything else (a datetime, a UUID, a dataclass) as JSON renders it, then scrubbed.
        return self._scrub(orjson.loads(orjson.dumps(value, default=str)), key)

    def _redact(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(_REDACTED, text)
        # A token a client sent is no configured secret, but no less a secret.
        return redact_credentials(text)
