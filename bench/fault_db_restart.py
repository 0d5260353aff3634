"""Fault test, big version: the database restarts while webhooks stream in.

`orchestrator serve --no-worker` on a private PostgreSQL takes a stream of signed `/help`
comments (default 1,000 from 8 concurrent senders); a few seconds in, the database is
stopped (`pg_ctl stop -m immediate`, a crash) for `--down-for` seconds and started again.
A delivery answered 503 is sent again until it gets a 2xx, as GitHub's redelivery would.
The probes are polled throughout. Then a worker drains the queue and every comment must
have exactly one reply on the (fake) GitHub: nothing lost, nothing doubled.

    uv run python bench/fault_db_restart.py [--deliveries 1000] [--down-for 5]

Runs on an embedded PostgreSQL (pgserver) of its own, which it may stop. The scenario
itself is `tests/test_faults.py`'s, which runs it at 150 deliveries in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from project_orchestrator.db.migrations import upgrade_to_head
from tests.support.fake_github import FakeGitHub
from tests.support.fake_http import FakeServer
from tests.support.faults import (
    add_threads,
    check_exactly_once,
    db_restart_scenario,
    drain_in_process,
    help_stream,
)
from tests.support.postgres import RestartablePostgres


async def run(args: argparse.Namespace, pg: RestartablePostgres) -> bool:
    repos = [f"acme/repo-{n}" for n in range(args.repos)]
    distinct, stream = help_stream(args.deliveries, 0, repos, random.Random(args.seed))
    workdir = Path(tempfile.mkdtemp(prefix="bench-fault-db-"))
    figures = await db_restart_scenario(
        workdir,
        pg,
        stream,
        concurrency=args.senders,
        pace=args.pace,
        down_after=args.down_after,
        down_for=args.down_for,
    )
    github = FakeGitHub()
    add_threads(github, repos)
    with FakeServer(github.app) as server:
        github.base_url = server.url  # type: ignore[attr-defined]
        await drain_in_process(workdir, pg.url, github, limit_seconds=args.limit)
        verdict = await check_exactly_once(pg.url, github, distinct, repos)
    sent = figures.stream
    print(
        f"deliveries {sent.deliveries} from {args.senders} senders; database down "
        f"{figures.down_seconds:.1f} s (stop to accepting again), {args.down_after:.1f} s in"
    )
    print(
        f"answers: 202 {sent.answers[202]}, 200 {sent.answers[200]}, 503 {sent.answers[503]}, "
        f"other {sum(n for s, n in sent.answers.items() if s not in (200, 202, 503))}, "
        f"no answer {sent.transport_errors}"
    )
    print(
        f"resent {sent.resent} deliveries ({sent.requests - sent.deliveries} extra requests); "
        f"ended 2xx {sent.accepted}/{sent.deliveries}; stream took {sent.elapsed:.1f} s"
    )
    print(
        f"probes: first 503 {figures.detect_seconds:.2f} s after the stop, "
        f"{figures.probe_failures} answers 503 in all; both 200 again "
        f"{figures.recovery_seconds:.2f} s after the database was back"
    )
    print(
        f"same API process throughout: {figures.api_survived}; "
        f"its exit code on SIGTERM afterwards: {figures.api_exit_code}"
    )
    print(
        f"stored {verdict.stored} ({verdict.stored_distinct} distinct), replies "
        f"{verdict.replies}, lost={len(verdict.lost)} doubled={len(verdict.doubled)}"
    )
    if not sent.answers[503]:
        print("the stream ended before the outage: use more --deliveries or --down-after less")
    if not verdict.ok:
        print("NOT EXACTLY ONCE: " + verdict.describe())
    return verdict.ok and sent.accepted == sent.deliveries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--pace", type=float, default=0.02, help="pause per sender, seconds")
    parser.add_argument("--down-after", type=float, default=2.0)
    parser.add_argument("--down-for", type=float, default=5.0)
    parser.add_argument("--limit", type=float, default=600, help="drain limit, seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    pg = RestartablePostgres()
    try:
        upgrade_to_head(pg.url)
        ok = asyncio.run(run(args, pg))
    finally:
        # pgserver's cleanup stops only the server it started, not the one started again.
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop()
        pg.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
