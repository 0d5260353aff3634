"""Jobs the service queues in its own statements are the rows pgqueuer's enqueue writes."""

from __future__ import annotations

import uuid

from pgqueuer.queries import Queries
from sqlalchemy import text

from project_orchestrator.db.engine import Database
from project_orchestrator.db.enqueue import enqueue_delivery, enqueue_turn
from project_orchestrator.db.jobs import AGENT_TURN, DELIVER_OUTBOUND, DeliveryJob, TurnJob

JOBS = text(
    "SELECT priority, entrypoint, status, attempts, dedupe_key, headers, slot,"
    " queue_manager_id, execute_after <= now() AS due, payload FROM pgqueuer ORDER BY id"
)


async def test_turn_and_delivery_jobs_match_pgqueuers_own_enqueue(db: Database) -> None:
    project_id = uuid.uuid4()
    async with db.session_scope() as session:
        await enqueue_turn(session, project_id)
        await enqueue_delivery(session, "github:ada/hello#1")
    async with db.session_scope() as session:
        raw = await (await session.connection()).get_raw_connection()
        queries = Queries.from_asyncpg_connection(raw.driver_connection)
        await queries.enqueue(entrypoint=AGENT_TURN, payload=TurnJob(str(project_id)).encode())
        await queries.enqueue(
            entrypoint=DELIVER_OUTBOUND, payload=DeliveryJob("github:ada/hello#1").encode()
        )
    async with db.session_scope() as session:
        jobs = [dict(row) for row in (await session.execute(JOBS)).mappings()]
        logged = (
            await session.execute(
                text("SELECT job_id, status, entrypoint FROM pgqueuer_log ORDER BY id")
            )
        ).all()
    ours, theirs = jobs[:2], jobs[2:]
    assert TurnJob.decode(ours[0]["payload"]) == TurnJob(str(project_id))
    assert DeliveryJob.decode(ours[1]["payload"]) == DeliveryJob("github:ada/hello#1")
    assert ours == theirs
    assert [(status, entrypoint) for _, status, entrypoint in logged] == [
        ("queued", AGENT_TURN),
        ("queued", DELIVER_OUTBOUND),
    ] * 2
