"""SCAR's exact wording and pure formatting rules, for `tests.support.fake_scar`.

Copied from gpt153/scar at b28c35e: src/handlers/command-handler.ts (built-in answers),
src/orchestrator/orchestrator.ts (batch joining), src/utils/tool-formatter.ts (tool calls),
.template/ (SCAR's project template) and .claude/commands/exp-piv-loop (SCAR's global
templates, seeded at start-up). Express's own error pages come from its finalhandler.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

WORKSPACE = "/workspace"
ACK = "The agent is on the case..."  # `${BOT_DISPLAY_NAME ?? 'The agent'} is on the case...`
NO_CODEBASE = (
    "No codebase configured. Use /clone for a new repo or /repos to list your current repos "
    "you can switch to."
)
NO_REPOSITORIES = "No repositories found. Use /clone <repo-url> first."
CLAUDE_FAILURE = "⚠️ Error: Claude Code process exited with code 1. Try /reset if issue persists."
# What Claude Code itself says in stream mode before it exits, when its API is unreachable.
CLAUDE_STREAM_ERROR = "API Error: Connection error."
ENOENT_SCANDIR = "Failed: ENOENT: no such file or directory, scandir '/workspace'"  # /repo's
UNEXPECTED = "⚠️ An unexpected error occurred. Try /reset to start a fresh session."
DEFAULT_COMMANDS = frozenset(
    {"prime", "plan-feature-github", "execute-github", "validate", "merge-pr"}
)

HELP = """Available Commands:

Project Management:
  /new-topic <name> - Create new project (GitHub repo + workspace)
    • Creates private GitHub repository
    • Configures webhook for @scar mentions
    • Copies all command templates
    • For Telegram: Creates forum topic

Command Templates (global):
  /<name> [args] - Invoke a template directly
  /templates - List all templates
  /template-add <name> <path> - Add template from file
  /template-delete <name> - Remove a template

Codebase Commands (per-project):
  /command-set <name> <path> [text] - Register command
  /load-commands <folder> - Bulk load (recursive)
  /command-invoke <name> [args] - Execute
  /commands - List registered
  Note: Commands use relative paths (e.g., .claude/commands)

Codebase:
  /clone <repo-url> - Clone repository
  /repos - List repositories (numbered)
  /repo <#|name> [pull] - Switch repo (auto-loads commands)
  /repo-remove <#|name> - Remove repo and codebase record
  /getcwd - Show working directory
  /setcwd <path> - Set directory
  Note: Use /repo for quick switching, /setcwd for manual paths

Worktrees:
  /worktree create <branch> - Create isolated worktree
  /worktree list - Show worktrees for this repo
  /worktree remove [--force] - Remove current worktree

Port Management:
  /port-allocate <name> [env] [port] - Allocate port
  /port-list [--worktree|--codebase|--all] - List ports
  /port-release <port> - Release port
  /port-check <port> - Check port status
  /port-stats [env] - Show port utilization
  /port-cleanup [--dry-run] - Clean stale allocations

Secrets Management:
  /secret-set [--global] <key> <value> - Set a secret
  /secret-get <key> - Get secret value
  /secret-list - List all secret keys
  /secret-sync - Sync secrets to .env.local
  /secret-check <key...> - Check if secrets exist
  /secret-delete [--global] <key> - Delete a secret

Session:
  /status - Show state
  /reset - Clear session
  /reset-context - Reset AI context, keep worktree
  /help - Show help

