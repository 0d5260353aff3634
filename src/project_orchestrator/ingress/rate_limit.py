"""Per-client rate limits on the webhook routes.

Fixed windows per client address: counted in this process (`RATE_LIMIT_STORAGE_URI`
`memory://`) or in Redis, shared by every instance (`redis://...`). The routes ask after
the IP filter, as CONTRACT.md orders, so addresses it refuses are never counted. slowapi's
`Limiter` (the `limits` storages) still counts the API's failed authentications, which
are rare; the webhook path has counters of its own, built for its rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

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


class SharedWindows:
    """Fixed windows counted in Redis, shared by every instance (RATE_LIMIT_STORAGE_URI).

    One round trip per request, awaited rather than blocking the event loop (the `limits`
    Redis storage makes three, synchronously): INCR on the window's own key and an
    EXPIRE that lets it go once the window is over.
    """

    def __init__(self, item: RateLimitItem, uri: str) -> None:
        import redis.asyncio

        self.item = item
        self.seconds = item.get_expiry()
        self.client = redis.asyncio.from_url(uri, socket_timeout=1, socket_connect_timeout=1)

    async def check(self, route: str, client: str) -> RateDecision:
        now = time.time()
        start = now - now % self.seconds
        key = f"orchestrator:webhooks:{route}:{client}:{int(start)}"
        amount = self.item.amount
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, self.seconds + 1)
                count, _ = await pipe.execute()
        except Exception as exc:
            # A rate-limit store that is down must not take webhook intake down with it.
            log.warning("rate_limit.storage_failed", error=type(exc).__name__)
            return RateDecision(True, amount, amount, 0)
        retry_after = max(1, math.ceil(start + self.seconds - now))
        return RateDecision(int(count) <= amount, amount, max(0, amount - int(count)), retry_after)

    async def aclose(self) -> None:
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
