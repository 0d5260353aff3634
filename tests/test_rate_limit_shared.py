"""The webhook rate limit counted in Redis, under concurrent requests in one process.

Needs the Redis at 127.0.0.1:6379 that the machine (and CI) runs; skipped without it.
"""

from __future__ import annotations

import asyncio

from limits import parse

from project_orchestrator.ingress.rate_limit import SYNC_SECONDS, SharedWindows
from tests.support.redis_server import (
    URI,
    clear_of_a_window_edge,
    own_address,
    require_redis,
    stored_count,
)

ROUTE = "/webhooks/github"


async def test_concurrent_requests_are_each_counted_once_across_syncs() -> None:
    """Sixteen requests handled in one turn of the loop, over several sync periods: a
    request that finds a sync due while another's is only scheduled must not start a
    second one (two syncs of one count subtract what they added twice, the count runs
    negative and then to overflow, and every later request is refused)."""
    await require_redis()
    windows = SharedWindows(parse("1000000/minute"), URI)
    client = own_address()
    checked = refused = 0
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + 6 * SYNC_SECONDS
        while loop.time() < until:
            decisions = await asyncio.gather(*(windows.check(ROUTE, client) for _ in range(16)))
            checked += len(decisions)
            refused += sum(1 for d in decisions if not d.allowed)
            await asyncio.sleep(0.005)
    finally:
        await windows.aclose()
    assert refused == 0
    assert await stored_count(ROUTE, client) == checked


async def test_the_limit_holds_under_concurrent_requests() -> None:
    await require_redis()
    await clear_of_a_window_edge(2.0)
    windows = SharedWindows(parse("40/minute"), URI)
    client = own_address()
    try:
        allowed = 0
        for _ in range(10):
            decisions = await asyncio.gather(*(windows.check(ROUTE, client) for _ in range(16)))
            allowed += sum(1 for d in decisions if d.allowed)
            await asyncio.sleep(SYNC_SECONDS / 2)
    finally:
        await windows.aclose()
    assert allowed == 40
    assert await stored_count(ROUTE, client) == 160