Knowledge Base (Archon):
  /crawl <url> - Crawl and index documentation website
  /crawl-status <progressId> - Check crawl progress"""

# SCAR's project template (what /new-topic copies into a new repository), every command file
# under .claude/commands: validate and merge-pr are among them, in subfolders.
_TEMPLATE_CLAUDE = (
    "core_piv_loop/execute core_piv_loop/plan-feature core_piv_loop/prime-proj "
    "core_piv_loop/prime create-prd end-to-end-feature exp-piv-loop/changelog-entry "
    "exp-piv-loop/changelog-release exp-piv-loop/commit exp-piv-loop/create-pr "
    "exp-piv-loop/fix-issue exp-piv-loop/fix-rca exp-piv-loop/generate-claude-md "
    "exp-piv-loop/implement exp-piv-loop/merge-pr exp-piv-loop/plan exp-piv-loop/prd "
    "exp-piv-loop/prime-proj exp-piv-loop/rca exp-piv-loop/release-notes exp-piv-loop/release "
    "exp-piv-loop/review-pr exp-piv-loop/router exp-piv-loop/system-context "
    "exp-piv-loop/verify-scar-phase exp-piv-loop/worktree-cleanup exp-piv-loop/worktree "
    "github_bug_fix/implement-fix github_bug_fix/rca supervision/build-scar-instruction "
    "supervision/prime-supervisor supervision/scar-monitor supervision/supervise-issue "
    "supervision/supervise supervision/ui-fix-retest-monitor supervision/ui-regression-test "
    "supervision/ui-test-suite-runner supervision/ui-test-supervise "
    "validation/code-review-fix validation/code-review validation/execution-report "
    "validation/system-review validation/ultimate_validate_command validation/validate-2 "
    "validation/validate-simple validation/validate"
)
TEMPLATE_CLAUDE_COMMANDS = tuple(_TEMPLATE_CLAUDE.split())
# ... and under .agents/commands: the only home of plan-feature-github and execute-github.
TEMPLATE_AGENTS_COMMANDS = (
    "execute-github",
    "execute",
    "plan-feature-github",
    "plan-feature",
    "prime",
)

# SCAR's global templates (`/<name> [args]` runs one, with or without a codebase), with
# the descriptions `/templates` lists. `router` handles every plain-text message.
GLOBAL_TEMPLATES = {
    "changelog-entry": "Add an entry to CHANGELOG.md [Unreleased] section",
    "changelog-release": "Promote [Unreleased] changelog entries to a new version",
    "commit": "Quick commit with natural language file targeting",
    "create-pr": "Create a PR from current branch with unpushed commits",
    "fix-issue": "Fix a GitHub issue end-to-end - investigate, fix, test, and create PR",
    "fix-rca": "Implement a fix based on an RCA report - validates, implements, and verifies",
    "generate-claude-md": "Generate CLAUDE.md global rules file for current project",
    "implement": "Execute an implementation plan - autonomous, adaptive, end-to-end",
    "merge-pr": "Merge PR after ensuring it's up-to-date with main",
    "plan": "Deep implementation planning - analyzes codebase, mirrors patterns, produces "
    "step-by-step guide",
    "prd": "Lean PRD - problem-first, hypothesis-driven product spec",
    "prime-proj": "Prime agent with current project understanding (CLI: supports project name "
    "argument)",
    "rca": "Deep root cause analysis - finds the actual cause, not just symptoms",
    "release-notes": "Generate release notes from commits or changelog for GitHub Release",
    "release": "Create a GitHub Release with git tag and release notes",
    "review-pr": "Comprehensive PR code review - checks diff, patterns, runs validation, "
    "comments on PR",
    "router": "Route natural language requests to the appropriate workflow",
    "system-context": "System-wide workflow intelligence for optimal SCAR usage",
    "verify-scar-phase": "From .claude/commands/exp-piv-loop",
    "worktree-cleanup": "Clean up git worktrees after PR merge - removes directory, kills "
    "ports, optionally deletes branches",
    "worktree": "Create git worktrees for parallel branch development with validation",
}

# Sent by orchestrator.ts's deterministicCommands: a name here never runs as a template.
_DETERMINISTIC = (
    "help status getcwd setcwd clone repos repo repo-remove reset reset-context resume "
    "command-set load-commands commands template-add template-list templates template-delete "
    "worktree new-topic"
)
DETERMINISTIC = frozenset(_DETERMINISTIC.split())


def layout_files(layout: str, default_commands: Iterable[str]) -> dict[str, str]:
    """The command files a repository of `layout` holds (see `FakeScar.remote`)."""
    if layout == "claude":
        paths = [f".claude/commands/{name}.md" for name in sorted(default_commands)]
    elif layout == "template":
        paths = [f".claude/commands/{p}.md" for p in TEMPLATE_CLAUDE_COMMANDS]
        paths += [f".agents/commands/{name}.md" for name in TEMPLATE_AGENTS_COMMANDS]
    elif layout == "none":
        paths = []
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return {p: f"---\ndescription: {p.rsplit('/', 1)[-1][:-3]}\n---\n\n$ARGUMENTS\n" for p in paths}


def repo_answer(folder: str, *, pulled: bool, loaded: int) -> str:
    text = f"Switched to: {folder}"
    if pulled:
        text += "\n✓ Pulled latest changes"
    if loaded > 0:
        text += f"\n✓ Loaded {loaded} commands"
    return text + "\n\nReady to work!"


def cloned_answer(folder: str, path: str, loaded: int) -> str:
    text = f"Repository cloned successfully!\n\nCodebase: {folder}\nPath: {path}"
    if loaded > 0:
        text += f"\n✓ Loaded {loaded} commands"
    return (
        text + "\n\nSession reset - starting fresh on next message.\n\n"
        "You can now start asking questions about the code."
    )


def already_cloned_answer(name: str, path: str, command_folder: str | None) -> str:
    text = (
        f"Repository already cloned.\n\nLinked to existing codebase: {name}\nPath: {path}\n\n"
        "Session reset - starting fresh on next message."
    )
    if command_folder:
        text += (
            f"\n\n📁 Found: {command_folder}/\n"
            f"Use /load-commands {command_folder} to register commands."
        )
    return text


def directory_exists_answer(path: str) -> str:
    return (
        f"Directory already exists: {path}\n\nNo matching codebase found in database. Options:\n"
        f"- Remove the directory and re-clone\n- Use /setcwd {path} (limited functionality)"
    )


def clone_failed_answer(url: str, path: str) -> str:
    """What Node's execFile reports when `git clone` finds no such repository."""
    return (
        f"Failed to clone repository: Command failed: git clone {url} {path}\n"
        f"Cloning into '{path}'...\nremote: Repository not found.\n"
        f"fatal: repository '{url}/' not found\n"
    )


