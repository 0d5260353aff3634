"""The Redis the machine (and CI) runs at 127.0.0.1:6379, for the shared rate limit's tests."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis.asyncio

URI = "redis://127.0.0.1:6379/0"


async def require_redis() -> None:
    """Skip the test where no Redis answers."""
    probe = redis.asyncio.from_url(URI, socket_connect_timeout=1)
    try:
        await probe.ping()
    except (OSError, redis.exceptions.ConnectionError):
        pytest.skip("no Redis on 127.0.0.1:6379")
    finally:
        await probe.aclose()


def own_address() -> str:
    """A client address of this run's own: counts of other runs in the same window stay
    apart, as Redis keeps them for the whole window."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


async def clear_of_a_window_edge(needed_seconds: float, window_seconds: int = 60) -> None:
    """Wait, if need be, so that the next `needed_seconds` fall in one fixed window: a
    count that a new window restarts halfway through would fail the test, not the code."""
    left = window_seconds - time.time() % window_seconds
    if left < needed_seconds:
        await asyncio.sleep(left + 0.05)


async def stored_count(route: str, client: str) -> int:
    """What Redis holds for one client on one route, over every window, and clear it."""
    reader = redis.asyncio.from_url(URI)
    try:
        keys = [key async for key in reader.scan_iter(f"orchestrator:webhooks:{route}:{client}:*")]
        total = sum(int(value or 0) for value in await reader.mget(keys)) if keys else 0
        if keys:
            await reader.delete(*keys)
        return total
    finally:
        await reader.aclose()
