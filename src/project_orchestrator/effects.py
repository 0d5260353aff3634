"""Effects that report a change (an audit line, a metric count) wait for its commit.

A unit of work (`Database.session_scope`) opens a collection; `after_commit(effect)` adds
to the innermost one open in this task, and the collection runs once its transaction has
committed, or is dropped with a rollback. With no unit of work open, the effect happens
at once: nothing is pending that it could misreport.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from project_orchestrator.logging import get_logger

log = get_logger(__name__)

Effect = Callable[[], object]

_pending: ContextVar[list[Effect] | None] = ContextVar("effects_after_commit", default=None)


def after_commit(effect: Effect) -> None:
    """Run `effect` once the unit of work in progress commits; at once outside of one."""
    pending = _pending.get()
    if pending is None:
        effect()
    else:
        pending.append(effect)


@contextmanager
def collecting() -> Iterator[list[Effect]]:
    """A new collection for one unit of work; the caller runs it after its commit."""
    effects: list[Effect] = []
    token = _pending.set(effects)
    try:
        yield effects
    finally:
        _pending.reset(token)


def run(effects: list[Effect]) -> None:
    """Run what a committed unit of work collected. One failing effect (a full disk for
    the audit log) does not keep the others from happening."""
    for effect in effects:
        try:
            effect()
        except Exception:
            log.exception("effects.failed")
