"""GitHub's verdict on a pull request: read with PyGithub from the fake, reduced by `verdict`."""

from __future__ import annotations

import pytest

from project_orchestrator.repos.host import RepositoryError
from project_orchestrator.repos.pulls import (
    Check,
    CheckState,
    PullRequestReading,
    Readiness,
    verdict,
)
from project_orchestrator.repos.pygithub import PyGithubRepositoryHost
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github_pulls import ScriptedCheck

REPO = "acme/widgets"
PASSED = CheckState.PASSED
FAILED = CheckState.FAILED
PENDING = CheckState.PENDING


def reading(**changes: object) -> PullRequestReading:
    values: dict[str, object] = {
        "number": 8,
        "state": "open",
        "merged": False,
        "draft": False,
        "mergeable": True,
        "mergeable_state": "clean",
        "head_sha": "a" * 40,
        "checks": (),
        "required": None,
    }
    values.update(changes)
    return PullRequestReading(**values)  # type: ignore[arg-type]


# --- the verdict -----------------------------------------------------------------------


def test_a_clean_pull_request_with_green_checks_is_ready() -> None:
    found = verdict(reading(checks=(Check("tests", PASSED), Check("lint", PASSED))))
    assert found.readiness is Readiness.READY
    assert found.reason == "GitHub says pull request #8 can merge; its 2 checks passed."


def test_no_checks_at_all_is_ready_and_says_so() -> None:
    found = verdict(reading())
    assert found.readiness is Readiness.READY
    assert found.reason == "GitHub says pull request #8 can merge; no checks run on it."


def test_failed_checks_are_named_with_their_summaries() -> None:
    checks = (
        Check("lint", FAILED, "Failure ruff: E501 line too long"),
        Check("tests", PASSED),
        Check("build", FAILED, ""),
    )
    found = verdict(reading(checks=checks, mergeable_state="unstable"))
    assert found.readiness is Readiness.FAILING
    assert [c.name for c in found.failing] == ["lint", "build"]
    assert found.failure_report() == (
        "2 checks failed on pull request #8: lint, build.\n"
        "- lint: Failure ruff: E501 line too long\n"
        "- build"
    )


def test_a_rerun_that_passed_replaces_the_failure_before_it() -> None:
    # GitHub lists the newest first.
    checks = (Check("tests", PASSED), Check("tests", FAILED, "flaky"))
    assert verdict(reading(checks=checks)).readiness is Readiness.READY


def test_failure_wins_over_pending_and_pending_over_ready() -> None:
    both = (Check("lint", FAILED), Check("tests", PENDING))
    assert verdict(reading(checks=both)).readiness is Readiness.FAILING
    found = verdict(reading(checks=(Check("tests", PENDING), Check("lint", PASSED))))
    assert found.readiness is Readiness.PENDING
    assert found.reason == "Waiting for 1 check to finish: tests."
    assert not found.computing


def test_a_required_check_that_never_reported_is_waited_for() -> None:
    found = verdict(
        reading(checks=(Check("lint", PASSED),), required=frozenset({"lint", "deploy-preview"}))
    )
    assert found.readiness is Readiness.PENDING
    assert "deploy-preview" in found.reason


def test_only_required_checks_decide_when_protection_names_them() -> None:
    checks = (Check("tests", PASSED), Check("spelling", FAILED))
    found = verdict(reading(checks=checks, required=frozenset({"tests"})))
    assert found.readiness is Readiness.READY
    assert found.reason == (
        "GitHub says pull request #8 can merge; its 1 required check passed "
        "(checks that are not required failed: spelling)."
    )


def test_while_github_works_out_mergeability_the_run_waits_and_asks_soon() -> None:
    found = verdict(reading(mergeable=None, mergeable_state="unknown"))
    assert found.readiness is Readiness.PENDING
    assert found.computing


