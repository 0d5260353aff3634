"""Fault test, big version: workers SIGKILLed again and again during a stream of events.

A stream of signed `/help` comments (default 1,000, plus 10% delivered twice, over about
a minute) arrives through the webhook route while three `orchestrator worker` processes
take the jobs. Every 0.5 to 1 s (or as soon as one qualifies: working for 0.3 s while
another works too) the worker that has been working the longest is SIGKILLed and another
started, until the stream is over and the queue is idle. Then every comment must have
exactly one reply on the (fake) GitHub, every delivery be stored once and every event be
handled.

    uv run python bench/fault_worker_kills.py [--events 1000] [--database-url URL]

Needs a PostgreSQL it may create a database on (default: the local server on
127.0.0.1:5432, user postgres, else an embedded one). The scenario itself is
`tests/test_faults.py`'s, which runs it at 200 events in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from project_orchestrator.db.migrations import upgrade_to_head
from tests.support import postgres
from tests.support.fake_github import FakeGitHub
from tests.support.fake_http import FakeServer
from tests.support.faults import add_threads, check_exactly_once, help_stream, worker_kill_scenario


async def run(args: argparse.Namespace, database_url: str) -> bool:
    repos = [f"acme/repo-{n}" for n in range(args.repos)]
    duplicates = args.events * args.duplicate_percent // 100
    rng = random.Random(args.seed)
    distinct, stream = help_stream(args.events, duplicates, repos, rng)
    github = FakeGitHub()
    add_threads(github, repos)
    # GitHub has the comment a moment before the worker hears back: kills land in between.
    github.post_delay_seconds = args.post_delay
    workdir = Path(tempfile.mkdtemp(prefix="bench-fault-kills-"))
    with FakeServer(github.app) as server:
        figures = await worker_kill_scenario(
            workdir,
            database_url,
            server.url,
            stream,
            rng=rng,
            fleet_size=args.workers,
            concurrency=args.senders,
            pace=args.pace,
            limit_seconds=args.limit,
        )
        verdict = await check_exactly_once(database_url, github, distinct, repos)
    sent = figures.stream
    print(f"events {args.events}, duplicates {duplicates}, repositories {args.repos}")
    print(
        f"deliveries {sent.deliveries}: 202 {sent.final[202]}, 200 (duplicate) "
        f"{sent.final[200]}, other {len(sent.refused)}; stream took {sent.elapsed:.1f} s"
    )
    print(
        f"workers: {args.workers} at a time, {figures.workers_started} started, "
        f"{figures.kills} SIGKILLed ({figures.kills_during_stream} while the stream ran)"
    )
    print(
        f"stored {verdict.stored} events ({verdict.stored_distinct} distinct), "
        f"statuses {verdict.events}"
    )
    print(
        f"replies {verdict.replies}, doubled={len(verdict.doubled)} lost={len(verdict.lost)}, "
        f"jobs left {verdict.jobs or 0}; {verdict.replies_retried} replies were interrupted "
        "by a kill and completed by another worker (marker looked up, not posted twice)"
    )
    print(f"elapsed {figures.elapsed:.1f} s (first delivery to queue idle, workers included)")
    if not verdict.ok:
        print("NOT EXACTLY ONCE: " + verdict.describe())
    return verdict.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL server")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--duplicate-percent", type=int, default=10)
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--workers", type=int, default=3, help="worker processes at a time")
    parser.add_argument("--senders", type=int, default=4, help="concurrent deliveries")
    parser.add_argument("--pace", type=float, default=0.2, help="pause per sender, seconds")
    parser.add_argument("--post-delay", type=float, default=0.02)
    parser.add_argument("--limit", type=float, default=1200, help="give up after, seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    admin = args.database_url or postgres.admin_url()
    database_url = postgres.create_database(admin, prefix="bench_fault_kills")
    try:
        upgrade_to_head(database_url)
        ok = asyncio.run(run(args, database_url))
    finally:
        postgres.drop_database(admin, database_url)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
