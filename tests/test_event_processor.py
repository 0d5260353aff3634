"""Event processing: one at a time per repository, idempotent, failures counted."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.db.engine import Database
from project_orchestrator.events.models import EventSource, EventStatus, InboundEvent
from project_orchestrator.events.processor import MAX_ATTEMPTS, EventNotFound, EventProcessor


@dataclass
class SlowHandler:
    """Records when each event was being handled, to see overlaps."""

    intervals: dict[int, tuple[float, float]] = field(default_factory=dict)
    calls: int = 0

    async def handle(self, session: AsyncSession, event: InboundEvent) -> EventStatus:
        self.calls += 1
        started = time.monotonic()
        await asyncio.sleep(0.2)
        self.intervals[event.id] = (started, time.monotonic())
        return EventStatus.HANDLED


async def _event(db: Database, key: str, external_id: str) -> int:
    async with db.session_scope() as session:
        event = InboundEvent(
            source=EventSource.GITHUB,
            external_id=external_id,
            event_type="issue_comment",
            serial_key=key,
            headers={},
            payload={},
        )
        session.add(event)
        await session.flush()
        return event.id


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


async def test_same_repository_never_runs_concurrently(db: Database) -> None:
    handler = SlowHandler()
    processor = EventProcessor(db, {EventSource.GITHUB: handler})
    same_a = await _event(db, "github:acme/one", "d1")
    same_b = await _event(db, "github:acme/one", "d2")
    other = await _event(db, "github:acme/two", "d3")

    await asyncio.gather(
        processor.process(same_a), processor.process(same_b), processor.process(other)
    )
    assert not _overlap(handler.intervals[same_a], handler.intervals[same_b])
    # Different repositories do run in parallel.
    assert _overlap(handler.intervals[same_a], handler.intervals[other]) or _overlap(
        handler.intervals[same_b], handler.intervals[other]
    )


async def test_a_handled_event_is_not_handled_again(db: Database) -> None:
    handler = SlowHandler()
    processor = EventProcessor(db, {EventSource.GITHUB: handler})
    event_id = await _event(db, "github:acme/one", "d1")
    results = await asyncio.gather(processor.process(event_id), processor.process(event_id))
    assert results == [EventStatus.HANDLED, EventStatus.HANDLED]
    assert handler.calls == 1


async def test_unknown_sources_are_stored_and_ignored(db: Database) -> None:
    processor = EventProcessor(db, {})
    event_id = await _event(db, "github:acme/one", "d1")
    assert await processor.process(event_id) is EventStatus.IGNORED
    with pytest.raises(EventNotFound):
        await processor.process(987654)


async def test_failures_are_counted_until_the_event_is_marked_failed(db: Database) -> None:
    processor = EventProcessor(db, {})
    event_id = await _event(db, "github:acme/one", "d1")
    outcomes = [
        await processor.record_failure(event_id, RuntimeError(f"boom {n}"))
        for n in range(MAX_ATTEMPTS)
    ]
    assert outcomes == [False] * (MAX_ATTEMPTS - 1) + [True]
    async with db.session_scope() as session:
        event = await session.get(InboundEvent, event_id)
        assert event is not None
        assert event.status is EventStatus.FAILED
        assert event.attempts == MAX_ATTEMPTS
        assert event.last_error == f"RuntimeError: boom {MAX_ATTEMPTS - 1}"


async def test_a_recorded_failure_carries_no_secret(db: Database) -> None:
    """The error text is shown by the events API and CLI, so it is stored redacted."""
    from project_orchestrator.logging import set_known_secrets

    secret = "ghp_" + "s3cr3t" * 6
    set_known_secrets([secret])
    try:
        processor = EventProcessor(db, {})
        event_id = await _event(db, "github:acme/one", "d1")
        error = RuntimeError(f"GET https://x-access-token:{secret}@github.example/ failed")
        await processor.record_failure(event_id, error)
    finally:
        set_known_secrets(())
    async with db.session_scope() as session:
        event = await session.get(InboundEvent, event_id)
    assert event is not None
    assert event.last_error is not None
    assert secret not in event.last_error
    assert event.last_error.startswith("RuntimeError: GET https://x-access-token:")


@dataclass
class OrderRecorder:
    seen: list[int] = field(default_factory=list)
    failing: set[int] = field(default_factory=set)

    async def handle(self, session: AsyncSession, event: InboundEvent) -> EventStatus:
        if event.id in self.failing:
            raise RuntimeError("not now")
        self.seen.append(event.id)
        return EventStatus.HANDLED


async def test_a_repositorys_events_are_handled_in_arrival_order(db: Database) -> None:
    handler = OrderRecorder()
    processor = EventProcessor(db, {EventSource.GITHUB: handler})
    first = await _event(db, "github:acme/one", "d1")
    other_repo = await _event(db, "github:acme/two", "d2")
    second = await _event(db, "github:acme/one", "d3")

    # The later event's job runs first: the earlier one is handled before it.
    assert await processor.process(second) is EventStatus.HANDLED
    assert handler.seen == [first, second]
    # Its own job then finds it done; another repository was not touched.
    assert await processor.process(first) is EventStatus.HANDLED
    assert handler.seen == [first, second]
    await processor.process(other_repo)
    assert handler.seen == [first, second, other_repo]


async def test_an_earlier_failure_does_not_block_later_events(db: Database) -> None:
    handler = OrderRecorder()
    processor = EventProcessor(db, {EventSource.GITHUB: handler})
    first = await _event(db, "github:acme/one", "d1")
    second = await _event(db, "github:acme/one", "d2")
    handler.failing.add(first)

    assert await processor.process(second) is EventStatus.HANDLED
    assert handler.seen == [second]
    async with db.session_scope() as session:
        earlier = await session.get(InboundEvent, first)
        assert earlier is not None
        # Untouched: its own job retries it and counts the failure.
        assert earlier.status is EventStatus.PENDING
        assert earlier.attempts == 0
