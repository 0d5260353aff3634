"""Reading SCAR's messages: artifacts (branch, PR), known failure answers, progress chatter.

SCAR answers in free text. Built-in failures and error reports arrive as ordinary messages,
so they are recognised by how they begin (SCAR's exact wording), never by a word found
anywhere: a plan that mentions "Unknown command" is still a plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ScarArtifacts:
    branch: str | None
    pr_url: str | None
    pr_number: int | None


# Any host, so GitHub Enterprise links count too.
_PR_LINK = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::\d+)?/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/pull/(?P<number>\d+)"
)
# "PR #12", and merge-pr's own report: "**PR**: #12 - title".
_PR_MENTION = re.compile(r"\b(?:PR|pull request)(?:\*\*)?\s*:?\s*#(?P<number>\d+)", re.IGNORECASE)

_NAME = r"[`'\"]?(?P<name>[A-Za-z0-9][A-Za-z0-9._/+-]*)"
# Most telling first: a branch that was made or pushed beats a labelled one, which beats
# a passing mention. Within a tier the last mention wins (the final state of the work).
_BRANCH_TIERS = (
    re.compile(
        r"\b(?:created|creating|new|pushed|pushing|feature)\s+branch\b\s*[:=]?\s*" + _NAME,
        re.IGNORECASE,
    ),
    re.compile(
        r"(?<![A-Za-z])(?P<prefix>\w+\s+)?branch(?:\*\*)?\s*:\s*(?:\*\*)?\s*" + _NAME, re.IGNORECASE
    ),
    re.compile(
        r"(?P<prefix>\w+\s+)?\bbranch\s+[`'\"](?P<name>[A-Za-z0-9][A-Za-z0-9._/+-]*)", re.IGNORECASE
    ),
    re.compile(r"\bon\s+branch\s+(?P<name>[A-Za-z0-9][A-Za-z0-9._/+-]*)", re.IGNORECASE),
)
# "Base branch: main" names where the work goes, not the work's own branch.
_OTHER_BRANCHES = {"base", "target", "default", "upstream", "parent"}
_NOT_NAMES = {
    "a", "an", "and", "as", "for", "from", "has", "into", "is", "name", "names", "of",
    "protection", "protections", "that", "the", "this", "to", "was", "with",
}  # fmt: skip


def _branch(text: str) -> str | None:
    for pattern in _BRANCH_TIERS:
        found: str | None = None
        for match in pattern.finditer(text):
            prefix = (match.groupdict().get("prefix") or "").strip().lower()
            name = match.group("name").rstrip("./-")
            if prefix in _OTHER_BRANCHES or not name or name.lower() in _NOT_NAMES:
                continue
            found = name
        if found is not None:
            return found
    return None


def parse_artifacts(text: str) -> ScarArtifacts:
    """Branch and pull request named in SCAR's output; the last PR link wins."""
    links = list(_PR_LINK.finditer(text))
    if links:
        last = links[-1]
        return ScarArtifacts(_branch(text), last.group(0), int(last.group("number")))
    mentions = list(_PR_MENTION.finditer(text))
    number = int(mentions[-1].group("number")) if mentions else None
    return ScarArtifacts(_branch(text), None, number)


_PROGRESS = (
    # The name is SCAR's BOT_DISPLAY_NAME ("The agent" unless its operator changed it).
    re.compile(r"^\s*[^\n]{1,80}? is on the case(?:\.\.\.|…)?\s*$"),
    re.compile(r"^\s*(?:⏱\ufe0f?\s*)?Still working(?:\.\.\.|…)?\s*(?:\([^\n)]*\))?\s*$"),
)


def is_progress(message: str) -> bool:
    """SCAR's acknowledgement or heartbeat, not part of a command's result."""
    return any(pattern.match(message) for pattern in _PROGRESS)


# SCAR's advice to its own chat users ("Try /reset ...") means nothing to ours.
_SCAR_ADVICE = re.compile(r"\.?\s*(?:Try /reset|Please wait|Please check)\b.*$")


def _detail(message: str, prefix: str) -> str:
    rest = message.strip()[len(prefix) :].strip()
    first_line = rest.splitlines()[0] if rest else ""
    return _SCAR_ADVICE.sub("", first_line).rstrip(". ").strip()


