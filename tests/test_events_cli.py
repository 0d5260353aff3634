"""`orchestrator events list` shows what arrived and what became of it."""

from __future__ import annotations

from project_orchestrator.db.engine import Database
from project_orchestrator.events.cli import list_events
from project_orchestrator.events.models import EventSource, EventStatus, InboundEvent


async def test_lists_newest_first_and_filters_failed(db: Database, database_url: str) -> None:
    async with db.session_scope() as session:
        for n, status in enumerate([EventStatus.PENDING, EventStatus.FAILED, EventStatus.PENDING]):
            session.add(
                InboundEvent(
                    source=EventSource.GITHUB,
                    external_id=f"delivery-{n}",
                    event_type="issue_comment",
                    serial_key="github:acme/widgets",
                    headers={},
                    payload={},
                    status=status,
                    attempts=5 if status is EventStatus.FAILED else 0,
                    last_error="GitHub answered 502\nBad Gateway"
                    if status is EventStatus.FAILED
                    else None,
                )
            )

    lines = await list_events(database_url, failed_only=False, limit=10)
    assert [line.split()[-1] for line in lines[:1]] == ["delivery-2"]
    assert len(lines) == 3

    failed = await list_events(database_url, failed_only=True, limit=10)
    assert len(failed) == 1
    assert "delivery-1" in failed[0]
    assert "attempts=5" in failed[0]
    # Multi-line errors stay on one line so the listing stays greppable.
    assert "GitHub answered 502 Bad Gateway" in failed[0]

    assert len(await list_events(database_url, failed_only=False, limit=2)) == 2
