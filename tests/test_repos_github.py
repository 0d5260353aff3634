"""The PyGithub repository host against the fake GitHub over a real local port."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from github import Auth, Github, GithubException, UnknownObjectException
from pgqueuer.errors import RetryRequested

from project_orchestrator.repos import (
    HostedRepository,
    RepositoryError,
    RepositoryHost,
    RepositoryRateLimited,
    repository_name,
)
from project_orchestrator.repos.host import (
    MAX_DESCRIPTION_LENGTH,
    blob_sha,
    candidate_names,
    marked_description,
)
from project_orchestrator.repos.pygithub import PyGithubRepositoryHost
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github_repos import blob_sha as fake_blob_sha
from tests.support.fake_http import FakeServer, RecordedRequest

TOKEN = "ghp_not-a-real-token-1234"
MARKER = "[orchestrator:project-1]"
ME = "orchestrator"


@pytest.fixture
def fake() -> FakeGitHub:
    return FakeGitHub(bot_login=ME, token=TOKEN)


@pytest.fixture
def server(fake: FakeGitHub) -> Iterator[FakeServer]:
    with FakeServer(fake.app) as server:
        yield server


@pytest.fixture
def host(server: FakeServer) -> PyGithubRepositoryHost:
    return PyGithubRepositoryHost(server.url, TOKEN)


def _calls(server: FakeServer, method: str, path: str) -> list[RecordedRequest]:
    return [r for r in server.requests if r.method == method and r.path == path]


async def _ensure(
    host: RepositoryHost,
    owner: str = ME,
    name: str = "my-app",
    *,
    private: bool = True,
    marker: str = MARKER,
) -> HostedRepository:
    return await host.ensure_repository(
        owner, name, private=private, marker=marker, description="A shop for cakes"
    )


# --- names and descriptions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("project", "expected"),
    [
        ("My Café App!", "my-cafe-app"),
        ("  cake   shop  ", "cake-shop"),
        ("...hidden", "hidden"),
        ("a--b__c..d", "a-b_c.d"),
        ("site.git", "site"),
        ("漢字", "project"),
        ("", "project"),
        ("x" * 150, "x" * 100),
    ],
)
def test_repository_name(project: str, expected: str) -> None:
    assert repository_name(project) == expected


def test_candidates_fit_githubs_limit() -> None:
    names = candidate_names("y" * 100)

    assert len(names) == 20
    assert names[0] == "y" * 100
    assert names[1] == "y" * 98 + "-2"
    assert names[19] == "y" * 97 + "-20"
    assert all(len(n) <= 100 for n in names)


def test_description_keeps_the_marker() -> None:
    text = marked_description("line one\nline two " + "z" * 500, MARKER)

    assert text.endswith(" " + MARKER)
    assert len(text) <= MAX_DESCRIPTION_LENGTH
    assert "\n" not in text
    assert text.startswith("line one line two zzz")
    assert marked_description("", MARKER) == MARKER
    with pytest.raises(ValueError, match="marker"):
        marked_description("x", " ")


def test_blob_sha_is_gits() -> None:
    # `git hash-object` of "hello\n".
    assert blob_sha(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert fake_blob_sha(b"hello\n") == blob_sha(b"hello\n")


async def test_invalid_arguments_are_refused_before_any_request(
    host: PyGithubRepositoryHost, server: FakeServer
) -> None:
    with pytest.raises(ValueError, match="repository name"):
        await _ensure(host, name="no spaces")
    with pytest.raises(ValueError, match="repository name"):
        await _ensure(host, name=".dot")
    with pytest.raises(ValueError, match="marker"):
        await _ensure(host, marker="")
    with pytest.raises(ValueError, match="path"):
        await host.publish_file("a/b", "../x", "x", "msg")
    with pytest.raises(ValueError, match="message"):
        await host.publish_file("a/b", "x.md", "x", " ")
    assert server.requests == []


# --- creating repositories -------------------------------------------------------------------


async def test_creates_a_private_repository_for_the_tokens_own_account(
    fake: FakeGitHub, server: FakeServer, host: PyGithubRepositoryHost
) -> None:
    repo = await _ensure(host, owner="Orchestrator")  # logins compare case-insensitively

    assert repo == HostedRepository(
        full_name=f"{ME}/my-app",
        html_url=f"{server.url}/{ME}/my-app",
        clone_url=f"{server.url}/{ME}/my-app.git",
        default_branch="main",
        created=True,
    )
    assert fake.created_repositories() == [f"{ME}/my-app"]
    assert fake.repo_private(f"{ME}/my-app") is True
    assert fake.repo_description(f"{ME}/my-app") == f"A shop for cakes {MARKER}"
    assert fake.file(f"{ME}/my-app", "README.md") is not None  # auto_init: clonable
    [post] = _calls(server, "POST", "/user/repos")
    assert json.loads(post.body) == {
        "name": "my-app",
        "description": f"A shop for cakes {MARKER}",
        "private": True,
        "auto_init": True,
    }
    assert post.headers["authorization"] == f"token {TOKEN}"


async def test_creates_a_public_repository_in_an_organisation(
    fake: FakeGitHub, server: FakeServer, host: PyGithubRepositoryHost
) -> None:
    fake.add_org("Acme-Labs")

    repo = await _ensure(host, owner="acme-labs", private=False)

    assert repo.full_name == "Acme-Labs/my-app"
    assert repo.created is True
    assert fake.repo_private("Acme-Labs/my-app") is False
    assert len(_calls(server, "POST", "/orgs/acme-labs/repos")) == 1
    assert _calls(server, "POST", "/user/repos") == []


async def test_a_name_taken_by_something_else_gets_a_suffix(
    fake: FakeGitHub, host: PyGithubRepositoryHost
) -> None:
    fake.add_repo(f"{ME}/my-app", description="My old homework")
    fake.add_repo(f"{ME}/my-app-2")  # no description at all

    repo = await _ensure(host)

    assert (repo.full_name, repo.created) == (f"{ME}/my-app-3", True)
    assert fake.created_repositories() == [f"{ME}/my-app-3"]
    assert fake.repo_description(f"{ME}/my-app") == "My old homework"


async def test_ensuring_again_returns_the_same_repository(
    fake: FakeGitHub, server: FakeServer, host: PyGithubRepositoryHost
) -> None:
    first = await _ensure(host)
    again = await _ensure(host)
    other_project = await _ensure(host, marker="[orchestrator:project-2]")

    assert again.full_name == first.full_name
    assert (first.created, again.created) == (True, False)
    assert other_project.full_name == f"{ME}/my-app-2"  # same name, another project
    assert fake.created_repositories() == [f"{ME}/my-app", f"{ME}/my-app-2"]


async def test_after_a_lost_answer_the_next_attempt_finds_the_repository(
    fake: FakeGitHub, server: FakeServer
) -> None:
    impatient = PyGithubRepositoryHost(server.url, TOKEN, timeout=1)
    fake.post_delay_seconds = 2  # GitHub creates it, the client gives up waiting

    with pytest.raises(RepositoryError) as caught:
        await _ensure(impatient)
    assert caught.value.transient is True
    assert "did not answer" in caught.value.message
    assert fake.created_repositories() == [f"{ME}/my-app"]

    fake.post_delay_seconds = 0
    retried = await _ensure(PyGithubRepositoryHost(server.url, TOKEN))  # a new worker

    assert (retried.full_name, retried.created) == (f"{ME}/my-app", False)
    assert fake.created_repositories() == [f"{ME}/my-app"]
    assert len(_calls(server, "POST", "/user/repos")) == 1


async def test_a_name_taken_between_look_and_create_moves_on(
    fake: FakeGitHub, server: FakeServer, host: PyGithubRepositoryHost
) -> None:
    fake.take_name_before_create(f"{ME}/my-app")

    repo = await _ensure(host)

    assert (repo.full_name, repo.created) == (f"{ME}/my-app-2", True)
    assert len(_calls(server, "POST", "/user/repos")) == 2  # the 422, then my-app-2
    assert len(_calls(server, "GET", f"/repos/{ME}/my-app")) == 2  # looked again after 422
    assert fake.created_repositories() == [f"{ME}/my-app-2"]


async def test_gives_up_when_every_name_is_taken(
    fake: FakeGitHub, server: FakeServer, host: PyGithubRepositoryHost
) -> None:
    for name in candidate_names("my-app"):
        fake.add_repo(f"{ME}/{name}")

    with pytest.raises(RepositoryError) as caught:
        await _ensure(host)

    assert "choose a different name" in caught.value.message
    assert f"{ME}/my-app-20" in caught.value.message
    assert _calls(server, "POST", "/user/repos") == []
    assert fake.created_repositories() == []


async def test_unknown_organisation_is_a_plain_error(
    fake: FakeGitHub, host: PyGithubRepositoryHost
) -> None:
    with pytest.raises(RepositoryError) as caught:
        await _ensure(host, owner="ghost-org")

    message = caught.value.message
    assert message == (
        "GitHub has no organisation called ghost-org that the orchestrator's token can see, "
        "so it cannot create the repository there."
    )
    assert caught.value.github_status == 404
    assert caught.value.transient is False
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value.__cause__)
    assert fake.created_repositories() == []


async def test_someone_elses_account_is_explained(
    fake: FakeGitHub, host: PyGithubRepositoryHost
) -> None:
    fake.add_user("bob")

    with pytest.raises(RepositoryError) as caught:
        await _ensure(host, owner="bob")

    assert "bob is someone else's GitHub account" in caught.value.message
    assert f"its own account ({ME})" in caught.value.message


async def test_organisation_that_refuses_is_a_plain_error(
    fake: FakeGitHub, host: PyGithubRepositoryHost
) -> None:
    fake.add_org("acme", can_create=False)

    with pytest.raises(RepositoryError) as caught:
        await _ensure(host, owner="acme")

    assert caught.value.message == (
        "GitHub refused to create the repository acme/my-app: the token may not create "
        "repositories there (HTTP 403)."
    )
    assert fake.created_repositories() == []


async def test_a_bad_token_is_a_plain_error_without_the_token(server: FakeServer) -> None:
    wrong = "ghp_wrong-token-5678"
    with pytest.raises(RepositoryError) as caught:
        await _ensure(PyGithubRepositoryHost(server.url, wrong))

    assert caught.value.github_status == 401
    assert "GITHUB_ACCESS_TOKEN" in caught.value.message
    assert wrong not in caught.value.message
    assert TOKEN not in caught.value.message


async def test_server_errors_are_transient(fake: FakeGitHub, host: PyGithubRepositoryHost) -> None:
    fake.fail_next(1, status=502)

    with pytest.raises(RepositoryError) as caught:
        await _ensure(host)
    assert (caught.value.github_status, caught.value.transient) == (502, True)
    assert "HTTP 502" in caught.value.message

    assert (await _ensure(host)).created is True  # and the next try works


# --- rate limits ---------------------------------------------------------------------------


async def test_primary_rate_limit_asks_the_queue_to_wait(
    fake: FakeGitHub, host: PyGithubRepositoryHost
) -> None:
    fake.rate_limit_next(1, reset_in=30)

    with pytest.raises(RepositoryRateLimited) as caught:
        await _ensure(host)

    assert isinstance(caught.value, RetryRequested)  # pgqueuer re-queues the job
    assert timedelta(seconds=25) <= caught.value.delay <= timedelta(seconds=31)
    assert fake.created_repositories() == []
    assert (await _ensure(host)).created is True


async def test_secondary_rate_limit_honours_retry_after(
    fake: FakeGitHub, host: PyGithubRepositoryHost
) -> None:
    await _ensure(host)
    fake.rate_limit_next(1, reset_in=7, secondary=True)

    with pytest.raises(RepositoryRateLimited) as caught:
        await host.publish_file(f"{ME}/my-app", "docs/vision.md", "# Vision\n", "Add vision")

    assert caught.value.delay == timedelta(seconds=7)
    assert fake.file(f"{ME}/my-app", "docs/vision.md") is None


async def test_429_is_a_rate_limit_too(fake: FakeGitHub, host: PyGithubRepositoryHost) -> None:
    fake.fail_next(1, status=429)

    with pytest.raises(RepositoryRateLimited) as caught:
        await host.read_file(f"{ME}/x", "README.md")

    assert caught.value.delay == timedelta(seconds=60)  # no hint from GitHub: a minute


# --- files -----------------------------------------------------------------------------------


@pytest.fixture
async def repo(host: PyGithubRepositoryHost) -> str:
    return (await _ensure(host)).full_name


async def test_publish_creates_then_updates_then_does_nothing(
    fake: FakeGitHub, server: FakeServer, host: PyGithubRepositoryHost, repo: str
) -> None:
    path = f"/repos/{repo}/contents/docs/vision.md"

    assert await host.publish_file(repo, "docs/vision.md", "# Vision\n", "Add the vision")
    assert fake.file(repo, "docs/vision.md") == "# Vision\n"
    [create] = _calls(server, "PUT", path)
    assert "sha" not in json.loads(create.body)

    assert await host.publish_file(repo, "docs/vision.md", "# Vision v2\n", "Update the vision")
    assert fake.file(repo, "docs/vision.md") == "# Vision v2\n"
    update = _calls(server, "PUT", path)[1]
    assert json.loads(update.body)["sha"] == blob_sha(b"# Vision\n")

    assert not await host.publish_file(repo, "/docs/vision.md", "# Vision v2\n", "Again")
    assert len(_calls(server, "PUT", path)) == 2  # the no-op wrote nothing
    assert fake.commit_messages(repo) == ["Initial commit", "Add the vision", "Update the vision"]
    assert await host.read_file(repo, "docs/vision.md") == "# Vision v2\n"


async def test_publish_on_a_branch(
    fake: FakeGitHub, server: FakeServer, host: PyGithubRepositoryHost, repo: str
) -> None:
    fake.put_file(repo, "README.md", "feature readme", branch="feature")

    assert await host.publish_file(repo, "notes.md", "on feature", "Notes", branch="feature")

    assert fake.file(repo, "notes.md", branch="feature") == "on feature"
    assert fake.file(repo, "notes.md") is None
    assert await host.read_file(repo, "notes.md", branch="feature") == "on feature"
    assert await host.read_file(repo, "notes.md") is None
    [put] = _calls(server, "PUT", f"/repos/{repo}/contents/notes.md")
    assert json.loads(put.body)["branch"] == "feature"


async def test_unknown_branch_is_a_plain_error(host: PyGithubRepositoryHost, repo: str) -> None:
    with pytest.raises(RepositoryError, match="has no branch called nope"):
        await host.read_file(repo, "README.md", branch="nope")
    with pytest.raises(RepositoryError, match="has no branch called nope"):
        await host.publish_file(repo, "x.md", "x", "X", branch="nope")


async def test_someone_elses_push_in_between_is_retried(
    fake: FakeGitHub, server: FakeServer, host: PyGithubRepositoryHost, repo: str
) -> None:
    path = f"/repos/{repo}/contents/plan.md"
    fake.push_before_next_write(repo, "plan.md", "their plan")  # appears before our create

    assert await host.publish_file(repo, "plan.md", "our plan", "Add the plan")

    assert fake.file(repo, "plan.md") == "our plan"
    create, update = _calls(server, "PUT", path)  # 422 "sha wasn't supplied", then update
    assert "sha" not in json.loads(create.body)
    assert json.loads(update.body)["sha"] == blob_sha(b"their plan")

    fake.push_before_next_write(repo, "plan.md", "their second plan")  # makes our sha stale
    assert await host.publish_file(repo, "plan.md", "our second plan", "Update the plan")
    assert fake.file(repo, "plan.md") == "our second plan"
    assert len(_calls(server, "PUT", path)) == 4  # 409, then the update with the new sha


async def test_read_file(fake: FakeGitHub, host: PyGithubRepositoryHost, repo: str) -> None:
    assert await host.read_file(repo, "README.md") == fake.file(repo, "README.md")
    assert await host.read_file(repo, "missing.md") is None
    fake.put_file(repo, "docs/a.md", "a")

    with pytest.raises(RepositoryError, match="is a folder"):
        await host.read_file(repo, "docs")
    with pytest.raises(RepositoryError, match="is a folder"):
        await host.publish_file(repo, "docs", "x", "X")


async def test_missing_repository_is_a_plain_error(host: PyGithubRepositoryHost) -> None:
    with pytest.raises(RepositoryError) as caught:
        await host.read_file(f"{ME}/nowhere", "README.md")
    assert caught.value.message == (
        f"GitHub has no repository {ME}/nowhere that the orchestrator's token can see."
    )

    with pytest.raises(RepositoryError) as caught:
        await host.publish_file(f"{ME}/nowhere", "README.md", "x", "X")
    assert caught.value.github_status == 404


async def test_an_empty_repository_takes_its_first_file(
    fake: FakeGitHub, host: PyGithubRepositoryHost
) -> None:
    fake.add_repo("acme/empty").branches.clear()  # created without auto_init

    assert await host.read_file("acme/empty", "README.md") is None
    assert await host.publish_file("acme/empty", "README.md", "# Empty no more\n", "Start")
    assert fake.file("acme/empty", "README.md") == "# Empty no more\n"


async def test_large_files_compare_by_sha(
    fake: FakeGitHub, server: FakeServer, host: PyGithubRepositoryHost, repo: str
) -> None:
    big = "0123456789abcdef" * 70_000  # 1.1 MB: GitHub sends no content for it

    assert await host.publish_file(repo, "big.txt", big, "Big")
    started = time.monotonic()
    assert not await host.publish_file(repo, "big.txt", big, "Big again")
    assert time.monotonic() - started < 5
    assert len(_calls(server, "PUT", f"/repos/{repo}/contents/big.txt")) == 1

    with pytest.raises(RepositoryError, match="too large"):
        await host.read_file(repo, "big.txt")


async def test_non_text_file_is_a_plain_error(
    fake: FakeGitHub, host: PyGithubRepositoryHost, repo: str
) -> None:
    fake.add_repo(repo).branches["main"]["logo.png"] = b"\x89PNG\r\n\x1a\n\xff\xfe"

    with pytest.raises(RepositoryError, match="not a text file"):
        await host.read_file(repo, "logo.png")


# --- the fake itself, through raw PyGithub ---------------------------------------------------


def test_fake_answers_like_github(fake: FakeGitHub, server: FakeServer) -> None:
    gh = Github(
        base_url=server.url,
        auth=Auth.Token(TOKEN),
        retry=None,
        seconds_between_requests=0,
        seconds_between_writes=0,
    )
    fake.add_org("acme")
    fake.add_user("bob")

    assert gh.get_user("acme").type == "Organization"
    assert gh.get_user("bob").type == "User"
    assert gh.get_organization("acme").login == "acme"
    with pytest.raises(UnknownObjectException):
        gh.get_organization("bob").login  # noqa: B018 - a user is no organisation

    made = gh.get_organization("acme").create_repo("odd name!", private=True)
    assert made.full_name == "acme/odd-name-"  # GitHub replaces what it does not allow
    assert (made.private, made.default_branch) == (True, "main")
    with pytest.raises(GithubException) as caught:
        gh.get_repo("acme/odd-name-").get_contents("README.md")
    assert (caught.value.status, caught.value.data["message"]) == (404, "This repository is empty.")

    with pytest.raises(GithubException) as caught:
        gh.get_organization("acme").create_repo("odd-name-")
    assert caught.value.status == 422
    assert caught.value.data["message"] == "Repository creation failed."
    assert caught.value.data["errors"][0]["message"] == "name already exists on this account"

    repo = gh.get_repo("acme/odd-name-")
    repo.create_file("a/b.md", "Add b", "bee")
    with pytest.raises(GithubException) as caught:
        repo.create_file("a/b.md", "Add b again", "bee")
    assert caught.value.status == 422
    assert '"sha" wasn\'t supplied' in caught.value.data["message"]
    with pytest.raises(GithubException) as caught:
        repo.update_file("a/b.md", "Stale", "bee 2", "0" * 40)
    assert caught.value.status == 409
    listing = repo.get_contents("a")
    assert isinstance(listing, list)
    assert [(c.path, c.type) for c in listing] == [("a/b.md", "file")]
    file = repo.get_contents("a/b.md")
    assert not isinstance(file, list)
    assert (file.decoded_content, file.sha) == (b"bee", blob_sha(b"bee"))
    with pytest.raises(GithubException) as caught:
        repo.get_contents("a/b.md", ref="nope")
    assert caught.value.data["message"] == "No commit found for the ref nope"
