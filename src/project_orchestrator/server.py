"""uvicorn server that drains on SIGTERM/SIGINT and then returns normally."""

from __future__ import annotations

import asyncio
import signal
from types import FrameType

import uvicorn


class GracefulServer(uvicorn.Server):
    """Stock uvicorn re-raises the signal after draining, which would kill the process
    before our own shutdown (the embedded database, the worker) runs, and exit non-zero.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C means "now"
        else:
            self.should_exit = True

    async def _wait_tasks_to_complete(self) -> None:
        # uvicorn's drain step (private: uv.lock fixes the version, and
        # tests/test_slow_clients.py fails if it changes). On timeout_graceful_shutdown it
        # is cancelled, then uvicorn cancels the requests still running and answers 500
        # to each one that had not started its response.
        try:
            await super()._wait_tasks_to_complete()
        except asyncio.CancelledError:
            # Those clients get their connection closed instead: a request cut short by a
            # shutdown was not refused by a bug, and a 500 would say it was.
            for connection in list(self.server_state.connections):
                abandon = getattr(connection, "abandon", None)
                if abandon is not None:
                    abandon()
            raise
