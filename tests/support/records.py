"""Reading back what the service recorded: audit lines, stored events and queued jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from project_orchestrator.db.engine import Database


def audit_entries(tmp_path: Path) -> list[dict[str, Any]]:
    """The audit log the test settings write (`tmp_path / "audit.log"`), one dict a line."""
    path = tmp_path / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def event_and_job_counts(db: Database) -> tuple[int, int]:
    async with db.engine.connect() as conn:
        events = (await conn.execute(text("SELECT count(*) FROM inbound_events"))).scalar_one()
        jobs = (await conn.execute(text("SELECT count(*) FROM pgqueuer"))).scalar_one()
    return events, jobs
