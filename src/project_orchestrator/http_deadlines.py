"""uvicorn's httptools protocol with read deadlines and a cap on open connections.

Stock uvicorn waits for a request's headers and body as long as the client likes (its
keep-alive timer only covers the silence after a response, and the first byte of the next
request cancels it), and accepts every connection it is offered. A client sending nothing,
or a byte a second, would hold a connection (a file descriptor, which the database pool
needs too) for ever. Here:

- headers must be complete HEADER_TIMEOUT_SECONDS after the connection was made or the
  previous response was finished;
- the body must be complete BODY_TIMEOUT_SECONDS after its headers;
- past MAX_OPEN_CONNECTIONS a new connection is closed as soon as it is accepted.

A connection that misses a deadline is closed. If its request's app is still waiting for
the body, the app receives `http.disconnect` (the request log says 499); whatever it
answers then goes nowhere. A request that was read in full is never timed: how long the
app takes is not the client's doing.

Cost on the hot path: a deadline is a time stamp; one timer handle per connection checks
it, and is rescheduled only when it fires before the deadline now due (at most once per
deadline period on a busy keep-alive connection). Setting a deadline costs a clock read,
meeting one an attribute write: no timer is created or cancelled per request (that would
cost ~2 us each on uvloop). A body that arrives with its headers never starts the body
deadline; one that takes longer pays a check per chunk.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from project_orchestrator.logging import get_logger

log = get_logger("project_orchestrator.http")

HEADER_TIMEOUT_SECONDS = 15.0
# GitHub allows a delivery 10 s in all and sends from its data centres; a body still
# arriving after 15 s is not a webhook. It must stay below the drain timeout, so that a
# stalled body cannot hold up a shutdown.
BODY_TIMEOUT_SECONDS = 15.0
# From this many open connections (idle keep-alive ones and the asking one included) or
# requests in flight, uvicorn answers a new request 503 "Service Unavailable" with
# `Connection: close`. Telegram delivers on up to 40 connections per bot by default (100
# at most), GitHub in bursts, the ingress benchmark on 64. Requests past the database
# pool (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW, 15 by default) only wait for a
# connection, so more in flight would not be served sooner, only answered later than
# GitHub's 10 s.
LIMIT_CONCURRENCY = 256
# Past this many, a connection is closed unanswered the moment it is accepted, before it
# costs more than a file descriptor for a moment: slow clients cannot use up the process's
# descriptors (soft limit often 1024) that the database pool and logs need.
MAX_OPEN_CONNECTIONS = 2 * LIMIT_CONCURRENCY
# Handshakes the kernel completes and holds while the loop is busy (net.core.somaxconn
# caps it). At the measured ingress rate (~2,600 requests/s) that is under half a
# second's work; past it the kernel drops new handshakes and clients retry theirs, which
# beats queueing them for longer than a sender waits (GitHub: 10 s).
BACKLOG = 1024
# A flood of refused connections is logged once per this many seconds, with the count.
_REFUSAL_LOG_INTERVAL_SECONDS = 10.0


class _Refusals:
    """Counts connections refused for the cap; logs them at most once per interval."""

    last_logged = 0.0
    since_logged = 0

    @classmethod
    def note(cls, open_connections: int) -> None:
        cls.since_logged += 1
        now = time.monotonic()
        if now - cls.last_logged >= _REFUSAL_LOG_INTERVAL_SECONDS:
            log.warning(
                "http.connection_refused",
                reason="too many open connections",
                open_connections=open_connections,
                refused=cls.since_logged,
            )
            cls.last_logged = now
            cls.since_logged = 0


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """Pass as `uvicorn.Config(http=...)`; the deadlines can be set on a subclass."""

    header_timeout: float = HEADER_TIMEOUT_SECONDS
    body_timeout: float = BODY_TIMEOUT_SECONDS
    max_open_connections: int = MAX_OPEN_CONNECTIONS

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._due: float | None = None  # loop time the running deadline passes at
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._reading_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_open_connections:
            _Refusals.note(len(self.connections))
            transport.close()
            return
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Headers complete and the body still to come: its deadline starts now. Set here
        # rather than in on_headers_complete so that a body arriving with its headers (the
        # usual case) never sets one.
        if self._reading_body and self._due is None and not self.transport.is_closing():
            self._arm(self.body_timeout)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._reading_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's headers are due from now, unless this one's body is still
        # arriving (answered early: its body deadline runs on) or a pipelined request
        # is being served.
        if (
            not self._reading_body
            and self._due is None
            and self.cycle.response_complete
            and not self.transport.is_closing()
        ):
            self._arm(self.header_timeout)

    def handle_websocket_upgrade(self) -> None:
        # The connection is the websocket protocol's from here on (`serve` turns
        # websockets off; this is for whoever turns them on).
        self._reading_body = False
        self._disarm()
        super().handle_websocket_upgrade()

    def abandon(self) -> None:
        """The drain gave up on this connection: its request, about to be cancelled,
        answers nobody (uvicorn would answer it 500) and the client sees a close."""
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.close()

    def _arm(self, seconds: float) -> None:
        due = self.loop.time() + seconds
        self._due = due
        if self._timer is None or self._timer_when > due:
            if self._timer is not None:
                self._timer.cancel()
            self._schedule(due)

    def _disarm(self) -> None:
        self._due = None  # the pending timer, if any, finds nothing to do

    def _schedule(self, when: float) -> None:
        self._timer_when = when
        self._timer = self.loop.call_at(when, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        due = self._due
        if due is None or self.transport.is_closing():
            return
        if due > self.loop.time():  # met since, and a later one set
            self._schedule(due)
            return
        self._due = None
        # A silent or half-sent request head is what idle sockets and scanners leave;
        # a body cut off is a request lost, which operators should see.
        emit = log.info if self._reading_body else log.debug
        emit(
            "http.client_too_slow",
            waiting_for="body" if self._reading_body else "headers",
            ip=self.client[0] if self.client else None,
        )
        self.transport.close()
