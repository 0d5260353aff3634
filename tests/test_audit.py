"""The audit log: exact keys, one line per event under concurrency, no secrets."""

from __future__ import annotations

import json
import multiprocessing
import threading
from datetime import datetime
from pathlib import Path

from project_orchestrator.audit import AuditAction, AuditLog, AuditResult

CONTRACT_KEYS = {
    "timestamp",
    "action",
    "user_id",
    "project_id",
    "details",
    "result",
    "ip_address",
}


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_entry_has_exactly_the_contract_keys(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "logs" / "audit.log")
    audit.record(
        AuditAction.APPROVAL_GRANTED,
        user_id="telegram:42",
        project_id="5f0c",
        details={"gate": "plan"},
        ip_address="203.0.113.9",
    )
    (entry,) = _lines(tmp_path / "logs" / "audit.log")
    assert set(entry) == CONTRACT_KEYS
    assert entry["action"] == "approval_granted"
    assert entry["result"] == "success"
    assert entry["user_id"] == "telegram:42"
    assert entry["details"] == {"gate": "plan"}
    stamp = datetime.fromisoformat(str(entry["timestamp"]))
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path, known_secrets=["s3cr3t-webhook-value"])
    audit.record(
        AuditAction.WEBHOOK_SIGNATURE_FAILED,
        result=AuditResult.DENIED,
        details={
            "reason": "signature mismatch for s3cr3t-webhook-value",
            "headers": {"Authorization": "Bearer abc", "X-GitHub-Event": "ping"},
            "api_token": "tok",
        },
    )
    raw = path.read_text()
    assert "s3cr3t-webhook-value" not in raw
    assert "Bearer abc" not in raw
    entry = _lines(path)[0]
    details = entry["details"]
    assert isinstance(details, dict)
    assert details["headers"]["X-GitHub-Event"] == "ping"
    assert details["api_token"] == "[redacted]"


def test_unknown_result_is_refused(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    try:
        audit.record(AuditAction.PROJECT_CREATED, result="maybe")
    except ValueError:
        pass
    else:
        raise AssertionError("an unknown result must be refused")
    assert not (tmp_path / "audit.log").exists()


def _write_many(path: str, writer: int, count: int) -> None:
    audit = AuditLog(Path(path))
    padding = "x" * 6000  # longer than PIPE_BUF, so only the lock keeps lines whole
    for n in range(count):
        details = {"writer": writer, "n": n, "pad": padding}
        audit.record(AuditAction.PROJECT_CREATED, details=details)


def test_concurrent_processes_and_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=_write_many, args=(str(path), w, 100)) for w in range(3)]
    threads = [
        threading.Thread(target=_write_many, args=(str(path), 10 + w, 100)) for w in range(3)
    ]
    workers: list[multiprocessing.process.BaseProcess | threading.Thread] = [
        *processes,
        *threads,
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    entries = _lines(path)  # every line parses: none was torn or interleaved
    assert len(entries) == 600
    seen = {(e["details"]["writer"], e["details"]["n"]) for e in entries}  # type: ignore[index]
    assert len(seen) == 600
