"""`RepositoryHost` over PyGithub, which is synchronous: each operation runs in a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
from github import (
    Auth,
    Github,
    GithubException,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.ContentFile import ContentFile
from github.GithubObject import NotSet, Opt
from github.Repository import Repository

from project_orchestrator.logging import get_logger
from project_orchestrator.repos.host import (
    MAX_CANDIDATES,
    HostedRepository,
    RepositoryError,
    RepositoryRateLimited,
    blob_sha,
    candidate_names,
    check_name,
    marked_description,
)
from project_orchestrator.repos.pulls import Check, PullRequestReading

log = get_logger(__name__)

T = TypeVar("T")
# A file changed by someone else between our read and our write: read again, this often.
WRITE_ATTEMPTS = 3


class _NameTaken(Exception):
    """GitHub's 422: the name is in use (perhaps by a repository we cannot see)."""


class PyGithubRepositoryHost:
    """Creates repositories and commits files with the orchestrator's GitHub token."""

    def __init__(self, api_url: str, token: str, *, timeout: int = 15) -> None:
        # retry=None: urllib3 would repeat a POST whose answer was lost and make a second
        # repository or commit. The job queue retries whole steps instead, and the marker
        # and the content comparison make a repeated step harmless.
        self._client = Github(
            base_url=api_url,
            auth=Auth.Token(token),
            retry=None,
            timeout=timeout,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,  # requests only when we ask for data, never to "complete" objects
        )
        self._login: str | None = None

    # --- RepositoryHost ---------------------------------------------------------------

    async def ensure_repository(
        self, owner: str, name: str, *, private: bool, marker: str, description: str
    ) -> HostedRepository:
        check_name(name)
        text = marked_description(description, marker)
        return await self._run(
            f"create a repository under {owner}",
            lambda: self._ensure(owner, name, private=private, marker=marker, description=text),
        )

    async def publish_file(
        self, full_name: str, path: str, content: str, message: str, *, branch: str | None = None
    ) -> bool:
        path = _clean_path(path)
        if not message.strip():
            raise ValueError("a commit needs a message")
        data = content.encode("utf-8")
        return await self._run(
            f"commit {path} to {full_name}",
            lambda: self._publish(full_name, path, data, message, branch),
        )

    async def read_file(
        self, full_name: str, path: str, *, branch: str | None = None
    ) -> str | None:
        path = _clean_path(path)
        return await self._run(
            f"read {path} in {full_name}", lambda: self._read(full_name, path, branch)
        )

    # --- PullRequests -----------------------------------------------------------------

    async def read_pull_request(self, full_name: str, number: int) -> PullRequestReading:
        return await self._run(
            f"read pull request #{number} in {full_name}",
            lambda: self._read_pull(full_name, number),
        )

    # --- blocking work (in a thread) --------------------------------------------------

    def _read_pull(self, full_name: str, number: int) -> PullRequestReading:
        repo = self._client.get_repo(full_name)
        pull = repo.get_pull(number)
        head = pull.head.sha
        commit = repo.get_commit(head)
        checks = [
            Check.from_check_run(
                run.name,
                run.status,
                run.conclusion,
                _run_summary(run.output.title, run.output.summary) if run.output else "",
            )
            for run in commit.get_check_runs()
        ]
        checks += [
            Check.from_status(status.context, status.state, status.description or "")
            for status in commit.get_combined_status().statuses
        ]
        return PullRequestReading(
            number=pull.number,
            state=pull.state,
            merged=bool(pull.merged),
            draft=bool(pull.draft),
            mergeable=pull.mergeable,
            mergeable_state=pull.mergeable_state or "unknown",
            head_sha=head,
            checks=tuple(checks),
            required=None if pull.merged else self._required_checks(repo, pull.base.ref),
        )

    @staticmethod
    def _required_checks(repo: Repository, branch: str) -> frozenset[str] | None:
        """The checks the base branch's protection requires, read from the branch itself
        (readable without admin rights); None when it names none: then every check counts."""
        try:
            data = repo.get_branch(branch).raw_data
        except GithubException as exc:
            if exc.status in (403, 404):
                return None
            raise
        rules = ((data.get("protection") or {}).get("required_status_checks")) or {}
        names = set(rules.get("contexts") or [])
        names |= {c["context"] for c in rules.get("checks") or [] if c.get("context")}
        return frozenset(names) if data.get("protected") and names else None

    def _ensure(
        self, owner: str, name: str, *, private: bool, marker: str, description: str
    ) -> HostedRepository:
        personal = owner.casefold() == self._own_login().casefold()
        for candidate in candidate_names(name):
            full_name = f"{owner}/{candidate}"
            found = self._find(full_name)
            if found is None:
                try:
                    made = self._create(owner, candidate, personal, private, description)
                except _NameTaken:
                    # Taken since we looked: by someone else, or by our own earlier request
                    # whose answer never arrived. Only the marker tells which.
                    found = self._find(full_name)
                else:
                    log.info("repos.created", repository=made.full_name, private=private)
                    return _hosted(made, created=True)
            if found is not None and marker in (found.description or ""):
                log.info("repos.found", repository=found.full_name)
                return _hosted(found, created=False)
            log.info("repos.name_taken", repository=full_name)
        raise RepositoryError(
            f"GitHub already has repositories called {owner}/{name} and "
            f"{owner}/{name}-2 to {owner}/{name}-{MAX_CANDIDATES} that belong to something "
            "else. Please choose a different name for the project.",
            github_status=422,
        )

    def _own_login(self) -> str:
        if self._login is None:
            self._login = str(self._client.get_user().login)
        return self._login

    def _find(self, full_name: str) -> Repository | None:
        try:
            return self._client.get_repo(full_name).complete()
        except UnknownObjectException:
            return None

    def _create(
        self, owner: str, name: str, personal: bool, private: bool, description: str
    ) -> Repository:
        try:
            if personal:
                return self._client.get_user().create_repo(
                    name, description=description, private=private, auto_init=True
                )
            return self._client.get_organization(owner).create_repo(
                name, description=description, private=private, auto_init=True
            )
        except RateLimitExceededException:
            raise
        except GithubException as exc:
            if exc.status == 422 and _says_name_taken(exc.data):
                raise _NameTaken from exc
            if exc.status == 404 and not personal:
                raise self._no_such_owner(owner) from exc
            if exc.status == 403:
                raise RepositoryError(
                    f"GitHub refused to create the repository {owner}/{name}: the token may "
                    "not create repositories there (HTTP 403).",
                    github_status=403,
                ) from exc
            raise

    def _no_such_owner(self, owner: str) -> RepositoryError:
        try:
            kind = self._client.get_user(owner).type
        except UnknownObjectException:
            kind = None
        if kind == "User":
            return RepositoryError(
                f"{owner} is someone else's GitHub account: the orchestrator can create "
                f"repositories only for its own account ({self._own_login()}) or for an "
                "organisation it belongs to.",
                github_status=404,
            )
        return RepositoryError(
            f"GitHub has no organisation called {owner} that the orchestrator's token can "
            "see, so it cannot create the repository there.",
            github_status=404,
        )

    def _publish(
        self, full_name: str, path: str, data: bytes, message: str, branch: str | None
    ) -> bool:
        repo = self._client.get_repo(full_name)
        ref: Opt[str] = NotSet if branch is None else branch
        wanted = blob_sha(data)  # compare ids, not content: large files come without it
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            current = self._current(repo, full_name, path, branch)
            if current is not None and current.sha == wanted:
                return False
            try:
                if current is None:
                    repo.create_file(path, message, data, branch=ref)
                else:
                    repo.update_file(path, message, data, current.sha, branch=ref)
            except RateLimitExceededException:
                raise
            except GithubException as exc:
                if _is_write_conflict(exc) and attempt < WRITE_ATTEMPTS:
                    log.info("repos.file_conflict", repository=full_name, path=path)
                    continue
                if _is_write_conflict(exc):
                    raise RepositoryError(
                        f"{path} in {full_name} kept changing while the orchestrator tried "
                        "to commit it; it will need another try.",
                        github_status=exc.status,
                        transient=True,
                    ) from exc
                if exc.status == 404:
                    raise self._missing(full_name, branch, exc) from exc
                raise
            log.info("repos.file_published", repository=full_name, path=path)
            return True
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _read(self, full_name: str, path: str, branch: str | None) -> str | None:
        current = self._current(self._client.get_repo(full_name), full_name, path, branch)
        if current is None:
            self._require_repository(full_name)
            return None
        if current.encoding != "base64":
            raise RepositoryError(
                f"{path} in {full_name} is too large to read through GitHub's API (over 1 MB)."
            )
        try:
            return current.decoded_content.decode("utf-8")
        except UnicodeDecodeError:
            raise RepositoryError(f"{path} in {full_name} is not a text file.") from None

    def _current(
        self, repo: Repository, full_name: str, path: str, branch: str | None
    ) -> ContentFile | None:
        """The file at `path`, or None when there is none (yet)."""
        try:
            found = repo.get_contents(path, ref=NotSet if branch is None else branch)
        except RateLimitExceededException:
            raise
        except GithubException as exc:
            if exc.status != 404:
                raise
            if "no commit found for the ref" in _github_message(exc).lower():
                raise self._missing(full_name, branch, exc) from exc
            return None  # no such file, an empty repository, or no repository (found later)
        if isinstance(found, list):
            raise RepositoryError(f"{path} in {full_name} is a folder, not a file.")
        if found.type != "file":
            raise RepositoryError(f"{path} in {full_name} is a {found.type}, not a file.")
        return found

    def _missing(self, full_name: str, branch: str | None, exc: GithubException) -> RepositoryError:
        """A 404 from the contents API: a missing branch, else a missing repository."""
        text = _github_message(exc).lower()
        if branch is not None and ("branch" in text or "ref" in text):
            return RepositoryError(
                f"The repository {full_name} has no branch called {branch}.", github_status=404
            )
        return _no_repository(full_name)

    def _require_repository(self, full_name: str) -> None:
        if self._find(full_name) is None:
            raise _no_repository(full_name)

    # --- errors -------------------------------------------------------------------------

    async def _run(self, action: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except RateLimitExceededException as exc:
            raise _rate_limited(exc) from None
        except GithubException as exc:
            if exc.status == 429:
                raise _rate_limited(exc) from None
            raise _failure(action, exc) from exc
        except requests.RequestException as exc:
            log.warning("repos.unreachable", action=action, error=type(exc).__name__)
            raise RepositoryError(
                f"GitHub did not answer while the orchestrator tried to {action} "
                f"({type(exc).__name__}); it may be down or unreachable.",
                transient=True,
            ) from exc


def _hosted(repo: Repository, *, created: bool) -> HostedRepository:
    return HostedRepository(
        full_name=repo.full_name,
        html_url=repo.html_url,
        clone_url=repo.clone_url,
        default_branch=repo.default_branch,
        created=created,
    )


def _run_summary(title: str | None, summary: str | None) -> str:
    return " ".join(part for part in (title, summary) if part)


def _clean_path(path: str) -> str:
    cleaned = path.strip().strip("/")
    if not cleaned or any(part in ("", ".", "..") for part in cleaned.split("/")):
        raise ValueError(f"not a file path inside a repository: {path!r}")
    return cleaned


def _no_repository(full_name: str) -> RepositoryError:
    return RepositoryError(
        f"GitHub has no repository {full_name} that the orchestrator's token can see.",
        github_status=404,
    )


def _github_message(exc: GithubException) -> str:
    """GitHub's own explanation: its message plus any field errors (never our request)."""
    data: Any = exc.data
    if not isinstance(data, dict):
        return exc.message or ""
    parts = [str(data.get("message") or "")]
    for error in data.get("errors") or []:
        parts.append(
            str(error.get("message") or error.get("code") or "")
            if isinstance(error, dict)
            else str(error)
        )
    return "; ".join(part for part in parts if part)


def _says_name_taken(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    codes = [e.get("code") for e in data.get("errors") or [] if isinstance(e, dict)]
    text = _github_message(GithubException(422, data)).lower()
    return "already exists" in text or "already_exists" in codes


def _is_write_conflict(exc: GithubException) -> bool:
    # 409: our sha is stale. 422 "sha wasn't supplied": the file appeared since we looked.
    return exc.status == 409 or (exc.status == 422 and '"sha"' in _github_message(exc))


def _failure(action: str, exc: GithubException) -> RepositoryError:
    status = exc.status
    if status == 401:
        message = (
            "GitHub did not accept the orchestrator's access token (HTTP 401); "
            "check GITHUB_ACCESS_TOKEN."
        )
    elif status == 403:
        message = (
            f"GitHub refused to let the orchestrator {action}: "
            "the token lacks the permission (HTTP 403)."
        )
    elif status == 404:
        message = f"GitHub could not find what the orchestrator needed to {action} (HTTP 404)."
    elif status >= 500:
        message = (
            f"GitHub had a problem (HTTP {status}) while the orchestrator tried to {action}; "
            "it is usually temporary."
        )
    else:
        detail = _github_message(exc)
        message = f"GitHub refused to {action} (HTTP {status})" + (f": {detail}" if detail else ".")
    return RepositoryError(message, github_status=status, transient=status >= 500)


def _rate_limited(exc: GithubException) -> RepositoryRateLimited:
    delay = _wait_for(exc)
    log.warning("repos.rate_limited", retry_in_seconds=delay.total_seconds())
    return RepositoryRateLimited(delay=delay, reason="GitHub rate limit")


def _wait_for(exc: GithubException) -> timedelta:
    """GitHub's advice: `Retry-After` if given; the reset time if the quota is spent;
    otherwise (a secondary limit) at least a minute."""
    headers = {k.lower(): str(v) for k, v in (exc.headers or {}).items()}
    retry_after = headers.get("retry-after", "")
    reset = headers.get("x-ratelimit-reset", "")
    if retry_after.isdigit():
        return timedelta(seconds=max(1, min(int(retry_after), 3600)))
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        wait = int(reset) - int(datetime.now(UTC).timestamp())
        return timedelta(seconds=max(1, min(wait, 3600)))
    return timedelta(seconds=60)
