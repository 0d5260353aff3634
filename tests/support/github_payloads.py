"""Real-shaped GitHub webhook deliveries, signed as GitHub signs them."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import orjson


def signed(
    secret: str, event: str, payload: Any, *, delivery: str | None = None
) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(payload)
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc1234",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "123456",
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    return body, headers


def repository(full_name: str = "acme/widgets") -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "id": 1296269,
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": {"login": owner, "id": 1, "type": "Organization"},
        "html_url": f"https://github.com/{full_name}",
    }


def user(login: str, *, bot: bool = False) -> dict[str, Any]:
    return {"login": login, "id": abs(hash(login)) % 10**8, "type": "Bot" if bot else "User"}


def issue_comment(
    body: str,
    *,
    login: str = "alice",
    association: str = "OWNER",
    repo: str = "acme/widgets",
    issue_number: int = 7,
    action: str = "created",
    comment_id: int = 1001,
    pull_request: bool = False,
    bot: bool = False,
    padding: int = 0,
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "number": issue_number,
        "title": "Build me a thing",
        "body": "x" * padding,
        "user": user("alice"),
        "state": "open",
        "author_association": "OWNER",
    }
    if pull_request:
        issue["pull_request"] = {"url": f"https://api.github.com/repos/{repo}/pulls/{issue_number}"}
    return {
        "action": action,
        "issue": issue,
        "comment": {
            "id": comment_id,
            "body": body,
            "user": user(login, bot=bot),
            "author_association": association,
            "created_at": "2026-11-23T10:00:00Z",
        },
        "repository": repository(repo),
        "sender": user(login, bot=bot),
    }


def pull_request_event(
    action: str,
    number: int,
    *,
    head_sha: str,
    repo: str = "acme/widgets",
    merged: bool = False,
    login: str = "ada",
    branch: str = "feature",
) -> dict[str, Any]:
    """`pull_request` with `action` synchronize, closed, opened or reopened."""
    closed = action == "closed"
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "state": "closed" if closed else "open",
            "merged": merged,
            "merged_by": user(login) if merged else None,
            "head": {"sha": head_sha, "ref": branch},
            "base": {"ref": "main"},
            "html_url": f"https://github.com/{repo}/pull/{number}",
        },
        "repository": repository(repo),
        "sender": user(login),
    }


def check_suite_completed(
    head_sha: str, *, conclusion: str = "success", repo: str = "acme/widgets", pr: int = 8
) -> dict[str, Any]:
    return {
        "action": "completed",
        "check_suite": {
            "id": 5001,
            "head_branch": "feature",
            "head_sha": head_sha,
            "status": "completed",
            "conclusion": conclusion,
            "pull_requests": [{"number": pr, "head": {"sha": head_sha}}],
            "app": {"id": 15368, "slug": "github-actions"},
        },
        "repository": repository(repo),
        "sender": user("github-actions[bot]", bot=True),
    }


def check_run_completed(
    head_sha: str, name: str, *, conclusion: str = "success", repo: str = "acme/widgets"
) -> dict[str, Any]:
    return {
        "action": "completed",
        "check_run": {
            "id": 7001,
            "name": name,
            "head_sha": head_sha,
            "status": "completed",
            "conclusion": conclusion,
            "pull_requests": [],
        },
        "repository": repository(repo),
        "sender": user("github-actions[bot]", bot=True),
    }


def commit_status(
    sha: str, context: str, state: str, *, repo: str = "acme/widgets"
) -> dict[str, Any]:
    """A `status` event: it has no `action`."""
    return {
        "id": 8001,
        "sha": sha,
        "name": repo,
        "context": context,
        "state": state,
        "description": f"{context}: {state}",
        "target_url": None,
        "branches": [],
        "repository": repository(repo),
        "sender": user("ci-service[bot]", bot=True),
    }
