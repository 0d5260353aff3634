"""A circuit breaker: stop calling a dependency that keeps failing, probe it now and then.

Pure state and a clock, no I/O, so the gateway decides what to log and tests drive time.
Meant for one event loop (no lock): every method runs to completion without awaiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """closed → open after `failure_threshold` consecutive failures; open → half-open once
    `reset_after_seconds` have passed, when one trial call may go through; its success
    closes the breaker, its failure opens it for another `reset_after_seconds`."""

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_after_seconds < 0:
            raise ValueError("reset_after_seconds must not be negative")
        self.failure_threshold = failure_threshold
        self.reset_after_seconds = reset_after_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_started_at: float | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after_seconds:
            return "half_open"
        return "open"

    @property
    def opened_at(self) -> float | None:
        """Clock reading when the breaker (last) opened; None while closed."""
        return self._opened_at

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May a call go out now? In half-open state this admits a single trial call."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self._clock()
        # A trial that never reports back (its task was cancelled) must not wedge the
        # breaker half-open forever: after another full wait, admit a new trial.
        if (
            self._trial_started_at is not None
            and now - self._trial_started_at < self.reset_after_seconds
        ):
            return False
        self._trial_started_at = now
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_started_at = None

    def record_failure(self) -> None:
        self._failures += 1
        state = self.state
        # A failed trial reopens at once. While open, a late failure of a call sent before
        # it opened changes nothing, so stragglers do not stretch the wait.
        tripped = state == "closed" and self._failures >= self.failure_threshold
        if tripped or state == "half_open":
            self._reopen()

    def _reopen(self) -> None:
        self._opened_at = self._clock()
        self._trial_started_at = None
