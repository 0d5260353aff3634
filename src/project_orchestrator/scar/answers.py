"""What SCAR's built-in commands answer, read the way SCAR words them (gpt153/scar).

Built-ins (`/repo`, `/clone`, `/commands`, `/load-commands`) answer in free text like every
other message; these helpers turn those texts into facts the transport acts on.
"""

from __future__ import annotations

import re
from typing import Literal

SWITCHED = "Switched to:"
_REPO_MISSING = ("No repositories found", "Repository not found")
_PULL_FAILED = "Failed to pull:"
_CLONED = ("Repository cloned successfully!", "Repository already cloned.")
# "Codebase: sitehub.io" after a clone; "Linked to existing codebase: x" when it existed.
_CODEBASE_LINE = re.compile(r"^(?:Codebase|Linked to existing codebase):\s*(?P<name>\S+)\s*$", re.M)
_PATH_LINE = re.compile(r"^Path:\s*(?P<path>\S+)\s*$", re.M)
_NO_CODEBASE = ("No codebase configured", "Codebase not found")
_COMMAND_MISSING = re.compile(r"^\s*Command '(?P<name>[^']*)' not found")
_ENOENT_SCANDIR = re.compile(r"ENOENT\b.*\bscandir\b", re.S)
_LOADED = re.compile(r"^Loaded \d+ commands recursively:\s*(?P<names>.*)$", re.M)
_REGISTERED = "Registered Commands:"
# Every failure of SCAR's AI side reaches us as one of these texts. Claude Code exiting
# cannot be told apart from an outage, so each is worth a bounded number of retries.
_AI_TRANSIENT = (
    "⚠️ Error: Claude Code process exited",
    "⚠️ Error: Claude Code process terminated",
    "⚠️ AI rate limit",
    "⚠️ Request timed out",
)
# Where SCAR's own project template keeps the GitHub workflow commands.
TEMPLATE_COMMANDS_FOLDER = ".agents/commands"
# The commands the workflow needs a repository to offer besides the one it is running.
WORKFLOW_COMMANDS = ("plan-feature-github", "execute-github")

RepoState = Literal["open", "missing", "pull_failed", "no_workspace", "failed"]


def first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def repo_state(answer: str, folder: str) -> RepoState:
    """What SCAR's answer to `/repo <folder>` means."""
    line = first_line(answer)
    if line.startswith(SWITCHED):
        # SCAR also takes a prefix: "/repo app" may open "app-server". Not ours.
        return "open" if line[len(SWITCHED) :].strip() == folder else "missing"
    if line.startswith(_REPO_MISSING):
        return "missing"
    if line.startswith(_PULL_FAILED):
        return "pull_failed"
    if _ENOENT_SCANDIR.search(answer):
        return "no_workspace"
    return "failed"


def cloned_codebase(answer: str) -> str | None:
    """The folder SCAR cloned into (or linked), from its answer to `/clone`; else None."""
    if not answer.lstrip().startswith(_CLONED):
        return None
    found = _CODEBASE_LINE.search(answer)
    if found:
        return found.group("name")
    path = _PATH_LINE.search(answer)
    return path.group("path").rstrip("/").rsplit("/", 1)[-1] if path else None


def workspace_missing(answer: str) -> bool:
    return _ENOENT_SCANDIR.search(answer) is not None


def no_codebase(answer: str) -> bool:
    return answer.lstrip().startswith(_NO_CODEBASE)


def missing_command(answer: str) -> str | None:
    found = _COMMAND_MISSING.match(answer)
    return found.group("name") if found else None


def registered_commands(answer: str) -> set[str] | None:
    """Names listed by `/commands` ("name - path" lines); None when it listed nothing."""
    if not answer.lstrip().startswith(_REGISTERED):
        return None
    names = set()
    for line in answer.splitlines()[1:]:
        name, dash, _ = line.partition(" - ")
        if dash and name.strip():
            names.add(name.strip())
    return names


def loaded_commands(answer: str) -> set[str]:
    """Names `/load-commands` reports loading ("Loaded N commands recursively: a, b")."""
    found = _LOADED.search(answer)
    if not found:
        return set()
    return {name.strip() for name in found.group("names").split(",") if name.strip()}


def transient_ai_failure(message: str) -> bool:
    return message.lstrip().startswith(_AI_TRANSIENT)


def is_tool_call(message: str) -> bool:
    """A stream-mode report of one tool call ("🔧 READ\\nReading: ..."), not a result."""
    return message.lstrip().startswith("🔧")


WORKSPACE_MISSING_REASON = (
    "SCAR's workspace folder does not exist, so SCAR cannot open or clone any repository. "
    "SCAR's operator needs to create it (the folder SCAR's WORKSPACE_PATH names, "
    "/workspace by default) and restart SCAR; then approve to try again."
)
