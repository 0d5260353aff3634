"""Pull requests, their mergeability and checks for the fake GitHub (mixed into `FakeGitHub`).

What real GitHub does, as far as PyGithub and the orchestrator can tell:
- `GET /repos/{o}/{r}/pulls/{n}`: `mergeable` is null and `mergeable_state` "unknown" on
  the first read after the head moves (GitHub starts working it out when asked); later
  reads say true/false with `mergeable_state` one of clean, unstable (checks failing or
  pending that are not required), blocked (required checks not green, or a required
  review missing), behind, dirty (conflicts), draft.
- `GET /repos/{o}/{r}/commits/{ref}/check-runs`: `{"total_count", "check_runs"}`, newest
  first; a run is queued/in_progress (no conclusion) or completed with a conclusion.
- `GET /repos/{o}/{r}/commits/{ref}/status`: the combined status, `statuses` newest first.
- `GET /repos/{o}/{r}/branches/{branch}`: `protected` and, for a protected branch, the
  `protection.required_status_checks` contexts (readable without admin rights).

Test helpers: `open_or_push` (what SCAR's build does: a new pull request for a branch, or
a new head on the open one), `merge_pull` (what `merge-pr` or a person does), `script_ci`
(the checks each new head gets), `add_check_run`, `add_status`, `protect`, `set_pull`'s
mergeability flags, and `pull_reads`.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable

    from tests.support.fake_github import IssueState, RepoState

_FAILED = frozenset({"failure", "timed_out", "cancelled", "action_required", "startup_failure"})


@dataclass(frozen=True)
class ScriptedCheck:
    """A check a new head gets: it reports `conclusion` after `reads` reads of its runs."""

    name: str
    conclusion: str = "success"
    summary: str = ""
    reads: int = 0


@dataclass
class CheckRunState:
    id: int
    name: str
    head_sha: str
    conclusion: str | None
    summary: str
    reads_left: int
    started_at: datetime
    completed_at: datetime | None = None

    @property
    def status(self) -> str:
        return "completed" if self.reads_left <= 0 else "in_progress"


@dataclass
class StatusState:
    id: int
    context: str
    state: str
    description: str
    created_at: datetime


@dataclass
class ChecksState:
    """Per repository: runs and statuses by commit, protection by branch, the CI script."""

    runs: dict[str, list[CheckRunState]] = field(default_factory=dict)
    statuses: dict[str, list[StatusState]] = field(default_factory=dict)
    required: dict[str, list[str]] = field(default_factory=dict)
    script: list[list[ScriptedCheck]] = field(default_factory=list)
    pushes: int = 0


class PullRequestsMixin:
    if TYPE_CHECKING:
        repos: dict[str, RepoState]
        _lock: threading.Lock
        now: Callable[[], datetime]

        def _json(
            self, data: Any, status_code: int = 200, headers: dict[str, str] | None = None
        ) -> JSONResponse: ...
        def _not_found(self) -> JSONResponse: ...
        def _repo_or_none(self, full_name: str) -> RepoState | None: ...
        def _user_json(self, base: str, login: str) -> dict[str, Any]: ...
        def add_repo(self, full_name: str) -> RepoState: ...
        def add_issue(
            self, full_name: str, number: int, *args: Any, **kwargs: Any
        ) -> IssueState: ...

    def _init_pulls(self) -> None:
        self._checks: dict[str, ChecksState] = {}
        self._check_ids = itertools.count(9001)
        self._pull_reads: list[tuple[str, int]] = []
        # Merges refused whatever the pull request's state (a race GitHub can lose).
        self.merges_refused = False

    # --- helpers for tests ------------------------------------------------------------

    def open_or_push(self, full_name: str, branch: str, *, user: str = "scar-bot") -> int:
        """Push to `branch`: the open pull request from it gets a new head, or one is
        opened. Returns its number. The new head gets the next scripted checks."""
        repo = self.add_repo(full_name)
        with self._lock:
            pull = next(
                (
                    i
                    for i in repo.issues.values()
                    if i.is_pull_request and i.state == "open" and i.head_ref == branch
                ),
                None,
            )
            number = pull.number if pull is not None else max(repo.issues, default=0) + 1
        if pull is None:
            pull = self.add_issue(
                full_name,
                number,
                f"Build {branch}",
                user=user,
                pull_request=True,
                head_ref=branch,
            )
        with self._lock:
            self._new_head(repo, pull)
        return number

    def merge_pull(self, full_name: str, number: int) -> bool:
        """Merge the pull request, as the merge button would: False if it may not merge."""
        with self._lock:
            repo = self._repo_or_none(full_name)
            issue = None if repo is None else repo.issues.get(number)
            if repo is None or issue is None or issue.state != "open" or self.merges_refused:
                return False
            if self._mergeable_state(repo, issue) in ("dirty", "blocked", "behind", "draft"):
                return False
            issue.state, issue.merged = "closed", True
            return True

    def script_ci(self, full_name: str, heads: Iterable[Iterable[ScriptedCheck]]) -> None:
        """The checks each next head pushed gets, in order; the last repeats."""
        with self._lock:
            self._checks_of(full_name).script = [list(checks) for checks in heads]

    def add_check_run(
        self,
        full_name: str,
        sha: str,
        name: str,
        conclusion: str | None = "success",
        summary: str = "",
    ) -> None:
        """A check run on `sha`; `conclusion` None: still in progress until set again."""
        with self._lock:
            self._add_run(
                full_name,
                sha,
                ScriptedCheck(name, conclusion or "", summary, 0 if conclusion else 10**9),
            )

    def add_status(
        self, full_name: str, sha: str, context: str, state: str, description: str = ""
    ) -> None:
        with self._lock:
            statuses = self._checks_of(full_name).statuses.setdefault(sha, [])
            statuses.insert(
                0, StatusState(next(self._check_ids), context, state, description, self.now())
            )

    def protect(self, full_name: str, branch: str, required: Iterable[str]) -> None:
        """Branch protection requiring these checks (by name or status context)."""
        with self._lock:
            self._checks_of(full_name).required[branch] = list(required)

    def head_of(self, full_name: str, number: int) -> str:
        with self._lock:
            repo = self._repo_or_none(full_name)
            assert repo is not None
            return repo.issues[number].head_sha

    @property
    def pull_reads(self) -> list[tuple[str, int]]:
        """Every `GET .../pulls/{n}` served, as (full name, number)."""
        with self._lock:
            return list(self._pull_reads)

    # --- internals (the caller holds the lock) --------------------------------------------

    def _checks_of(self, full_name: str) -> ChecksState:
        return self._checks.setdefault(full_name.lower(), ChecksState())

    def _new_head(self, repo: RepoState, issue: IssueState) -> None:
        state = self._checks_of(repo.full_name)
        state.pushes += 1
        seed = f"{repo.full_name}:{issue.number}:{state.pushes}".encode()
        issue.head_sha = hashlib.sha1(seed, usedforsecurity=False).hexdigest()
        issue.mergeable_known = False
        if state.script:
            index = min(state.pushes - 1, len(state.script) - 1)
            for check in state.script[index]:
                self._add_run(repo.full_name, issue.head_sha, check)

    def _add_run(self, full_name: str, sha: str, check: ScriptedCheck) -> None:
        runs = self._checks_of(full_name).runs.setdefault(sha, [])
        moment = self.now()
        runs.insert(
            0,
            CheckRunState(
                id=next(self._check_ids),
                name=check.name,
                head_sha=sha,
                conclusion=check.conclusion,
                summary=check.summary,
                reads_left=check.reads,
                started_at=moment,
                completed_at=moment if check.reads <= 0 else None,
            ),
        )

    def _latest_states(self, repo: RepoState, sha: str) -> dict[str, str]:
        """Each check's latest state on `sha`: pending, success or failure."""
        state = self._checks_of(repo.full_name)
        found: dict[str, str] = {}
        for run in state.runs.get(sha, []):
            if run.name in found:
                continue
            if run.status != "completed":
                found[run.name] = "pending"
            else:
                found[run.name] = "failure" if run.conclusion in _FAILED else "success"
        for status in state.statuses.get(sha, []):
            if status.context not in found:
                found[status.context] = "failure" if status.state == "error" else status.state
        return found

    def _mergeable_state(self, repo: RepoState, issue: IssueState) -> str:
        if issue.conflicts:
            return "dirty"
        if issue.draft:
            return "draft"
        states = self._latest_states(repo, issue.head_sha)
        required = self._checks_of(repo.full_name).required.get(issue.base_ref)
        if required is not None and any(states.get(name) != "success" for name in required):
            return "blocked"
        if issue.review_required:
            return "blocked"
        if issue.behind:
            return "behind"
        if any(value != "success" for value in states.values()):
            return "unstable"
        return "clean"

    # --- routes ---------------------------------------------------------------------------

    def _pull_routes(self) -> list[Route]:
        repo = "/repos/{owner}/{repo}"
        return [
            Route(repo + "/pulls/{number:int}", self._get_pull),
            Route(repo + "/commits/{ref}/check-runs", self._get_check_runs),
            Route(repo + "/commits/{ref}/status", self._get_status),
            Route(repo + "/branches/{branch:path}", self._get_branch),
        ]

    @staticmethod
    def _where(request: Request) -> tuple[str, str]:
        full_name = f"{request.path_params['owner']}/{request.path_params['repo']}"
        return full_name, str(request.base_url).rstrip("/")

    async def _get_pull(self, request: Request) -> Response:
        full_name, base = self._where(request)
        number = request.path_params["number"]
        with self._lock:  # answered outside it: `_json` takes the lock too
            repo = self._repo_or_none(full_name)
            issue = None if repo is None else repo.issues.get(number)
            data = None
            if repo is not None and issue is not None and issue.is_pull_request:
                self._pull_reads.append((repo.full_name, number))
                data = self._pull_json(base, repo, issue)
        return self._not_found() if data is None else self._json(data)

    def _pull_json(self, base: str, repo: RepoState, issue: IssueState) -> dict[str, Any]:
        mergeable: bool | None = None
        merge_state = "unknown"
        if issue.state == "open" and not issue.mergeable_known:
            issue.mergeable_known = True  # worked out by the next read
        elif issue.state == "open":
            merge_state = self._mergeable_state(repo, issue)
            mergeable = merge_state != "dirty"
        return {
            "id": repo.id * 1_000_000 + issue.number,
            "number": issue.number,
            "title": issue.title,
            "body": issue.body,
            "state": issue.state,
            "draft": issue.draft,
            "merged": issue.merged,
            "merged_by": self._user_json(base, issue.user) if issue.merged else None,
            "mergeable": mergeable,
            "mergeable_state": merge_state,
            "user": self._user_json(base, issue.user),
            "head": {"sha": issue.head_sha, "ref": issue.head_ref, "label": issue.head_ref},
            "base": {"ref": issue.base_ref, "label": issue.base_ref},
            "url": f"{base}/repos/{repo.full_name}/pulls/{issue.number}",
            "html_url": f"{base}/{repo.full_name}/pull/{issue.number}",
            "issue_url": f"{base}/repos/{repo.full_name}/issues/{issue.number}",
        }

    async def _get_check_runs(self, request: Request) -> Response:
        full_name, base = self._where(request)
        with self._lock:
            if self._repo_or_none(full_name) is None:
                listed = None
                runs = []
            else:
                runs = self._checks_of(full_name).runs.get(request.path_params["ref"], [])
                listed = [_run_json(base, full_name, run) for run in runs]
            for run in runs:  # each read brings a running check closer to its end
                run.reads_left -= 1
                if run.status == "completed" and run.completed_at is None:
                    run.completed_at = self.now()
        if listed is None:
            return self._not_found()
        return self._json({"total_count": len(listed), "check_runs": listed})

    async def _get_status(self, request: Request) -> Response:
        full_name, base = self._where(request)
        with self._lock:  # answered outside it: `_json` takes the lock too
            data = self._status_data(full_name, base, request.path_params["ref"])
        return self._not_found() if data is None else self._json(data)

    def _status_data(self, full_name: str, base: str, sha: str) -> dict[str, Any] | None:
        if self._repo_or_none(full_name) is None:
            return None
        latest: dict[str, StatusState] = {}
        for status in self._checks_of(full_name).statuses.get(sha, []):
            latest.setdefault(status.context, status)
        states = {s.state for s in latest.values()}
        combined = "success"
        if states & {"failure", "error"}:
            combined = "failure"
        elif "pending" in states or not states:
            combined = "pending"
        return {
            "state": combined,
            "sha": sha,
            "total_count": len(latest),
            "statuses": [_status_json(base, full_name, s) for s in latest.values()],
        }

    async def _get_branch(self, request: Request) -> Response:
        full_name, base = self._where(request)
        with self._lock:
            data = self._branch_data(full_name, base, request.path_params["branch"])
        return self._not_found() if data is None else self._json(data)

    def _branch_data(self, full_name: str, base: str, branch: str) -> dict[str, Any] | None:
        repo = self._repo_or_none(full_name)
        if repo is None or branch not in repo.branches:
            return None
        required = self._checks_of(full_name).required.get(branch)
        url = f"{base}/repos/{repo.full_name}/branches/{branch}"
        data: dict[str, Any] = {
            "name": branch,
            "commit": {"sha": "0" * 40, "url": f"{base}/repos/{repo.full_name}/commits/x"},
            "protected": required is not None,
            "protection_url": f"{url}/protection",
            "_links": {"self": url, "html": f"{base}/{repo.full_name}/tree/{branch}"},
        }
        if required is not None:
            data["protection"] = {
                "enabled": True,
                "required_status_checks": {
                    "enforcement_level": "non_admins",
                    "contexts": list(required),
                    "checks": [{"context": name, "app_id": None} for name in required],
                },
            }
        return data


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _run_json(base: str, full_name: str, run: CheckRunState) -> dict[str, Any]:
    completed = run.status == "completed"
    return {
        "id": run.id,
        "name": run.name,
        "head_sha": run.head_sha,
        "status": run.status,
        "conclusion": run.conclusion if completed else None,
        "started_at": _iso(run.started_at),
        "completed_at": _iso(run.completed_at) if completed else None,
        "output": {
            "title": (run.conclusion or "running").capitalize() if completed else None,
            "summary": run.summary if completed else None,
            "text": None,
            "annotations_count": 0,
            "annotations_url": f"{base}/repos/{full_name}/check-runs/{run.id}/annotations",
        },
        "url": f"{base}/repos/{full_name}/check-runs/{run.id}",
        "html_url": f"{base}/{full_name}/runs/{run.id}",
        "details_url": f"{base}/{full_name}/runs/{run.id}",
        "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
        "pull_requests": [],
    }


def _status_json(base: str, full_name: str, status: StatusState) -> dict[str, Any]:
    return {
        "id": status.id,
        "context": status.context,
        "state": status.state,
        "description": status.description,
        "target_url": None,
        "url": f"{base}/repos/{full_name}/statuses/{status.id}",
        "created_at": _iso(status.created_at),
        "updated_at": _iso(status.created_at),
    }
