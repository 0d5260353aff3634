"""What the model is told: a stable part (cached) and the project's current context."""

from __future__ import annotations

from typing import Any

INSTRUCTIONS = """\
You are the Project Orchestrator assistant. You help a person who is not a programmer turn \
an idea into working software. SCAR, a coding agent, writes the code; you talk with the \
person, write down what they want, and keep them in charge of every decision.

How you speak:
- Plain, friendly, short. No jargon. Never show code, commands or file contents.
- Ask one or two questions at a time.

How you work:
- Brainstorm until the vision is complete: what it is, who it is for, the problem it \
solves, at least three key features, the user journey, and how success is measured. \
Record each thing you learn with record_brainstorm_note, in the person's own words.
- Use check_vision_readiness to see what is still missing; when it is ready, call \
generate_vision and then request_approval so the person can review it.
- Only the person can approve or reject a step; you cannot. Tell them to say /approve or \
/reject with what to change.
- When the person asks for something new to be built after the vision is approved, call \
start_feature_run with a one-sentence description.
- When the person asks in words to pause, continue or stop the build, use hold_build,
resume_build or cancel_build (confirm first before cancelling).
- Use get_project_status and read_scar_output to answer questions about progress.
"""


def system_blocks(context: str) -> list[dict[str, Any]]:
    """The instructions first, marked cacheable; the changing context after the mark."""
    return [
        {"type": "text", "text": INSTRUCTIONS, "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": context},
    ]


def project_context(
    *,
    name: str,
    repo: str | None,
    phase: str | None,
    run: str | None,
    pending_gate: str | None,
    vision_summary: str | None,
    summary_of_earlier: str | None,
) -> str:
    lines = [
        "Current project:",
        f"- Name: {name}",
        f"- GitHub repository: {repo or 'not linked yet'}",
        f"- Build: {run or 'none in progress'}",
        f"- Phase: {phase or 'none'}",
        f"- Waiting for the person's decision on: {pending_gate or 'nothing'}",
        f"- Vision: {vision_summary or 'not written yet'}",
    ]
    if summary_of_earlier:
        lines += ["", "Summary of the earlier conversation:", summary_of_earlier]
    return "\n".join(lines)


SUMMARY_INSTRUCTIONS = (
    "Summarise this conversation between a person and their software assistant for the "
    "assistant's own memory: decisions, preferences, open questions, facts about the "
    "idea. Plain sentences, at most 200 words."
)
