"""Every key format in one place: serial keys (what is handled in order), idempotency keys
(what is done once), audit user ids and artifact versions.

Stored rows carry these strings, so a format never changes once released: a retried job
must find what its earlier attempt wrote.
"""

from __future__ import annotations

import uuid

# --- serial keys: events of one key are handled one at a time, in order ---------------------


def github_serial(full_name: str | None) -> str:
    return f"github:{full_name.lower()}" if full_name else "github:-"


def telegram_serial(chat_id: int | None) -> str:
    return f"telegram:{chat_id}" if chat_id is not None else "telegram:-"


def telegram_user_serial(user_id: int) -> str:
    """A button on an inline message has no chat: its presser's clicks stay in order."""
    return f"telegram:user:{user_id}"


# --- conversations: outbound messages of one are delivered one at a time, in order -------


def github_conversation(full_name: str, number: int) -> str:
    return f"github:{full_name.lower()}#{number}"


def telegram_conversation(chat_id: int) -> str:
    return f"telegram:{chat_id}"


def outbox_lease(conversation: str) -> str:
    """Who delivers a conversation's messages right now."""
    return f"outbox:{conversation}"


def agent_turns(project_id: uuid.UUID) -> str:
    """Who answers a project's messages right now: one turn at a time per project."""
    return f"turns:{project_id}"


def agent_answer(reply_key: str) -> str:
    """The agent's answer to a comment, posted apart from the commands' answers."""
    return f"{reply_key}:agent"


# --- who did it, in the audit log --------------------------------------------------------------


def github_user(login: str) -> str:
    return f"github:{login}"


def telegram_user(user_id: int | None) -> str:
    return f"telegram:{user_id}"


# --- idempotency keys ----------------------------------------------------------------------------

# Our `@scar` command comments are keyed with this prefix; SCAR's answers are matched to them.
SCAR_COMMENT_PREFIX = "scar:"


def scar_comment(command_key: str, retry: int = 0) -> str:
    return f"{SCAR_COMMENT_PREFIX}{command_key}" + (f":retry-{retry}" if retry else "")


def phase_command(attempt_id: uuid.UUID | str) -> str:
    """The one SCAR command a phase attempt runs."""
    return f"phase:{attempt_id}"


def step_dedupe(phase_id: str) -> str:
    """At most one waiting step job per phase attempt."""
    return f"step:{phase_id}"


def checks_poll(phase_id: str, number: int) -> str:
    """The next of a checks phase's polls: one chain of them, each queued once."""
    return f"checks-poll:{phase_id}:{number}"


def github_comment(full_name: str, number: int, comment_id: object) -> str:
    """The replies to one GitHub comment start with this."""
    return f"github:{full_name.lower()}#{number}:comment:{comment_id}"


def github_refusal(full_name: str, number: int, login: str) -> str:
    """One refusal per person and thread, however often they ask."""
    return f"github:{full_name.lower()}#{number}:refusal:{login.lower()}"


def telegram_reply(update_id: int) -> str:
    return f"telegram:{update_id}:reply"


def telegram_message(key: str, stage: str | None = None) -> str:
    return f"tg:{key}" if stage is None else f"tg:{key}:{stage}"


def telegram_refusal(user_id: int) -> str:
    """One refusal per person, however often they write."""
    return f"telegram:refusal:{user_id}"


def telegram_button_answer(update_id: int) -> str:
    return f"telegram:{update_id}:answer"


def telegram_buttons_dropped(chat_id: int, message_id: int) -> str:
    return f"telegram:{chat_id}:{message_id}:buttons-dropped"


def run_progress(run_id: uuid.UUID) -> str:
    return f"run:{run_id}:progress"


def run_completed(run_id: uuid.UUID) -> str:
    return f"run:{run_id}:completed"


def run_ended_on_github(run_id: uuid.UUID) -> str:
    return f"run:{run_id}:ended-on-github"


def merge_held_back(merge_attempt_id: uuid.UUID) -> str:
    return f"merge:{merge_attempt_id}:held-back"


def gate_question(gate_id: uuid.UUID) -> str:
    return f"gate:{gate_id}:question"


def gate_button(gate_id: object, verb: str) -> str:
    """A Telegram button's callback data: `gate:<id>:approve` or `gate:<id>:reject`."""
    return f"gate:{gate_id}:{verb}"


def budget_button(request_id: object, amount: int) -> str:
    """A Telegram button's callback data: `budget:<request id>:<tokens>` (under 64 bytes)."""
    return f"budget:{request_id}:{amount}"


def repository_created(project_id: uuid.UUID) -> str:
    return f"repository-created:{project_id}"


# --- artifact versions: what a gate approved -------------------------------------------------


def vision_version(content_hash: str) -> str:
    return f"vision:{content_hash}"


def failed_phase_version(attempt_id: uuid.UUID) -> str:
    return f"phase:{attempt_id}"


def pr_head_version(sha: str) -> str:
    return f"sha:{sha}"


def pr_version(number: int | None, branch: str | None) -> str:
    return f"pr:{number or 'none'}:{branch or ''}"
