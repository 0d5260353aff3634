"""Per-client rate limits on the webhook routes.

Fixed windows per client address: counted in this process (`RATE_LIMIT_STORAGE_URI`
`memory://`) or in Redis, shared by every instance (`redis://...`). The routes ask after
the IP filter, as CONTRACT.md orders, so addresses it refuses are never counted. slowapi's
`Limiter` (the `limits` storages) still counts the API's failed authentications, which
are rare; the webhook path has counters of its own, built for its rate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from slowapi import Limiter

from project_orchestrator.config import Settings
from project_orchestrator.logging import get_logger

log = get_logger(__name__)


def build_limiter(settings: Settings) -> Limiter:
    return Limiter(
        key_func=lambda: "unused",  # keys come from the IP filter, see WebhookRateLimit
        storage_uri=settings.rate_limit_storage_uri,
        strategy="fixed-window",
        key_prefix="orchestrator",
    )


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The answer's header lines about the limit."""
        headers = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after_seconds).encode()))
        return headers


class LocalWindows:
    """Fixed windows counted in this process (RATE_LIMIT_STORAGE_URI=memory://).

    The `limits` memory storage expires its counters from a timer thread it starts anew
    every 10 ms: on the webhook path that thread churn cost more than the counting.
    Here a window is a dict, dropped whole when the next window starts.
    """

    def __init__(self, item: RateLimitItem) -> None:
        self.item = item
        self.seconds = item.get_expiry()
        self.window_start = 0.0
        self.counts: dict[str, int] = {}

    def check(self, route: str, client: str) -> RateDecision:
        now = time.time()
        start = now - now % self.seconds
        if start != self.window_start:
            self.window_start = start
            self.counts = {}
        key = route + "\0" + client
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        amount = self.item.amount
        retry_after = max(1, math.ceil(start + self.seconds - now))
        return RateDecision(count <= amount, amount, max(0, amount - count), retry_after)


# How stale an instance's view of the other instances' counts may get.
SYNC_SECONDS = 0.1


@dataclass
class _SharedCount:
    known: int = 0  # the shared count at the last sync (ours included)
    pending: int = 0  # counted here since, not yet added to the shared count
    synced_at: float = 0.0
    syncing: bool = False


class SharedWindows:
    """Fixed windows counted in Redis, shared by every instance (RATE_LIMIT_STORAGE_URI).

    A round trip per request would cost more than storing the delivery, so each instance
    counts locally and adds its count to Redis at most every SYNC_SECONDS, learning the
    others' counts in the same round trip (INCRBY returns the sum). A client's first
    request in a window waits for that sync, so a new instance starts from the shared
    count; after that a decision is never older than SYNC_SECONDS. Across instances a
    client can exceed its limit by what the others accepted from it in that time.
    """

    def __init__(self, item: RateLimitItem, uri: str) -> None:
        import redis.asyncio

        self.item = item
        self.seconds = item.get_expiry()
        self.client = redis.asyncio.from_url(uri, socket_timeout=1, socket_connect_timeout=1)
        self.window_start = 0.0
        self.counts: dict[str, _SharedCount] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures_logged_at = 0.0

    def _key(self, route: str, client: str) -> str:
        return f"orchestrator:webhooks:{route}:{client}:{int(self.window_start)}"

    async def check(self, route: str, client: str) -> RateDecision:
        now = time.time()
        start = now - now % self.seconds
        if start != self.window_start:
            self.window_start = start
            self.counts = {}
        local = route + "\0" + client
        count = self.counts.get(local)
        if count is None:
            count = self.counts[local] = _SharedCount(pending=1)
            await self._sync(self._key(route, client), count)
        else:
            count.pending += 1
            if not count.syncing and now - count.synced_at >= SYNC_SECONDS:
                task = asyncio.create_task(self._sync(self._key(route, client), count))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        seen = count.known + count.pending
        amount = self.item.amount
        retry_after = max(1, math.ceil(start + self.seconds - now))
        return RateDecision(seen <= amount, amount, max(0, amount - seen), retry_after)

    def _sync(self, key: str, count: _SharedCount) -> Coroutine[Any, Any, None]:
        """Mark `count` as syncing at once, then give the round trip that shares it.

        Not a coroutine itself: the mark is set when the sync is asked for, not when a task
        gets round to it, so requests handled in the same turn of the loop never start a
        second sync of one count (each would subtract what it added, and the count would
        run negative).
        """
        count.syncing = True
        return self._share(key, count)

    async def _share(self, key: str, count: _SharedCount) -> None:
        """Add what was counted here to the shared count, and learn the shared count."""
        adding = count.pending
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.incrby(key, adding)
                pipe.expire(key, self.seconds + 1)
                total, _ = await pipe.execute()
        except Exception as exc:
            # A rate-limit store that is down must not take webhook intake down with it:
            # the count stays local until it is back.
            now = time.monotonic()
            if now - self._failures_logged_at >= 10:
                self._failures_logged_at = now
                log.warning("rate_limit.storage_failed", error=type(exc).__name__)
        else:
            count.pending -= adding
            count.known = int(total)
        finally:
            count.synced_at = time.time()
            count.syncing = False

    async def aclose(self) -> None:
        """Hand the counts not yet shared over, then close."""
        for task in list(self._tasks):
            await task
        for local, count in list(self.counts.items()):
            if count.pending:
                route, client = local.split("\0", 1)
                await self._sync(self._key(route, client), count)
        await self.client.aclose()


@dataclass(frozen=True)
class WebhookRateLimit:
    counter: LocalWindows | SharedWindows

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookRateLimit:
        item = parse(settings.default_rate_limit)
        uri = settings.rate_limit_storage_uri
        if uri == "memory://":
            return cls(LocalWindows(item))
        if uri.startswith(("redis://", "rediss://", "unix://")):
            return cls(SharedWindows(item, uri))
        raise ValueError("RATE_LIMIT_STORAGE_URI must be memory:// or a redis:// URL")

    async def check(self, route: str, client: str) -> RateDecision:
        if isinstance(self.counter, LocalWindows):
            return self.counter.check(route, client)
        return await self.counter.check(route, client)

    async def aclose(self) -> None:
        if isinstance(self.counter, SharedWindows):
            await self.counter.aclose()
