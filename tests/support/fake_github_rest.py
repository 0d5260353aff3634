"""A local fake of the GitHub REST API, enough for PyGithub to comment on issues.

URLs in answers point back at the fake (PyGithub follows them). Faults can be injected:
a slow comment POST that is recorded before it answers (as GitHub would have created the
comment when a client dies waiting), rate limiting, and server errors.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Comment:
    id: int
    repo: str
    number: int
    body: str
    login: str
    created_at: str


@dataclass
class FakeGitHub:
    bot_login: str = "orchestrator"
    base_url: str = "http://127.0.0.1"
    post_delay_seconds: float = 0.0
    comments: list[Comment] = field(default_factory=list)
    _rate_limited: int = 0
    _failing: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def rate_limit_next(self, count: int) -> None:
        self._rate_limited = count

    def fail_next(self, count: int) -> None:
        self._failing = count

    def comments_on(self, repo: str, number: int) -> list[Comment]:
        with self._lock:
            return [c for c in self.comments if c.repo == repo.lower() and c.number == number]

    # --- JSON shapes -------------------------------------------------------------------

    def _repo_json(self, repo: str) -> dict[str, Any]:
        owner, name = repo.split("/")
        return {
            "id": 1,
            "name": name,
            "full_name": repo,
            "owner": {"login": owner, "id": 1, "type": "Organization"},
            "url": f"{self.base_url}/repos/{repo}",
            "html_url": f"https://github.com/{repo}",
        }

    def _issue_json(self, repo: str, number: int) -> dict[str, Any]:
        url = f"{self.base_url}/repos/{repo}/issues/{number}"
        return {
            "id": number,
            "number": number,
            "title": "An idea",
            "state": "open",
            "url": url,
            "comments_url": f"{url}/comments",
            "html_url": f"https://github.com/{repo}/issues/{number}",
            "user": {"login": "alice", "id": 2, "type": "User"},
            "labels": [],
        }

    def _comment_json(self, c: Comment) -> dict[str, Any]:
        return {
            "id": c.id,
            "body": c.body,
            "user": {"login": c.login, "id": 3, "type": "User"},
            "url": f"{self.base_url}/repos/{c.repo}/issues/comments/{c.id}",
            "html_url": f"https://github.com/{c.repo}/issues/{c.number}#issuecomment-{c.id}",
            "issue_url": f"{self.base_url}/repos/{c.repo}/issues/{c.number}",
            "created_at": c.created_at,
            "updated_at": c.created_at,
            "author_association": "NONE",
        }

    # --- routes --------------------------------------------------------------------------

    def _fault(self) -> JSONResponse | None:
        with self._lock:
            if self._rate_limited > 0:
                self._rate_limited -= 1
                return JSONResponse(
                    {"message": "API rate limit exceeded for user ID 1."},
                    status_code=403,
                    headers={
                        "X-RateLimit-Limit": "5000",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(int(time.time()) + 1),
                    },
                )
            if self._failing > 0:
                self._failing -= 1
                return JSONResponse({"message": "Server Error"}, status_code=502)
        return None

    async def _user(self, request: Request) -> JSONResponse:
        return JSONResponse({"login": self.bot_login, "id": 99, "type": "User"})

    async def _repo(self, request: Request) -> JSONResponse:
        repo = f"{request.path_params['owner']}/{request.path_params['name']}"
        return self._fault() or JSONResponse(self._repo_json(repo))

    async def _issue(self, request: Request) -> JSONResponse:
        repo = f"{request.path_params['owner']}/{request.path_params['name']}"
        number = int(request.path_params["number"])
        return self._fault() or JSONResponse(self._issue_json(repo, number))

    async def _comments(self, request: Request) -> JSONResponse:
        fault = self._fault()
        if fault is not None:
            return fault
        repo = f"{request.path_params['owner']}/{request.path_params['name']}".lower()
        number = int(request.path_params["number"])
        if request.method == "POST":
            data = await request.json()
            with self._lock:
                comment = Comment(
                    id=len(self.comments) + 1000,
                    repo=repo,
                    number=number,
                    body=data["body"],
                    login=self.bot_login,
                    created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                )
                self.comments.append(comment)
            # Created first, answered later: a client that dies waiting leaves it posted.
            if self.post_delay_seconds:
                await asyncio.sleep(self.post_delay_seconds)
            return JSONResponse(self._comment_json(comment), status_code=201)
        per_page = int(request.query_params.get("per_page", "30"))
        page = int(request.query_params.get("page", "1"))
        found = self.comments_on(repo, number)
        chunk = found[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(found):
            url = str(request.url.include_query_params(page=page + 1))
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse([self._comment_json(c) for c in chunk], headers=headers)

    @property
    def app(self) -> Starlette:
        issue = "/repos/{owner}/{name}/issues/{number:int}"
        return Starlette(
            routes=[
                Route("/user", self._user),
                Route("/repos/{owner}/{name}", self._repo),
                Route(issue, self._issue),
                Route(issue + "/comments", self._comments, methods=["GET", "POST"]),
            ]
        )