def _with_detail(sentence: str, prefix: str) -> Callable[[str], str]:
    def reason(message: str) -> str:
        detail = _detail(message, prefix)
        return f"{sentence} ({detail})." if detail else f"{sentence}."

    return reason


def _fixed(sentence: str) -> Callable[[str], str]:
    return lambda _message: sentence


def _unknown_command(message: str) -> str:
    name = _detail(message, "Unknown command:") or "that command"
    return f"SCAR does not know the command {name}."


def _missing_command(message: str) -> str:
    match = re.match(r"\s*Command '([^']*)' not found", message)
    name = match.group(1) if match else "this"
    return (
        f"The project's repository has no '{name}' command for SCAR, so it could not run it "
        "(the repository may be missing SCAR's command files)."
    )


_AI_LIMIT = "SCAR's AI service has hit its usage limit; the command can be tried again later."
_AI_LOGIN = "SCAR cannot sign in to its AI service; SCAR's operator needs to fix its setup."

# (how SCAR's answer begins, plain-language reason)
_FAILURES: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("No repositories found", _fixed("SCAR has no copy of the project's repository yet.")),
    ("Repository not found:", _fixed("SCAR could not find the project's repository.")),
    ("No codebase configured", _fixed("SCAR had no project selected, so it ran nothing.")),
    ("Codebase not found", _fixed("SCAR has lost its record of the project's code.")),
    ("Unknown command:", _unknown_command),
    ("Command '", _missing_command),
    (
        "Failed to read command file:",
        _fixed("SCAR could not read this command's instructions from the repository."),
    ),
    (
        "Failed to clone repository:",
        _fixed(
            "SCAR could not download the project's repository; check that it exists "
            "and that SCAR may read it."
        ),
    ),
    (
        "Directory already exists:",
        _fixed(
            "SCAR already has a folder with the project's name that is not this "
            "project; SCAR's operator needs to remove or rename it."
        ),
    ),
    ("Usage: /", _fixed("SCAR did not understand the command it was sent.")),
    (
        "Failed: ENOENT",
        _fixed(
            "SCAR's workspace folder is missing; SCAR's operator needs to create it "
            "(WORKSPACE_PATH, /workspace by default) and restart SCAR."
        ),
    ),
    # Batch mode's own limits (orchestrator.ts): SCAR ends the session and says so, then
    # its error answer ("⚠️ Error: Maximum task duration exceeded") follows.
    (
        "❌ Task timed out",
        _fixed(
            "SCAR stopped the command at its own time limit (20 minutes) and ended its "
            "session; the step may need to be smaller."
        ),
    ),
    (
        "❌ Task exceeded maximum tool call limit",
        _fixed("SCAR stopped the command after too many steps (its limit of tool calls)."),
    ),
    ("⚠️ AI rate limit", _fixed(_AI_LIMIT)),
    ("⚠️ AI usage limit", _fixed(_AI_LIMIT)),
    ("⚠️ AI service authentication", _fixed(_AI_LOGIN)),
    ("⚠️ Claude authentication", _fixed(_AI_LOGIN)),
    ("⚠️ Request timed out", _fixed("SCAR's AI service was too slow to answer.")),
    ("⚠️ Database connection issue", _fixed("SCAR could not reach its own database.")),
    ("⚠️ Session error", _fixed("SCAR's working session broke down.")),
    ("⚠️ AI error:", _with_detail("SCAR's AI service reported an error", "⚠️ AI error:")),
    (
        "⚠️ Error: Claude Code process",
        _fixed(
            "SCAR's AI (Claude Code) stopped with an error, again after several tries; "
            "SCAR's operator can see why in SCAR's logs."
        ),
    ),
    ("⚠️ Error:", _with_detail("SCAR ran into an error", "⚠️ Error:")),
    ("⚠️ An unexpected error", _fixed("SCAR ran into an unexpected error.")),
)


def failure_reason(message: str) -> str | None:
    """A plain-language reason when `message` is one of SCAR's failure answers, else None."""
    start = message.lstrip()
    for prefix, reason in _FAILURES:
        if start.startswith(prefix):
            return reason(start)
    return None
