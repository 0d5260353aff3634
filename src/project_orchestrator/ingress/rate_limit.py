"""Per-client rate limits on the webhook routes.

slowapi's `Limiter` owns the storage (`RATE_LIMIT_STORAGE_URI`: memory, or Redis shared
by every instance) and the strategy. The webhook routes call it directly rather than
through its decorator, because CONTRACT.md puts the IP filter first and the decorator
would count requests from addresses the filter is about to refuse.
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


@dataclass(frozen=True)
class WebhookRateLimit:
    limiter: Limiter
    item: RateLimitItem
    local: LocalWindows | None = None  # set when the counts live in this process

    @classmethod
    def from_settings(cls, limiter: Limiter, settings: Settings) -> WebhookRateLimit:
        item = parse(settings.default_rate_limit)
        local = LocalWindows(item) if settings.rate_limit_storage_uri == "memory://" else None
        return cls(limiter=limiter, item=item, local=local)

    def check(self, route: str, client: str) -> RateDecision:
        if self.local is not None:
            return self.local.check(route, client)
        strategy = self.limiter.limiter
        try:
            allowed = strategy.hit(self.item, route, client)
            stats = strategy.get_window_stats(self.item, route, client)
        except Exception as exc:
            # A rate-limit store that is down must not take webhook intake down with it.
            log.warning("rate_limit.storage_failed", error=type(exc).__name__)
            return RateDecision(True, self.item.amount, self.item.amount, 0)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return RateDecision(allowed, self.item.amount, stats.remaining, retry_after)
