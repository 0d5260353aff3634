"""The real PyGithub client against tests.support.fake_github over a real local port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest
import requests
from github import (
    Auth,
    BadCredentialsException,
    Github,
    GithubException,
    RateLimitExceededException,
    UnknownObjectException,
)

from tests.support.fake_github import FakeGitHub
from tests.support.fake_http import FakeServer, RecordedRequest

REPO = "acme/widgets"


@pytest.fixture
def fake() -> FakeGitHub:
    fake = FakeGitHub()
    fake.add_issue(REPO, 7, title="Build a widget", body="please", user="alice")
    fake.add_issue(REPO, 8, title="Widget PR", user="bob", pull_request=True, head_sha="a" * 40)
    return fake


@pytest.fixture
def server(fake: FakeGitHub) -> Iterator[FakeServer]:
    with FakeServer(fake.app) as server:
        yield server


def _client(server: FakeServer, token: str = "t", **extra: object) -> Github:  # noqa: S107
    options: dict[str, object] = {
        "retry": None,
        "seconds_between_requests": 0,
        "seconds_between_writes": 0,
    }
    options.update(extra)
    return Github(base_url=server.url, auth=Auth.Token(token), **options)  # type: ignore[arg-type]


def _calls(server: FakeServer, method: str, path_suffix: str) -> list[RecordedRequest]:
    return [r for r in server.requests if r.method == method and r.path.endswith(path_suffix)]


def test_user_and_repository(server: FakeServer) -> None:
    gh = _client(server)

    assert gh.get_user().login == "orchestrator"
    repo = gh.get_repo("ACME/Widgets")  # lookups ignore case
    assert repo.full_name == REPO
    assert repo.url == f"{server.url}/repos/{REPO}"
    assert server.requests[0].headers["authorization"] == "token t"


def test_issue_and_unknown_objects(server: FakeServer) -> None:
    repo = _client(server).get_repo(REPO)

    issue = repo.get_issue(7)
    assert (issue.number, issue.title, issue.body, issue.user.login) == (
        7,
        "Build a widget",
        "please",
        "alice",
    )
    assert issue.state == "open"
    assert issue.pull_request is None
    assert issue.url == f"{server.url}/repos/{REPO}/issues/7"
    assert repo.get_issue(8).pull_request is not None

    with pytest.raises(UnknownObjectException):
        repo.get_issue(999)
    with pytest.raises(UnknownObjectException):
        _client(server).get_repo("acme/nope")


def test_pull_request(fake: FakeGitHub, server: FakeServer) -> None:
    repo = _client(server).get_repo(REPO)

    pull = repo.get_pull(8)
    assert (pull.number, pull.state, pull.merged, pull.head.sha) == (8, "open", False, "a" * 40)
    assert pull.head.ref == "feature"

    fake.set_pull(REPO, 8, head_sha="b" * 40, merged=True, state="closed")
    pull = repo.get_pull(8)
    assert (pull.head.sha, pull.merged, pull.state) == ("b" * 40, True, "closed")

    with pytest.raises(UnknownObjectException):
        repo.get_pull(7)  # an issue, not a pull request


def test_create_then_edit_comment(fake: FakeGitHub, server: FakeServer) -> None:
    repo = _client(server).get_repo(REPO)

    comment = repo.get_issue(7).create_comment("hi")
    assert comment.body == "hi"
    assert comment.user.login == "orchestrator"
    assert comment.user.type == "User"
    assert comment.url == f"{server.url}/repos/{REPO}/issues/comments/{comment.id}"
    assert fake.created_comment_count() == 1
    [stored] = fake.comments(REPO, 7)
    assert (stored["id"], stored["body"], stored["user"]) == (comment.id, "hi", "orchestrator")

    comment.edit("hi, edited")
    assert comment.body == "hi, edited"
    assert fake.comments(REPO, 7)[0]["body"] == "hi, edited"
    assert repo.get_issue(7).get_comment(comment.id).body == "hi, edited"
    assert fake.created_comment_count() == 1
    assert len(_calls(server, "POST", "/issues/7/comments")) == 1
    assert len(_calls(server, "PATCH", f"/issues/comments/{comment.id}")) == 1


def test_comment_ids_increase_across_repositories(fake: FakeGitHub, server: FakeServer) -> None:
    fake.add_issue("other/repo", 1)
    gh = _client(server)

    first = gh.get_repo(REPO).get_issue(7).create_comment("one")
    second = gh.get_repo("other/repo").get_issue(1).create_comment("two")

    assert second.id == first.id + 1
    assert fake.created_comment_count() == 2
    assert [c["body"] for c in fake.comments("other/repo", 1)] == ["two"]


def test_comments_paginate(fake: FakeGitHub, server: FakeServer) -> None:
    for i in range(5):
        fake.add_comment(REPO, 7, f"comment {i}", user="carol")
    issue = _client(server, per_page=2).get_repo(REPO).get_issue(7)

    bodies = [c.body for c in issue.get_comments()]

    assert bodies == [f"comment {i}" for i in range(5)]
    pages = _calls(server, "GET", "/issues/7/comments")
    assert len(pages) == 3
    assert [parse_qs(r.query).get("page", ["1"])[0] for r in pages] == ["1", "2", "3"]
    assert all(parse_qs(r.query)["per_page"] == ["2"] for r in pages)
    assert fake.created_comment_count() == 0  # seeded comments are not "created"


def test_comments_since(fake: FakeGitHub, server: FakeServer) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(4):
        fake.add_comment(REPO, 7, f"c{i}", created_at=start + timedelta(hours=i))
    issue = _client(server).get_repo(REPO).get_issue(7)

    recent = [c.body for c in issue.get_comments(since=start + timedelta(hours=2))]

    assert recent == ["c2", "c3"]


def test_rate_limit(fake: FakeGitHub, server: FakeServer) -> None:
    gh = _client(server)
    fake.rate_limit_next(2, reset_in=30)

    for _ in range(2):
        with pytest.raises(RateLimitExceededException) as caught:
            gh.get_user().login  # noqa: B018 - the request happens on access
        assert caught.value.status == 403
        headers = caught.value.headers or {}
        assert headers["x-ratelimit-remaining"] == "0"
        reset = int(headers["x-ratelimit-reset"])
        assert time.time() + 25 < reset <= time.time() + 31

    assert gh.get_user().login == "orchestrator"  # the limit covered exactly two requests
    assert gh.get_repo(REPO).full_name == REPO


def test_secondary_rate_limit(fake: FakeGitHub, server: FakeServer) -> None:
    fake.rate_limit_next(1, secondary=True)

    with pytest.raises(RateLimitExceededException) as caught:
        _client(server).get_user().login  # noqa: B018
    assert (caught.value.headers or {})["retry-after"] == "1"


def test_server_errors_then_recovery(fake: FakeGitHub, server: FakeServer) -> None:
    issue = _client(server).get_repo(REPO).get_issue(7)
    fake.fail_next(1)

    with pytest.raises(GithubException) as caught:
        issue.create_comment("lost")
    assert caught.value.status == 502
    assert fake.comments(REPO, 7) == []  # a failed request does not create anything

    fake.fail_next(1, status=500)
    with pytest.raises(GithubException) as caught:
        issue.create_comment("lost")
    assert caught.value.status == 500

    issue.create_comment("kept")
    assert [c["body"] for c in fake.comments(REPO, 7)] == ["kept"]
    assert len(_calls(server, "POST", "/issues/7/comments")) == 3


def test_slow_post_answers_late(fake: FakeGitHub, server: FakeServer) -> None:
    issue = _client(server).get_repo(REPO).get_issue(7)
    fake.post_delay_seconds = 0.5

    started = time.monotonic()
    comment = issue.create_comment("slow")

    assert time.monotonic() - started >= 0.5
    assert comment.body == "slow"


def test_client_giving_up_leaves_comment_created(fake: FakeGitHub, server: FakeServer) -> None:
    issue = _client(server, timeout=1).get_repo(REPO).get_issue(7)
    fake.post_delay_seconds = 2

    with pytest.raises(requests.exceptions.ReadTimeout):
        issue.create_comment("orphan")

    # Like GitHub: the comment exists although the client never saw the answer.
    assert [c["body"] for c in fake.comments(REPO, 7)] == ["orphan"]
    assert fake.created_comment_count() == 1
    assert len(_calls(server, "POST", "/issues/7/comments")) == 1


def test_token_checked_when_configured() -> None:
    fake = FakeGitHub(token="secret")
    with FakeServer(fake.app) as server:
        with pytest.raises(BadCredentialsException):
            _client(server).get_user().login  # noqa: B018
        assert _client(server, token="secret").get_user().login == "orchestrator"


def test_bot_logins_are_bots() -> None:
    fake = FakeGitHub(bot_login="orchestrator[bot]")
    fake.add_issue(REPO, 1)
    with FakeServer(fake.app) as bot_server:
        comment = _client(bot_server).get_repo(REPO).get_issue(1).create_comment("x")
    assert comment.user.login == "orchestrator[bot]"
    assert comment.user.type == "Bot"