@pytest.mark.parametrize(
    ("changes", "readiness", "words"),
    [
        ({"merged": True, "state": "closed"}, Readiness.MERGED, "was merged"),
        ({"state": "closed"}, Readiness.CLOSED, "closed without merging"),
        ({"draft": True}, Readiness.BLOCKED, "draft"),
        ({"mergeable": False, "mergeable_state": "dirty"}, Readiness.BLOCKED, "conflicts"),
        ({"mergeable_state": "behind"}, Readiness.BLOCKED, "up to date"),
        ({"mergeable_state": "blocked"}, Readiness.PENDING, "approving review"),
    ],
)
def test_what_else_stands_in_the_way(
    changes: dict[str, object], readiness: Readiness, words: str
) -> None:
    found = verdict(reading(**changes))
    assert found.readiness is readiness
    assert words in found.reason


def test_conflicts_come_before_checks() -> None:
    found = verdict(reading(mergeable=False, checks=(Check("lint", FAILED),)))
    assert found.readiness is Readiness.BLOCKED


# --- read through PyGithub from the fake GitHub ----------------------------------------


def host(github: FakeGitHub) -> PyGithubRepositoryHost:
    return PyGithubRepositoryHost(github.base_url, "t0ken")


async def test_a_pull_request_is_read_with_its_checks_statuses_and_protection(
    github: FakeGitHub,
) -> None:
    github.script_ci(
        REPO,
        [[ScriptedCheck("tests", "success"), ScriptedCheck("lint", "failure", "E501 at a.py:3")]],
    )
    number = github.open_or_push(REPO, "feature-x")
    head = github.head_of(REPO, number)
    github.add_status(REPO, head, "ci/legacy", "pending", "Queued")
    github.protect(REPO, "main", ["tests", "ci/legacy"])

    first = await host(github).read_pull_request(REPO, number)
    assert first.mergeable is None  # GitHub starts working it out when first asked
    assert first.mergeable_state == "unknown"
    second = await host(github).read_pull_request(REPO, number)
    assert second.number == number == 8
    assert (second.state, second.merged, second.draft) == ("open", False, False)
    assert second.head_sha == head
    assert second.mergeable is True
    assert second.mergeable_state == "blocked"  # a required status is still pending
    assert second.required == frozenset({"tests", "ci/legacy"})
    assert sorted(second.checks, key=lambda c: c.name) == [
        Check("ci/legacy", PENDING, "Queued"),
        Check("lint", FAILED, "Failure E501 at a.py:3"),
        Check("tests", PASSED, "Success"),
    ]
    found = verdict(second)
    assert found.readiness is Readiness.PENDING  # lint is not required; ci/legacy runs
    github.add_status(REPO, head, "ci/legacy", "success", "Passed")
    done = verdict(await host(github).read_pull_request(REPO, number))
    assert done.readiness is Readiness.READY
    assert "not required failed: lint" in done.reason


async def test_a_check_still_running_reads_as_pending_until_it_ends(github: FakeGitHub) -> None:
    github.script_ci(REPO, [[ScriptedCheck("tests", "failure", "2 failed", reads=2)]])
    number = github.open_or_push(REPO, "feature-y")
    pulls = host(github)
    states = [verdict(await pulls.read_pull_request(REPO, number)).readiness for _ in range(3)]
    assert states == [Readiness.PENDING, Readiness.PENDING, Readiness.FAILING]


async def test_an_unprotected_branch_counts_every_check(github: FakeGitHub) -> None:
    number = github.open_or_push(REPO, "feature-z")
    github.add_check_run(REPO, github.head_of(REPO, number), "lint", "failure")
    found = await host(github).read_pull_request(REPO, number)
    assert found.required is None
    assert verdict(found).readiness is Readiness.FAILING


async def test_a_merged_pull_request_reads_as_merged(github: FakeGitHub) -> None:
    number = github.open_or_push(REPO, "feature-m")
    assert github.merge_pull(REPO, number)
    found = verdict(await host(github).read_pull_request(REPO, number))
    assert found.readiness is Readiness.MERGED


async def test_a_missing_pull_request_is_a_plain_error(github: FakeGitHub) -> None:
    with pytest.raises(RepositoryError, match="HTTP 404") as raised:
        await host(github).read_pull_request(REPO, 404)
    assert not raised.value.transient
    github.fail_next(1, 503)
    with pytest.raises(RepositoryError) as failed:
        await host(github).read_pull_request(REPO, 7)
    assert failed.value.transient
