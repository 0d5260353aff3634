"""A local fake of the GitHub REST API that the real PyGithub client can talk to.

Serve `FakeGitHub().app` with `tests.support.fake_http.FakeServer` and point PyGithub at it:

    fake = FakeGitHub()
    fake.add_issue("acme/widgets", 7, title="An idea")
    with FakeServer(fake.app) as server:
        gh = Github(base_url=server.url, auth=Auth.Token("t"), retry=None,
                    seconds_between_requests=0, seconds_between_writes=0)
        gh.get_repo("acme/widgets").get_issue(7).create_comment("hi")

Every `url`/`html_url` in an answer is built from the request's own host, so PyGithub
follows them back here. State lives behind a `threading.Lock`: the server runs in another
thread than the test.

Faults:
- `post_delay_seconds`: comment POSTs are recorded first, then answered after the delay, so a
  client that gives up (or dies) mid-request still leaves the comment created, as on GitHub.
- `rate_limit_next(n)`: the next n requests get GitHub's primary (or secondary) rate-limit 403.
- `fail_next(n, status=502)`: the next n requests get a server error.

Repository creation and file contents (orgs, `POST /user/repos`, the contents API) live in
`tests.support.fake_github_repos`, pull requests with their mergeability and checks in
`tests.support.fake_github_pulls`; both are mixed in here.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.support.fake_github_pulls import PullRequestsMixin
from tests.support.fake_github_repos import RepoHostingMixin

RATE_LIMIT = 5000
DOCS_URL = "https://docs.github.com/rest"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class IssueState:
    number: int
    title: str
    body: str
    user: str
    state: str = "open"
    is_pull_request: bool = False
    labels: list[str] = field(default_factory=list)
    # Pull requests only.
    head_sha: str = "0" * 40
    head_ref: str = "feature"
    base_ref: str = "main"
    merged: bool = False
    draft: bool = False
    conflicts: bool = False
    review_required: bool = False
    behind: bool = False
    # False until the first read after the head moved (GitHub answers null meanwhile).
    mergeable_known: bool = False
    created_at: datetime = field(default_factory=_utcnow)


@dataclass
class CommentState:
    id: int
    issue_number: int
    body: str
    user: str
    created_at: datetime
    updated_at: datetime


@dataclass
class RepoState:
    id: int
    owner: str
    name: str
    collaborators: set[str] = field(default_factory=set)
    issues: dict[int, IssueState] = field(default_factory=dict)
    comments: dict[int, CommentState] = field(default_factory=dict)
    private: bool = False
    description: str | None = None
    default_branch: str = "main"
    # branch -> path -> content; no branches at all is an empty repository (no commit yet).
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    created_at: datetime = field(default_factory=_utcnow)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class FakeGitHub(PullRequestsMixin, RepoHostingMixin):
    """GitHub REST state plus a Starlette app serving it (see the module docstring)."""

    # Where the fixture serves it, for GITHUB_API_URL (set once the server is up).
    base_url: str = ""

    def __init__(
        self,
        bot_login: str = "orchestrator",
        *,
        token: str | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.bot_login = bot_login
        # When set, requests must carry `Authorization: token <token>` (or Bearer) or get 401.
        self.token = token
        self.now = now
        self.post_delay_seconds: float = 0.0
        self.repos: dict[str, RepoState] = {}
        self._lock = threading.Lock()
        self._next_comment_id = 1001
        self._next_repo_id = 1
        self._created_comments = 0
        self._user_ids: dict[str, int] = {}
        self._rate_limited = 0
        self._rate_limit_reset_in = 1
        self._rate_limit_secondary = False
        self._failing = 0
        self._fail_status = 502
        self._served = 0
        self._init_hosting()
        self._init_pulls()
        self._router = Starlette(
            routes=self._routes(),
            exception_handlers={HTTPException: self._http_error},
        )

    # --- helpers for tests ------------------------------------------------------------

    def add_repo(
        self,
        full_name: str,
        *,
        collaborators: Iterable[str] = (),
        private: bool | None = None,
        description: str | None = None,
    ) -> RepoState:
        """Create (or return) a repository; lookups ignore case like GitHub's."""
        owner, name = full_name.split("/")
        with self._lock:
            repo = self.repos.get(full_name.lower())
            if repo is None:
                repo = self._new_repo(owner, name)
            repo.collaborators.update(collaborators)
            if private is not None:
                repo.private = private
            if description is not None:
                repo.description = description
            return repo

    def add_issue(
        self,
        full_name: str,
        number: int,
        title: str = "An idea",
        body: str = "",
        user: str = "alice",
        pull_request: bool = False,
        *,
        state: str = "open",
        labels: Iterable[str] = (),
        head_sha: str = "0" * 40,
        head_ref: str = "feature",
        merged: bool = False,
    ) -> IssueState:
        """Create an issue (or a pull request), creating the repository when needed."""
        repo = self.add_repo(full_name)
        issue = IssueState(
            number=number,
            title=title,
            body=body,
            user=user,
            state=state,
            is_pull_request=pull_request,
            labels=list(labels),
            head_sha=head_sha,
            head_ref=head_ref,
            merged=merged,
            created_at=self.now(),
        )
        with self._lock:
            repo.issues[number] = issue
        return issue

    def set_pull(
        self,
        full_name: str,
        number: int,
        *,
        head_sha: str | None = None,
        head_ref: str | None = None,
        state: str | None = None,
        merged: bool | None = None,
        draft: bool | None = None,
        conflicts: bool | None = None,
        review_required: bool | None = None,
        behind: bool | None = None,
    ) -> None:
        """Change a pull request's head, state, merged flag or what blocks its merge."""
        with self._lock:
            issue = self._issue_or_none(full_name, number)
            if issue is None:
                raise KeyError(f"{full_name}#{number}")
            for name, value in (
                ("draft", draft),
                ("conflicts", conflicts),
                ("review_required", review_required),
                ("behind", behind),
            ):
                if value is not None:
                    setattr(issue, name, value)
            if head_sha is not None:
                issue.head_sha = head_sha
                issue.mergeable_known = False
            if head_ref is not None:
                issue.head_ref = head_ref
            if state is not None:
                issue.state = state
            if merged is not None:
                issue.merged = merged

    def add_comment(
        self,
        full_name: str,
        number: int,
        body: str,
        user: str = "alice",
        created_at: datetime | None = None,
    ) -> int:
        """Seed an existing comment (not counted by `created_comment_count`); returns its id."""
        moment = created_at or self.now()
        with self._lock:
            repo = self._repo_or_none(full_name)
            if repo is None or number not in repo.issues:
                raise KeyError(f"{full_name}#{number}")
            return self._store_comment(repo, number, body, user, moment).id

    def comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """Comments on an issue, oldest first: id, issue_number, body, user, created_at,
        updated_at (ISO strings)."""
        with self._lock:
            repo = self._repo_or_none(full_name)
            if repo is None:
                return []
            return [
                {
                    "id": c.id,
                    "issue_number": c.issue_number,
                    "body": c.body,
                    "user": c.user,
                    "created_at": _iso(c.created_at),
                    "updated_at": _iso(c.updated_at),
                }
                for c in repo.comments.values()
                if c.issue_number == number
            ]

    def created_comment_count(self) -> int:
        """How many comments clients created through POST (across all repositories)."""
        with self._lock:
            return self._created_comments

    def rate_limit_next(self, n: int, reset_in: int = 1, *, secondary: bool = False) -> None:
        """Answer the next n requests with a rate-limit 403 (reset `reset_in` seconds ahead).

        Primary: `X-RateLimit-Remaining: 0` and "API rate limit exceeded ...". Secondary:
        "You have exceeded a secondary rate limit ..." with `Retry-After`.
        """
        with self._lock:
            self._rate_limited = n
            self._rate_limit_reset_in = reset_in
            self._rate_limit_secondary = secondary

    def fail_next(self, n: int, status: int = 502) -> None:
        """Answer the next n requests (after any rate-limited ones) with `status`."""
        with self._lock:
            self._failing = n
            self._fail_status = status

    # --- ASGI entry point ---------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = self._take_fault() or self._check_auth(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self._router(scope, receive, send)

    # --- internals: state ---------------------------------------------------------------

    def _repo_or_none(self, full_name: str) -> RepoState | None:
        return self.repos.get(full_name.lower())

    def _new_repo(self, owner: str, name: str) -> RepoState:
        """Store a new repository (the caller holds the lock)."""
        repo = RepoState(id=self._next_repo_id, owner=owner, name=name, created_at=self.now())
        self._next_repo_id += 1
        self.repos[repo.full_name.lower()] = repo
        return repo

    def _issue_or_none(self, full_name: str, number: int) -> IssueState | None:
        repo = self._repo_or_none(full_name)
        return None if repo is None else repo.issues.get(number)

    def _store_comment(
        self, repo: RepoState, number: int, body: str, user: str, moment: datetime
    ) -> CommentState:
        comment = CommentState(
            id=self._next_comment_id,
            issue_number=number,
            body=body,
            user=user,
            created_at=moment,
            updated_at=moment,
        )
        self._next_comment_id += 1
        repo.comments[comment.id] = comment
        return comment

    def _user_id(self, login: str) -> int:
        if login not in self._user_ids:
            self._user_ids[login] = 100 + len(self._user_ids)
        return self._user_ids[login]

    # --- internals: responses -----------------------------------------------------------

    def _rate_headers(self, remaining: int | None = None) -> dict[str, str]:
        if remaining is None:
            self._served += 1
            remaining = max(1, RATE_LIMIT - self._served)
        return {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Used": str(RATE_LIMIT - remaining),
            "X-RateLimit-Resource": "core",
        }

    def _json(
        self, data: Any, status_code: int = 200, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        with self._lock:
            all_headers = self._rate_headers()
        all_headers.update(headers or {})
        return JSONResponse(data, status_code=status_code, headers=all_headers)

    def _error(self, status_code: int, message: str) -> JSONResponse:
        return self._json({"message": message, "documentation_url": DOCS_URL}, status_code)

    def _not_found(self) -> JSONResponse:
        return self._error(404, "Not Found")

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return self._not_found()
        return self._error(status, str(getattr(exc, "detail", "Server Error")))

    def _take_fault(self) -> JSONResponse | None:
        with self._lock:
            if self._rate_limited > 0:
                self._rate_limited -= 1
                reset = int(time.time()) + self._rate_limit_reset_in
                headers = self._rate_headers(remaining=0)
                headers["X-RateLimit-Reset"] = str(reset)
                if self._rate_limit_secondary:
                    message = (
                        "You have exceeded a secondary rate limit. "
                        "Please wait a few minutes before you try again."
                    )
                    headers["Retry-After"] = str(self._rate_limit_reset_in)
                else:
                    message = "API rate limit exceeded for user ID 1."
                return JSONResponse(
                    {"message": message, "documentation_url": DOCS_URL},
                    status_code=403,
                    headers=headers,
                )
            if self._failing > 0:
                self._failing -= 1
                return JSONResponse(
                    {"message": "Server Error"},
                    status_code=self._fail_status,
                    headers=self._rate_headers(),
                )
        return None

    def _check_auth(self, scope: Scope) -> JSONResponse | None:
        if self.token is None:
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() in ("token", "bearer") and value == self.token:
            return None
        return self._error(401, "Bad credentials")

    # --- internals: JSON shapes ---------------------------------------------------------

    def _user_json(self, base: str, login: str) -> dict[str, Any]:
        user_id = self._user_id(login)
        return {
            "login": login,
            "id": user_id,
            "node_id": f"U_{user_id}",
            "type": "Bot" if login.endswith("[bot]") else "User",
            "site_admin": False,
            "url": f"{base}/users/{login}",
            "html_url": f"{base}/{login}",
        }

    def _repo_json(self, base: str, repo: RepoState) -> dict[str, Any]:
        url = f"{base}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self._user_json(base, repo.owner) | {"type": self._owner_type(repo.owner)},
            "private": repo.private,
            "default_branch": repo.default_branch,
            "url": url,
            "html_url": f"{base}/{repo.full_name}",
            "issues_url": f"{url}/issues{{/number}}",
            "pulls_url": f"{url}/pulls{{/number}}",
        } | self._hosting_repo_json(base, repo)

    def _association(self, repo: RepoState, login: str) -> str:
        if login.lower() == repo.owner.lower():
            return "OWNER"
        if login in repo.collaborators:
            return "COLLABORATOR"
        return "NONE"

    def _issue_json(self, base: str, repo: RepoState, issue: IssueState) -> dict[str, Any]:
        url = f"{base}/repos/{repo.full_name}/issues/{issue.number}"
        kind = "pull" if issue.is_pull_request else "issues"
        data: dict[str, Any] = {
            "id": repo.id * 1_000_000 + issue.number,
            "node_id": f"I_{repo.id}_{issue.number}",
            "number": issue.number,
            "title": issue.title,
            "body": issue.body,
            "state": issue.state,
            "locked": False,
            "url": url,
            "repository_url": f"{base}/repos/{repo.full_name}",
            "comments_url": f"{url}/comments",
            "html_url": f"{base}/{repo.full_name}/{kind}/{issue.number}",
            "user": self._user_json(base, issue.user),
            "labels": [{"name": label} for label in issue.labels],
            "assignees": [],
            "comments": sum(1 for c in repo.comments.values() if c.issue_number == issue.number),
            "author_association": self._association(repo, issue.user),
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.created_at),
        }
        if issue.is_pull_request:
            pull_url = f"{base}/repos/{repo.full_name}/pulls/{issue.number}"
            data["pull_request"] = {
                "url": pull_url,
                "html_url": data["html_url"],
                "diff_url": f"{data['html_url']}.diff",
                "patch_url": f"{data['html_url']}.patch",
                "merged_at": _iso(issue.created_at) if issue.merged else None,
            }
        return data

    def _comment_json(self, base: str, repo: RepoState, c: CommentState) -> dict[str, Any]:
        issue = repo.issues.get(c.issue_number)
        kind = "pull" if issue is not None and issue.is_pull_request else "issues"
        return {
            "id": c.id,
            "node_id": f"IC_{c.id}",
            "url": f"{base}/repos/{repo.full_name}/issues/comments/{c.id}",
            "html_url": f"{base}/{repo.full_name}/{kind}/{c.issue_number}#issuecomment-{c.id}",
            "issue_url": f"{base}/repos/{repo.full_name}/issues/{c.issue_number}",
            "body": c.body,
            "user": self._user_json(base, c.user),
            "created_at": _iso(c.created_at),
            "updated_at": _iso(c.updated_at),
            "author_association": self._association(repo, c.user),
        }

    # --- routes ---------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        repo = "/repos/{owner}/{repo}"
        return [
            Route("/user", self._get_user),
            Route(repo, self._get_repo),
            Route(repo + "/issues/comments/{id:int}", self._comment, methods=["GET", "PATCH"]),
            Route(repo + "/issues/{number:int}", self._get_issue),
            Route(
                repo + "/issues/{number:int}/comments",
                self._issue_comments,
                methods=["GET", "POST"],
            ),
            *self._pull_routes(),
            *self._hosting_routes(),
        ]

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @staticmethod
    def _full_name(request: Request) -> str:
        return f"{request.path_params['owner']}/{request.path_params['repo']}"

    async def _get_user(self, request: Request) -> Response:
        with self._lock:
            data = self._user_json(self._base(request), self.bot_login)
        return self._json(data)

    async def _get_repo(self, request: Request) -> Response:
        with self._lock:
            repo = self._repo_or_none(self._full_name(request))
            data = None if repo is None else self._repo_json(self._base(request), repo)
        return self._not_found() if data is None else self._json(data)

    async def _get_issue(self, request: Request) -> Response:
        with self._lock:
            repo = self._repo_or_none(self._full_name(request))
            issue = None if repo is None else repo.issues.get(request.path_params["number"])
            if repo is None or issue is None:
                data = None
            else:
                data = self._issue_json(self._base(request), repo, issue)
        return self._not_found() if data is None else self._json(data)

    async def _issue_comments(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._create_comment(request)
        return self._list_comments(request)

    async def _create_comment(self, request: Request) -> Response:
        number = request.path_params["number"]
        try:
            payload = await request.json()
        except ValueError:
            return self._error(400, "Problems parsing JSON")
        body = payload.get("body") if isinstance(payload, dict) else None
        if not isinstance(body, str) or not body:
            return self._error(422, "Validation Failed")
        with self._lock:
            repo = self._repo_or_none(self._full_name(request))
            if repo is None or number not in repo.issues:
                data = None
            else:
                comment = self._store_comment(repo, number, body, self.bot_login, self.now())
                self._created_comments += 1
                data = self._comment_json(self._base(request), repo, comment)
            delay = self.post_delay_seconds
        if data is None:
            return self._not_found()
        # Created first, answered later: a client that dies waiting leaves it posted.
        if delay > 0:
            await asyncio.sleep(delay)
        return self._json(data, status_code=201)

    def _list_comments(self, request: Request) -> Response:
        number = request.path_params["number"]
        query = request.query_params
        try:
            per_page = min(100, max(1, int(query.get("per_page", "30"))))
            page = max(1, int(query.get("page", "1")))
            since = _parse_iso(query["since"]) if "since" in query else None
        except ValueError:
            return self._error(422, "Validation Failed")
        with self._lock:
            repo = self._repo_or_none(self._full_name(request))
            if repo is None or number not in repo.issues:
                found = None
            else:
                found = [
                    c
                    for c in repo.comments.values()
                    if c.issue_number == number and (since is None or c.updated_at >= since)
                ]
                chunk = found[(page - 1) * per_page : page * per_page]
                data = [self._comment_json(self._base(request), repo, c) for c in chunk]
        if found is None:
            return self._not_found()
        last = max(1, -(-len(found) // per_page))
        links = []
        if page < last:
            links.append(f'<{request.url.include_query_params(page=page + 1)}>; rel="next"')
            links.append(f'<{request.url.include_query_params(page=last)}>; rel="last"')
        if page > 1:
            links.append(f'<{request.url.include_query_params(page=page - 1)}>; rel="prev"')
            links.append(f'<{request.url.include_query_params(page=1)}>; rel="first"')
        return self._json(data, headers={"Link": ", ".join(links)} if links else None)

    async def _comment(self, request: Request) -> Response:
        comment_id = request.path_params["id"]
        body: str | None = None
        if request.method == "PATCH":
            try:
                payload = await request.json()
            except ValueError:
                return self._error(400, "Problems parsing JSON")
            body = payload.get("body") if isinstance(payload, dict) else None
            if not isinstance(body, str) or not body:
                return self._error(422, "Validation Failed")
        with self._lock:
            repo = self._repo_or_none(self._full_name(request))
            comment = None if repo is None else repo.comments.get(comment_id)
            if repo is None or comment is None:
                data = None
            else:
                if body is not None:
                    comment.body = body
                    comment.updated_at = self.now()
                data = self._comment_json(self._base(request), repo, comment)
        return self._not_found() if data is None else self._json(data)
