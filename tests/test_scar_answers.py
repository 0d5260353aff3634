"""Reading SCAR's built-in answers, in SCAR's own wording (gpt153/scar, command-handler.ts)."""

from __future__ import annotations

import pytest

from project_orchestrator.scar import answers
from project_orchestrator.scar.parsing import failure_reason

CLONED = (
    "Repository cloned successfully!\n\nCodebase: sitehub.io\nPath: /workspace/sitehub.io\n"
    "✓ Loaded 5 commands\n\nSession reset - starting fresh on next message.\n\n"
    "You can now start asking questions about the code."
)
ALREADY = (
    "Repository already cloned.\n\nLinked to existing codebase: widgets\n"
    "Path: /workspace/widgets\n\nSession reset - starting fresh on next message.\n\n"
    "📁 Found: .agents/commands/\nUse /load-commands .agents/commands to register commands."
)
ENOENT = "Failed: ENOENT: no such file or directory, scandir '/workspace'"


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        ("Switched to: widgets\n✓ Loaded 5 commands\n\nReady to work!", "open"),
        ("Switched to: widgets\n✓ Pulled latest changes\n\nReady to work!", "open"),
        ("Switched to: widgets-server\n\nReady to work!", "missing"),  # a prefix match
        ("No repositories found. Use /clone <repo-url> first.", "missing"),
        ("Repository not found: widgets\n\nUse /repos to see available repositories.", "missing"),
        ("Failed to pull: Command failed: git pull\nerror: local changes", "pull_failed"),
        (ENOENT, "no_workspace"),
        ("⚠️ An unexpected error occurred. Try /reset to start a fresh session.", "failed"),
        ("", "failed"),
    ],
)
def test_what_an_answer_to_repo_means(answer: str, state: str) -> None:
    assert answers.repo_state(answer, "widgets") == state


def test_the_folder_comes_from_the_clone_answer_not_the_name() -> None:
    assert answers.cloned_codebase(CLONED) == "sitehub.io"
    assert answers.cloned_codebase(ALREADY) == "widgets"
    assert answers.cloned_codebase("Failed to clone repository: Command failed") is None
    path_only = "Repository cloned successfully!\n\nPath: /workspace/app.io\n"
    assert answers.cloned_codebase(path_only) == "app.io"


def test_registered_and_loaded_commands() -> None:
    listing = (
        "Registered Commands:\n\nprime - .claude/commands/prime.md\nrca - .claude/commands/rca.md\n"
    )
    assert answers.registered_commands(listing) == {"prime", "rca"}
    assert answers.registered_commands("No codebase configured.") is None
    assert answers.registered_commands("No commands registered.\n\nUse /load-commands.") is None
    loaded = "Loaded 3 commands recursively: plan-feature-github, execute-github, prime"
    assert answers.loaded_commands(loaded) == {"plan-feature-github", "execute-github", "prime"}
    assert answers.loaded_commands("No .md files found in /w/x (searched recursively)") == set()


def test_answers_that_call_for_a_recovery() -> None:
    assert answers.no_codebase("No codebase configured. Use /clone for a new repo or ...")
    assert not answers.no_codebase("The codebase has no tests configured.")
    assert answers.missing_command("Command 'execute-github' not found. Use /commands") == (
        "execute-github"
    )
    assert answers.missing_command("The plan names Command 'x' not found") is None
    failure = "⚠️ Error: Claude Code process exited with code 1. Try /reset if issue persists."
    assert answers.transient_ai_failure(failure)
    assert answers.transient_ai_failure("⚠️ AI rate limit reached. Please wait a moment.")
    assert not answers.transient_ai_failure("⚠️ AI service authentication error.")
    assert answers.is_tool_call("🔧 READ\nReading: src/app.py")
    assert not answers.is_tool_call("I read src/app.py 🔧")


def test_failures_are_told_in_plain_words_naming_the_fix() -> None:
    assert answers.workspace_missing(ENOENT)
    assert "WORKSPACE_PATH" in answers.WORKSPACE_MISSING_REASON
    assert "WORKSPACE_PATH" in (failure_reason(ENOENT) or "")
    claude = failure_reason(
        "⚠️ Error: Claude Code process exited with code 1. Try /reset if issue persists."
    )
    assert claude is not None
    assert "Claude Code" in claude
    assert "/reset" not in claude
