"""Reading SCAR's free-text answers: branch and PR, failure answers, progress chatter."""

from __future__ import annotations

import pytest

from project_orchestrator.scar.parsing import (
    ScarArtifacts,
    failure_reason,
    is_progress,
    parse_artifacts,
)


@pytest.mark.parametrize(
    ("text", "branch"),
    [
        ("Created branch `feature/login` and pushed it.", "feature/login"),
        ("Work is on branch `feature/login`.", "feature/login"),
        ("Branch: feature-x\nTests: passing", "feature-x"),
        ("**Branch**: `feature-x`", "feature-x"),
        ("Committed everything on branch feature-x.", "feature-x"),
        ("I created branch 'add-login' from main", "add-login"),
        ('Created a new branch "fix/typo-42"', "fix/typo-42"),
        ("Pushed branch feature/issue-7 to origin", "feature/issue-7"),
        # What was made beats what was merely mentioned, wherever it stands.
        ("Checked out branch `main`, then created branch `feature/a`.", "feature/a"),
        ("Branch: feature/a\nBase branch: main", "feature/a"),
        ("Opened a PR into base branch `main` from branch `feature/b`.", "feature/b"),
        # The last of equally telling mentions wins: the final state of the work.
        ("Created branch `try-1`. That failed, so I created branch `try-2`.", "try-2"),
        ("No branch here, only branch protection rules and a branch to main.", None),
        ("Nothing to see.", None),
    ],
)
def test_branch(text: str, branch: str | None) -> None:
    assert parse_artifacts(text).branch == branch


@pytest.mark.parametrize(
    ("text", "url", "number"),
    [
        (
            "Opened https://github.com/acme/widgets/pull/42 for review.",
            "https://github.com/acme/widgets/pull/42",
            42,
        ),
        (
            "PR: https://ghe.example.com/team/app.web/pull/7.",
            "https://ghe.example.com/team/app.web/pull/7",
            7,
        ),
        (
            "See (https://github.com/acme/widgets/pull/3/files) and the final one "
            "https://github.com/acme/widgets/pull/5",
            "https://github.com/acme/widgets/pull/5",
            5,
        ),
        ("Merged PR #12", None, 12),
        ("## PR Merged\n\n**PR**: #14 - Feature: login\n**Merge type**: squash", None, 14),
        ("An issue https://github.com/acme/widgets/issues/9 is not a PR.", None, None),
    ],
)
def test_pull_request(text: str, url: str | None, number: int | None) -> None:
    artifacts = parse_artifacts(text)
    assert (artifacts.pr_url, artifacts.pr_number) == (url, number)


def test_execute_output_gives_everything() -> None:
    text = (
        "Implemented the plan.\n\nCreated branch `feature/add-login` and opened pull request "
        "https://github.com/acme/widgets/pull/1\n\nFiles changed: 4."
    )
    assert parse_artifacts(text) == ScarArtifacts(
        branch="feature/add-login",
        pr_url="https://github.com/acme/widgets/pull/1",
        pr_number=1,
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("No repositories found. Use /clone <repo-url> first.", "no copy of the project"),
        ("Repository not found: widgets\n\nUse /repos to see ...", "could not find"),
        ("No codebase configured. Use /clone for a new repo or /repos ...", "no project selected"),
        ("Unknown command: /frob\n\nType /help for available commands", "the command /frob"),
        ("Command 'deploy' not found. Use /commands to see available.", "no 'deploy' command"),
        ("Failed to read command file: ENOENT", "could not read this command"),
        ("Failed to clone repository: fatal: not found", "could not download"),
        ("Usage: /command-invoke <name> [args...]", "did not understand"),
        ("⚠️ AI rate limit reached. Please wait a moment and try again.", "usage limit"),
        ("⚠️ AI service authentication error. Please check configuration.", "sign in"),
        ("⚠️ Error: disk full. Try /reset if issue persists.", "ran into an error (disk full"),
        ("⚠️ An unexpected error occurred. Try /reset to start a fresh session.", "unexpected"),
        (
            "❌ Task timed out after 20 minutes. The session has been terminated to prevent "
            "hanging.",
            "its own time limit (20 minutes)",
        ),
        (
            "❌ Task exceeded maximum tool call limit (200). The session has been terminated "
            "to prevent infinite loops.",
            "too many steps",
        ),
    ],
)
def test_failure_answers_are_recognised(message: str, expected: str) -> None:
    reason = failure_reason(message)
    assert reason is not None
    assert expected in reason
    # Readable by anyone: no SCAR jargon leaks through.
    assert "/clone" not in reason
    assert "Try /reset" not in reason


@pytest.mark.parametrize(
    "message",
    [
        "All checks passed ✅",
        "## Plan\n\nIf the user types an Unknown command: /x, show help.",
        "Usage: run `make test` to check.",
        "Merged PR #3",
        "⚠️ 2 tests are flaky but pass on retry.",
        "",
    ],
)
def test_results_are_not_failures(message: str) -> None:
    assert failure_reason(message) is None


@pytest.mark.parametrize(
    "message",
    [
        "The agent is on the case...",
        "SCAR is on the case...",
        "⏱️ Still working... (1m 0s, 12 tool calls)",
        "⏱ Still working... (12m 30s, 140 tool calls)",
        "  ⏱️ Still working...  ",
    ],
)
def test_progress(message: str) -> None:
    assert is_progress(message)


@pytest.mark.parametrize(
    "message",
    [
        "All checks passed ✅",
        "The agent is on the case...\n\nHere is the plan: ...",
        "Still working on it, the plan is:\n1. a",
        "Switched to: widgets",
    ],
)
def test_not_progress(message: str) -> None:
    assert not is_progress(message)
