"""Repository creation and file contents for the fake GitHub (mixed into `FakeGitHub`).

What real GitHub does, as far as PyGithub and the orchestrator can tell:
- `GET /users/{login}` (type User or Organization), `GET /orgs/{org}` (404 for a user).
- `POST /user/repos` and `POST /orgs/{org}/repos`: 201 with the repository; 422 "Repository
  creation failed." with `errors[].message` "name already exists on this account" when the
  name is taken; 404 for an unknown organisation; characters GitHub does not allow in a
  name become "-". `auto_init` commits a README.md on `main`, otherwise the repository is
  empty (no branch) until the first file is committed.
- `GET /repos/{o}/{r}/contents/{path}[?ref=]`: a file (base64 `content`, blob `sha`), a
  folder (a list), or 404 ("Not Found", "This repository is empty.", "No commit found for
  the ref x"). Files over 1 MB come back with `encoding: "none"` and empty content.
- `PUT /repos/{o}/{r}/contents/{path}`: 201 created, 200 updated; an existing file needs
  its blob `sha` (missing: 422, stale: 409); an unknown branch is 404.

Test helpers: `add_org`, `add_user`, `take_name_before_create`, `push_before_next_write`,
`put_file`, `file`,
`repo_private`, `repo_description`, `created_repositories`, `commit_messages`.
Repository and file writes honour `post_delay_seconds` like comment POSTs: stored first,
answered late.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from tests.support.fake_github import RepoState

MAX_INLINE_CONTENT = 1024 * 1024  # larger files are served without their content
MAX_NAME_LENGTH = 100
CREATE_DOCS_URL = (
    "https://docs.github.com/rest/repos/repos#create-a-repository-for-the-authenticated-user"
)
DOCS_URL = "https://docs.github.com/rest"
NOT_ALLOWED_IN_NAME = re.compile(r"[^A-Za-z0-9._-]")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def blob_sha(data: bytes) -> str:
    """Git's blob id, which is what the contents API calls a file's `sha`."""
    header = f"blob {len(data)}\0".encode()
    return hashlib.sha1(header + data, usedforsecurity=False).hexdigest()


def _base64_lines(data: bytes) -> str:
    # GitHub wraps the encoded content at 60 characters.
    text = base64.b64encode(data).decode("ascii")
    return "".join(text[i : i + 60] + "\n" for i in range(0, len(text), 60))


@dataclass
class OrgState:
    login: str
    can_create: bool = True


@dataclass
class CommitRecord:
    sha: str
    branch: str
    message: str
    path: str


# (status, body): computed under the lock, turned into a response outside it.
Answer = tuple[int, Any]


class RepoHostingMixin:
    if TYPE_CHECKING:
        bot_login: str
        repos: dict[str, RepoState]
        post_delay_seconds: float
        _lock: threading.Lock
        now: Callable[[], datetime]

        def _json(
            self, data: Any, status_code: int = 200, headers: dict[str, str] | None = None
        ) -> JSONResponse: ...
        def _repo_or_none(self, full_name: str) -> RepoState | None: ...
        def _new_repo(self, owner: str, name: str) -> RepoState: ...
        def _user_json(self, base: str, login: str) -> dict[str, Any]: ...
        def _repo_json(self, base: str, repo: RepoState) -> dict[str, Any]: ...

    def _init_hosting(self) -> None:
        self._orgs: dict[str, OrgState] = {}
        self._users: set[str] = set()
        self._race_names: set[str] = set()
        self._pushes: dict[tuple[str, str], str] = {}
        self._created_repos: list[str] = []
        self._commits: dict[str, list[CommitRecord]] = {}
        self._next_commit = 1

    # --- helpers for tests ------------------------------------------------------------

    def add_org(self, login: str, *, can_create: bool = True) -> None:
        """An organisation; with `can_create=False` the token may not create repositories
        in it (GitHub's 403)."""
        with self._lock:
            self._orgs[login.lower()] = OrgState(login=login, can_create=can_create)

    def add_user(self, login: str) -> None:
        """A user account other than the token's own."""
        with self._lock:
            self._users.add(login.lower())

    def take_name_before_create(self, full_name: str) -> None:
        """Someone else creates `full_name` just before the next request to create it,
        after any look-up: that request then gets GitHub's 422 "name already exists"."""
        with self._lock:
            self._race_names.add(full_name.lower())

    def push_before_next_write(self, full_name: str, path: str, content: str) -> None:
        """Someone else commits `content` at `path` just before the next write to it (after
        any read), so that write finds its `sha` stale (409) or missing (422)."""
        with self._lock:
            self._pushes[(full_name.lower(), path)] = content

    def put_file(self, full_name: str, path: str, content: str, branch: str = "main") -> None:
        """Commit a file directly (someone else's push), creating the repository if needed."""
        owner, name = full_name.split("/")
        with self._lock:
            repo = self._repo_or_none(full_name) or self._new_repo(owner, name)
            repo.branches.setdefault(branch, {})[path] = content.encode()
            self._record_commit(repo, branch, f"Update {path}", path)

    def file(self, full_name: str, path: str, branch: str = "main") -> str | None:
        with self._lock:
            repo = self._repo_or_none(full_name)
            data = None if repo is None else repo.branches.get(branch, {}).get(path)
        return None if data is None else data.decode()

    def files(self, full_name: str, branch: str = "main") -> dict[str, str]:
        """Every file of a branch, path -> text: what a clone of it would hold."""
        with self._lock:
            repo = self._repo_or_none(full_name)
            found = {} if repo is None else dict(repo.branches.get(branch, {}))
        return {path: data.decode(errors="replace") for path, data in found.items()}

    def repo_private(self, full_name: str) -> bool:
        with self._lock:
            repo = self._repo_or_none(full_name)
            if repo is None:
                raise KeyError(full_name)
            return repo.private

    def repo_description(self, full_name: str) -> str | None:
        with self._lock:
            repo = self._repo_or_none(full_name)
            if repo is None:
                raise KeyError(full_name)
            return repo.description

    def created_repositories(self) -> list[str]:
        """Full names of the repositories clients created through the API, in order."""
        with self._lock:
            return list(self._created_repos)

    def commit_messages(self, full_name: str, branch: str = "main") -> list[str]:
        with self._lock:
            commits = self._commits.get(full_name.lower(), [])
            return [c.message for c in commits if c.branch == branch]

    # --- internals ----------------------------------------------------------------------

    def _hosting_routes(self) -> list[Route]:
        contents = "/repos/{owner}/{repo}/contents"
        return [
            Route("/users/{login}", self._get_named_user),
            Route("/orgs/{org}", self._get_org),
            Route("/user/repos", self._create_user_repo, methods=["POST"]),
            Route("/orgs/{org}/repos", self._create_org_repo, methods=["POST"]),
            Route(contents, self._contents, methods=["GET"]),
            Route(contents + "/{path:path}", self._contents, methods=["GET", "PUT"]),
        ]

    def _hosting_repo_json(self, base: str, repo: RepoState) -> dict[str, Any]:
        web = f"{base}/{repo.full_name}"
        return {
            "description": repo.description,
            "visibility": "private" if repo.private else "public",
            "fork": False,
            "clone_url": f"{web}.git",
            "contents_url": f"{base}/repos/{repo.full_name}/contents/{{+path}}",
            "size": sum(len(d) for files in repo.branches.values() for d in files.values()),
            "created_at": repo.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def _owner_type(self, login: str) -> str:
        lowered = login.lower()
        if lowered == self.bot_login.lower() or lowered in self._users:
            return "User"
        return "Organization"

    def _org_or_none(self, login: str) -> OrgState | None:
        found = self._orgs.get(login.lower())
        if found is not None:
            return found
        # Owners of seeded repositories are organisations unless they were added as users.
        for repo in self.repos.values():
            if repo.owner.lower() == login.lower() and self._owner_type(login) != "User":
                return OrgState(login=repo.owner)
        return None

    def _known_user(self, login: str) -> str | None:
        lowered = login.lower()
        if lowered == self.bot_login.lower():
            return self.bot_login
        if lowered in self._users:
            return login
        for repo in self.repos.values():
            authors = [i.user for i in repo.issues.values()]
            authors += [c.user for c in repo.comments.values()]
            for known in authors:
                if known.lower() == lowered:
                    return known
        return None

    def _record_commit(self, repo: RepoState, branch: str, message: str, path: str) -> str:
        sha = f"{self._next_commit:040x}"
        self._next_commit += 1
        commits = self._commits.setdefault(repo.full_name.lower(), [])
        commits.append(CommitRecord(sha=sha, branch=branch, message=message, path=path))
        return sha

    def _answer(self, answer: Answer) -> Response:
        status, body = answer
        if isinstance(body, str):
            return self._json({"message": body, "documentation_url": DOCS_URL}, status)
        return self._json(body, status)

    @staticmethod
    async def _payload(request: Request) -> dict[str, Any] | None:
        try:
            payload = await request.json()
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    # --- users and organisations ------------------------------------------------------

    async def _get_named_user(self, request: Request) -> Response:
        login = request.path_params["login"]
        base = str(request.base_url).rstrip("/")
        with self._lock:
            org = self._org_or_none(login)
            user = None if org is not None else self._known_user(login)
            if org is not None:
                data = self._user_json(base, org.login) | {"type": "Organization"}
            elif user is not None:
                data = self._user_json(base, user) | {"type": "User"}
            else:
                data = None
        return self._answer((404, "Not Found") if data is None else (200, data))

    async def _get_org(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        with self._lock:
            org = self._org_or_none(request.path_params["org"])
            data = None if org is None else self._org_json(base, org)
        return self._answer((404, "Not Found") if data is None else (200, data))

    def _org_json(self, base: str, org: OrgState) -> dict[str, Any]:
        user = self._user_json(base, org.login)
        return {
            "login": org.login,
            "id": user["id"],
            "node_id": f"O_{user['id']}",
            "url": f"{base}/orgs/{org.login}",
            "repos_url": f"{base}/orgs/{org.login}/repos",
            "html_url": f"{base}/{org.login}",
            "type": "Organization",
            "description": None,
        }

    # --- creating repositories ----------------------------------------------------------

    async def _create_user_repo(self, request: Request) -> Response:
        return await self._create_repo(request, None)

    async def _create_org_repo(self, request: Request) -> Response:
        return await self._create_repo(request, request.path_params["org"])

    async def _create_repo(self, request: Request, org: str | None) -> Response:
        payload = await self._payload(request)
        if payload is None:
            return self._answer((400, "Problems parsing JSON"))
        base = str(request.base_url).rstrip("/")
        with self._lock:
            answer = self._create_repo_locked(base, org, payload)
            delay = self.post_delay_seconds
        if answer[0] == 201 and delay > 0:
            await asyncio.sleep(delay)  # created first, answered late
        return self._answer(answer)

    def _create_repo_locked(self, base: str, org: str | None, payload: dict[str, Any]) -> Answer:
        if org is None:
            owner = self.bot_login
        else:
            found = self._org_or_none(org)
            if found is None:
                return 404, "Not Found"
            if not found.can_create:
                return (
                    403,
                    "You need admin access to the organization before adding a repository to it.",
                )
            owner = found.login
        name, description, private = (
            payload.get("name"),
            payload.get("description"),
            payload.get("private", False),
        )
        if not isinstance(name, str) or not name.strip():
            return _creation_failed("missing_field", "name", "name is missing")
        name = NOT_ALLOWED_IN_NAME.sub("-", name.strip())
        if len(name) > MAX_NAME_LENGTH or name in (".", ".."):
            return _creation_failed(
                "custom", "name", "name is too long (maximum is 100 characters)"
            )
        if description is not None and (
            not isinstance(description, str) or CONTROL_CHARACTERS.search(description)
        ):
            return _creation_failed(
                "custom", "description", "description control characters are not allowed"
            )
        if not isinstance(private, bool):
            return _creation_failed("invalid", "private", "private is not a boolean")
        full_name = f"{owner}/{name}"
        if full_name.lower() in self._race_names:
            self._race_names.discard(full_name.lower())
            self._new_repo(owner, name).description = "Somebody else's project"
        if self._repo_or_none(full_name) is not None:
            return _creation_failed("custom", "name", "name already exists on this account")
        repo = self._new_repo(owner, name)
        repo.private = private
        repo.description = description
        repo.branches = {}
        if payload.get("auto_init") is True:
            readme = f"# {name}\n" + (f"{description}\n" if description else "")
            repo.branches[repo.default_branch] = {"README.md": readme.encode()}
            self._record_commit(repo, repo.default_branch, "Initial commit", "README.md")
        self._created_repos.append(repo.full_name)
        return 201, self._repo_json(base, repo)

    # --- contents -----------------------------------------------------------------------

    async def _contents(self, request: Request) -> Response:
        full_name = f"{request.path_params['owner']}/{request.path_params['repo']}"
        path = request.path_params.get("path", "").strip("/")
        base = str(request.base_url).rstrip("/")
        if request.method == "GET":
            with self._lock:
                answer = self._read_locked(base, full_name, path, request.query_params.get("ref"))
            return self._answer(answer)
        payload = await self._payload(request)
        if payload is None:
            return self._answer((400, "Problems parsing JSON"))
        with self._lock:
            answer = self._write_locked(base, full_name, path, payload)
            delay = self.post_delay_seconds
        if answer[0] in (200, 201) and delay > 0:
            await asyncio.sleep(delay)
        return self._answer(answer)

    def _read_locked(self, base: str, full_name: str, path: str, ref: str | None) -> Answer:
        repo = self._repo_or_none(full_name)
        if repo is None:
            return 404, "Not Found"
        if not repo.branches:
            return 404, "This repository is empty."
        branch = ref or repo.default_branch
        files = repo.branches.get(branch)
        if files is None:
            return 404, f"No commit found for the ref {branch}"
        if path in files:
            return 200, self._file_json(base, repo, branch, path, files[path], content=True)
        prefix = f"{path}/" if path else ""
        children: dict[str, bytes | None] = {}
        for known, data in files.items():
            if known.startswith(prefix):
                rest = known[len(prefix) :]
                child, _, deeper = rest.partition("/")
                children[prefix + child] = None if deeper else data
        if not children:
            return 404, "Not Found"
        return 200, [
            self._entry_json(base, repo, branch, child, data)
            for child, data in sorted(children.items())
        ]

    def _write_locked(
        self, base: str, full_name: str, path: str, payload: dict[str, Any]
    ) -> Answer:
        message, content, sha = payload.get("message"), payload.get("content"), payload.get("sha")
        if not isinstance(message, str):
            return 422, 'Invalid request.\n\n"message" wasn\'t supplied.'
        if not isinstance(content, str):
            return 422, 'Invalid request.\n\n"content" wasn\'t supplied.'
        try:
            data = base64.b64decode("".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            return 422, "content is not valid Base64"
        repo = self._repo_or_none(full_name)
        if repo is None:
            return 404, "Not Found"
        if not path:
            return 422, "path cannot be blank"
        branch = payload.get("branch") or repo.default_branch
        if repo.branches and branch not in repo.branches:
            return 404, f"Branch {branch} not found"
        files = repo.branches.setdefault(branch, {})  # the first commit creates the branch
        pushed = self._pushes.pop((full_name.lower(), path), None)
        if pushed is not None:
            files[path] = pushed.encode()
            self._record_commit(repo, branch, f"Update {path}", path)
        existing = files.get(path)
        if existing is not None:
            if not isinstance(sha, str):
                return 422, 'Invalid request.\n\n"sha" wasn\'t supplied.'
            if sha != blob_sha(existing):
                return 409, f"{path} does not match {sha}"
        files[path] = data
        commit_sha = self._record_commit(repo, branch, message, path)
        return 201 if existing is None else 200, {
            "content": self._file_json(base, repo, branch, path, data, content=False),
            "commit": self._commit_json(base, repo, commit_sha, message),
        }

    def _file_json(
        self, base: str, repo: RepoState, branch: str, path: str, data: bytes, *, content: bool
    ) -> dict[str, Any]:
        entry = self._entry_json(base, repo, branch, path, data)
        if content:
            if len(data) > MAX_INLINE_CONTENT:
                entry |= {"content": "", "encoding": "none"}
            else:
                entry |= {"content": _base64_lines(data), "encoding": "base64"}
        return entry

    def _entry_json(
        self, base: str, repo: RepoState, branch: str, path: str, data: bytes | None
    ) -> dict[str, Any]:
        """A file (`data`) or a folder (`data is None`) as the contents API lists it."""
        sha = blob_sha(data) if data is not None else blob_sha(path.encode())
        kind = "file" if data is not None else "dir"
        url = f"{base}/repos/{repo.full_name}/contents/{quote(path)}?ref={quote(branch)}"
        git_url = (
            f"{base}/repos/{repo.full_name}/git/{'blobs' if kind == 'file' else 'trees'}/{sha}"
        )
        html_url = f"{base}/{repo.full_name}/{'blob' if kind == 'file' else 'tree'}/{branch}/{path}"
        return {
            "type": kind,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "size": len(data) if data is not None else 0,
            "url": url,
            "git_url": git_url,
            "html_url": html_url,
            "download_url": f"{base}/raw/{repo.full_name}/{branch}/{path}"
            if kind == "file"
            else None,
            "_links": {"self": url, "git": git_url, "html": html_url},
        }

    def _commit_json(self, base: str, repo: RepoState, sha: str, message: str) -> dict[str, Any]:
        moment = self.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        person = {
            "name": self.bot_login,
            "email": f"{self.bot_login}@users.noreply",
            "date": moment,
        }
        return {
            "sha": sha,
            "node_id": f"C_{sha[-8:]}",
            "url": f"{base}/repos/{repo.full_name}/git/commits/{sha}",
            "html_url": f"{base}/{repo.full_name}/commit/{sha}",
            "author": person,
            "committer": person,
            "message": message,
            "tree": {
                "sha": blob_sha(sha.encode()),
                "url": f"{base}/repos/{repo.full_name}/git/trees",
            },
            "parents": [],
        }


def _creation_failed(code: str, field: str, message: str) -> Answer:
    return 422, {
        "message": "Repository creation failed.",
        "errors": [{"resource": "Repository", "code": code, "field": field, "message": message}],
        "documentation_url": CREATE_DOCS_URL,
    }
