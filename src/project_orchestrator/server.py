"""uvicorn server that drains on SIGTERM/SIGINT and then returns normally."""

from __future__ import annotations

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
