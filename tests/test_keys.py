"""Key formats are stored in rows: each keeps the exact string it had when released."""

from __future__ import annotations

import uuid

from project_orchestrator import keys

ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def test_serial_keys() -> None:
    assert keys.github_serial("Acme/Widgets") == "github:acme/widgets"
    assert keys.github_serial(None) == "github:-"
    assert keys.telegram_serial(42) == "telegram:42"
    assert keys.telegram_serial(None) == "telegram:-"
    assert keys.telegram_user_serial(7) == "telegram:user:7"


def test_idempotency_keys() -> None:
    assert keys.scar_comment("po-1") == "scar:po-1"
    assert keys.scar_comment("po-1", 2) == "scar:po-1:retry-2"
    assert keys.scar_comment("po-1").startswith(keys.SCAR_COMMENT_PREFIX)
    assert keys.phase_command(ID) == f"phase:{ID}"
    assert keys.step_dedupe(str(ID)) == f"step:{ID}"
    assert keys.github_comment("Acme/W", 7, 99) == "github:acme/w#7:comment:99"
    assert keys.github_refusal("Acme/W", 7, "Mallory") == "github:acme/w#7:refusal:mallory"
    assert keys.telegram_reply(5) == "telegram:5:reply"
    assert keys.telegram_message("k") == "tg:k"
    assert keys.telegram_message("k", "plan") == "tg:k:plan"
    assert keys.run_progress(ID) == f"run:{ID}:progress"
    assert keys.run_completed(ID) == f"run:{ID}:completed"
    assert keys.gate_question(ID) == f"gate:{ID}:question"
    assert keys.gate_button(ID, "approve") == f"gate:{ID}:approve"
    assert keys.repository_created(ID) == f"repository-created:{ID}"


def test_audit_ids_and_artifact_versions() -> None:
    assert keys.github_user("ada") == "github:ada"
    assert keys.telegram_user(111) == "telegram:111"
    assert keys.vision_version("ab" * 32) == "vision:" + "ab" * 32
    assert keys.failed_phase_version(ID) == f"phase:{ID}"
    assert keys.pr_head_version("f" * 40) == "sha:" + "f" * 40
    assert keys.pr_version(5, "feature-x") == "pr:5:feature-x"
    assert keys.pr_version(None, None) == "pr:none:"
