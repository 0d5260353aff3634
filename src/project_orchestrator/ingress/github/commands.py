"""Reading a comment: is the bot mentioned, and which commands does it carry?

Prow-style: after the mention, each line that starts with a slash command is a command;
every other line is a message to the agent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KNOWN_COMMANDS = frozenset(
    {
        "help",
        "status",
        "build",
        "approve",
        "reject",
        "hold",
        "resume",
        "cancel",
        "link",
        "budget",
        "page",
    }
)

_COMMAND_LINE = re.compile(r"^/([a-z][a-z0-9_-]*)(?:\s+(.*))?$", re.IGNORECASE)
# Quoted replies and fenced code repeat other people's words: they are not instructions.
_QUOTE = re.compile(r"^\s*>")
_FENCE = re.compile(r"^\s*(```|~~~)")


def mention_pattern(handle: str) -> re.Pattern[str]:
    """`@orchestrator` as a whole word: not `@orchestratorx`, not `me@orchestrator.dev`."""
    name = handle.lstrip("@")
    return re.compile(rf"(?<![\w@.-])@{re.escape(name)}(?![\w-])", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    name: str
    argument: str


@dataclass(frozen=True)
class ParsedComment:
    mentioned: bool
    commands: list[Command] = field(default_factory=list)
    unknown_commands: list[str] = field(default_factory=list)
    message: str = ""


def _visible_lines(body: str) -> list[str]:
    lines: list[str] = []
    in_fence = False
    for line in body.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence or _QUOTE.match(line):
            continue
        lines.append(line)
    return lines


def parse_comment(body: str, handle: str) -> ParsedComment:
    pattern = mention_pattern(handle)
    lines = _visible_lines(body or "")
    if not any(pattern.search(line) for line in lines):
        return ParsedComment(mentioned=False)
    commands: list[Command] = []
    unknown: list[str] = []
    message_lines: list[str] = []
    for raw in lines:
        line = pattern.sub("", raw).strip()
        match = _COMMAND_LINE.match(line)
        if match is None:
            if line:
                message_lines.append(line)
            continue
        name = match.group(1).lower()
        if name in KNOWN_COMMANDS:
            commands.append(Command(name=name, argument=(match.group(2) or "").strip()))
        else:
            unknown.append(name)
    return ParsedComment(
        mentioned=True,
        commands=commands,
        unknown_commands=unknown,
        message="\n".join(message_lines),
    )
