"""The webhook rate limit counted in Redis, under concurrent requests in one process.

Needs the Redis at 127.0.0.1:6379 that the machine (and CI) runs; skipped without it.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from limits import parse

from project_orchestrator.ingress.rate_limit import SYNC_SECONDS, SharedWindows

URI = "redis://127.0.0.1:6379/0"


async def redis_or_skip() -> None:
    import redis.asyncio

    probe = redis.asyncio.from_url(URI, socket_connect_timeout=1)
    try:
        await probe.ping()
    except (OSError, redis.exceptions.ConnectionError):
        pytest.skip("no Redis on 127.0.0.1:6379")
    finally:
        await probe.aclose()


def own_address() -> str:
    """An address of this run's own, so counts of other runs in the same minute stay apart."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


async def test_concurrent_requests_are_each_counted_once_across_syncs() -> None:
    """Sixteen requests handled in one turn of the loop, over several sync periods: a
    request that finds a sync due while another's is only scheduled must not start a
    second one (two syncs of one count subtract what they added twice, the count runs
    negative and then to overflow, and every later request is refused)."""
    await redis_or_skip()
    windows = SharedWindows(parse("1000000/minute"), URI)
    client = own_address()
    checked = refused = 0
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + 6 * SYNC_SECONDS
        while loop.time() < until:
            decisions = await asyncio.gather(
                *(windows.check("/webhooks/github", client) for _ in range(16))
            )
            checked += len(decisions)
            refused += sum(1 for d in decisions if not d.allowed)
            await asyncio.sleep(0.005)
        key = windows._key("/webhooks/github", client)
    finally:
        await windows.aclose()
    import redis.asyncio

    reader = redis.asyncio.from_url(URI)
    try:
        stored = int(await reader.get(key) or 0)
        await reader.delete(key)
    finally:
        await reader.aclose()
    assert refused == 0
    assert stored == checked


async def test_the_limit_holds_under_concurrent_requests() -> None:
    await redis_or_skip()
    windows = SharedWindows(parse("40/minute"), URI)
    client = own_address()
    try:
        allowed = 0
        for _ in range(10):
            decisions = await asyncio.gather(
                *(windows.check("/webhooks/github", client) for _ in range(16))
            )
            allowed += sum(1 for d in decisions if d.allowed)
            await asyncio.sleep(SYNC_SECONDS / 2)
    finally:
        await windows.aclose()
    assert allowed == 40