def status_answer(
    codebase: str | None, url: str | None, cwd: str | None, session: str | None
) -> str:
    text = "Platform: test\nAI Assistant: claude"
    if codebase:
        text += f"\n\nCodebase: {codebase}"
        if url:
            text += f"\nRepository: {url}"
    else:
        text += "\n\nNo codebase configured. Use /clone <repo-url> to get started."
    text += f"\n\nCurrent Working Directory: {cwd or 'Not set'}"
    if session:
        text += f"\nActive Session: {session[:8]}..."
    return text


def repos_answer(folders: list[str], active: str | None) -> str:
    if not folders:
        return "No repositories found in /workspace\n\nUse /clone <repo-url> to add one."
    lines = [f"{i}. {f}{' ← active' if f == active else ''}" for i, f in enumerate(folders, 1)]
    return "Repositories:\n\n" + "\n".join(lines) + "\n\nUse /repo <number|name> to switch"


def commands_answer(commands: Mapping[str, str]) -> str:
    if not commands:
        return "No commands registered.\n\nUse /command-set or /load-commands."
    # SCAR keeps them in a JSONB column: PostgreSQL orders keys by length, then bytes.
    names = sorted(commands, key=lambda k: (len(k.encode()), k.encode()))
    return "Registered Commands:\n\n" + "".join(f"{n} - {commands[n]}\n" for n in names)


def templates_answer() -> str:
    lines = "".join(f"/{n} - {GLOBAL_TEMPLATES[n]}\n" for n in sorted(GLOBAL_TEMPLATES))
    return "Command Templates:\n\n" + lines + "\nUse /<name> [args] to invoke any template."


_PRIMARY_INPUT = {
    "Bash": "command",
    "Read": "file_path",
    "Write": "file_path",
    "Edit": "file_path",
    "Glob": "pattern",
    "Grep": "pattern",
}
_BRIEF = {"Read": "Reading", "Write": "Writing", "Edit": "Editing", "Glob": "Pattern"}


def format_tool_call(tool: str, tool_input: str | Mapping[str, Any] | None) -> str:
    """tool-formatter.ts's formatToolCall. A plain string is the tool's main input (Bash's
    command, Read's file_path, Grep's pattern, ...; `description` for any other tool)."""
    text = f"🔧 {tool.upper()}"
    if tool_input is None:
        return text
    if isinstance(tool_input, str):
        tool_input = {_PRIMARY_INPUT.get(tool, "description"): tool_input}
    brief = _brief_info(tool, tool_input)
    return f"{text}\n{brief}" if brief else text


def _brief_info(tool: str, tool_input: Mapping[str, Any]) -> str:
    key = _PRIMARY_INPUT.get(tool)
    value = tool_input.get(key) if key else None
    if tool == "Bash" and value:
        return f"{str(value)[:100]}..." if len(str(value)) > 100 else str(value)
    if tool in _BRIEF and value:
        return f"{_BRIEF[tool]}: {value}"
    if tool == "Grep" and value:
        return f"Searching: {value}"
    if tool.startswith("mcp__"):
        return "MCP: " + " ".join(tool.split("__")[1:])
    dumped = json.dumps(tool_input, separators=(",", ":"), ensure_ascii=False)
    return dumped[:80] + "..." if len(dumped) > 80 else dumped


_TOOL_INDICATOR = re.compile(
    "^(?:\U0001f527|\U0001f4ad|\U0001f4dd|\u270f\ufe0f|\U0001f5d1\ufe0f|\U0001f4c2|\U0001f50d)"
)


def batch_message(blocks: list[str]) -> str:
    """Batch mode's one answer: every text block joined, tool-indicator sections dropped."""
    if not blocks:
        return ""
    joined = "\n\n---\n\n".join(blocks)
    kept = [s for s in joined.split("\n\n") if not _TOOL_INDICATOR.match(s.strip())]
    return "\n\n".join(kept).strip() or joined


def express_error_page(message: str) -> str:
    """The HTML page Express (finalhandler) answers errors and unknown routes with."""
    body = html.escape(message).replace("\n", "<br>").replace("  ", " &nbsp;")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Error</title>\n</head>\n<body>\n<pre>{body}</pre>\n</body>\n</html>\n"
    )


# merge-pr (.claude/commands/exp-piv-loop/merge-pr.md) has the AI report in its "## Output"
# shape; for a pull request it must not merge ("CI checks are failing: Do NOT merge /
# Report which checks are failing") it gives prose, no fixed text: this is one such report.
def merged(number: int) -> str:
    return (
        f"## PR Merged\n\n**PR**: #{number} - Feature: the requested change\n"
        "**Merge type**: squash\n\n### Status\n- ✅ PR was up-to-date\n"
        "- ✅ All checks passed\n- ✅ Merged to main\n- ✅ Branch deleted\n\n"
        "### Next\nReady for next task."
    )


def merge_refused(number: int) -> str:
    return (
        f"I did not merge PR #{number}: `gh pr view` reports mergeStateStatus BLOCKED, "
        "so GitHub will not merge it yet. Fix or investigate the blocking checks first."
    )
