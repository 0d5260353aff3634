"""Store-then-ack, coalesced: concurrent deliveries commit together in one transaction.

Each request hands its event to the writer and waits. A flusher takes every event waiting
at that moment, inserts them and queues their jobs in one statement (one transaction),
and only then answers each request. Under load, one commit (one WAL flush) acknowledges dozens of
deliveries; with a single request in flight, it costs what a plain insert would.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from enum import StrEnum

import asyncpg
import structlog

from project_orchestrator.db.schema_change import is_stale_schema
from project_orchestrator.events.models import EventSource

log = structlog.get_logger(__name__)

MAX_BATCH = 256

# The events and their jobs in one statement, so one round trip and one implicit
# transaction store a batch: a delivery's row and its job commit together or not at all,
# and a delivery id already stored (ON CONFLICT) gets neither a second row nor a job.
# The job rows are the ones pgqueuer's own enqueue writes (queue/schema.py freezes those
# tables): status queued, a `queued` line in its log, and the payload EventJob.decode
# reads. Its statement-level trigger sends one NOTIFY for the whole batch.
_STORE_EVENTS_WITH_JOBS = """
WITH new_events AS (
    INSERT INTO inbound_events
        (source, external_id, event_type, serial_key, headers, payload, correlation_id,
         client_ip)
    SELECT * FROM unnest(
        $1::event_source[], $2::text[], $3::text[], $4::text[],
        $5::jsonb[], $6::json[], $7::text[], $8::text[]
    )
    ON CONFLICT (source, external_id) DO NOTHING
    RETURNING id, source, external_id, correlation_id
),
jobs AS (
    INSERT INTO pgqueuer (priority, entrypoint, payload, headers, status)
    SELECT 0, 'handle_event',  -- db.jobs.HANDLE_EVENT
        convert_to(
            json_build_object('event_id', id, 'correlation_id', correlation_id)::text, 'UTF8'
        ),
        'null'::jsonb,  -- as pgqueuer writes "no headers"
        'queued'
    FROM new_events
    RETURNING id, entrypoint, priority
),
logged AS (
    INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM jobs
)
SELECT id, source::text, external_id FROM new_events
"""


@dataclass(frozen=True)
class NewEvent:
    source: EventSource
    external_id: str
    event_type: str
    serial_key: str
    headers_json: str
    payload_json: str
    correlation_id: str | None = None
    client_ip: str | None = None


class StoreOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Stored:
    outcome: StoreOutcome
    event_id: int | None


class StoreUnavailable(Exception):
    """The database could not take the event; nothing was stored."""


_Pending = tuple[NewEvent, "asyncio.Future[Stored]"]


class EventWriter:
    def __init__(self, pool: asyncpg.Pool, *, flushers: int = 2) -> None:
        self._pool = pool
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._flushers = flushers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"event-writer-{n}")
            for n in range(self._flushers)
        ]

    async def close(self) -> None:
        # Requests still waiting get an answer (503) rather than hanging.
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(StoreUnavailable("shutting down"))

    async def store(self, event: NewEvent) -> Stored:
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._flush(batch)
            except asyncio.CancelledError:
                self._fail(batch, StoreUnavailable("shutting down"))
                raise

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            results = await self._write([event for event, _ in batch])
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            if len(batch) == 1:
                self._fail(batch, exc)
                return
            # One bad row must not refuse its neighbours: write them one by one.
            for item in batch:
                await self._flush([item])
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("events.store_failed", error=type(exc).__name__, batch=len(batch))
            if is_stale_schema(exc):
                # Rebuilt under us: these connections cached the old schema for good.
                await self._pool.expire_connections()
            self._fail(batch, StoreUnavailable(type(exc).__name__))
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Pending], exc: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)

    async def _write(self, events: list[NewEvent]) -> list[Stored]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                _STORE_EVENTS_WITH_JOBS,
                [e.source.value for e in events],
                [e.external_id for e in events],
                [e.event_type for e in events],
                [e.serial_key for e in events],
                [e.headers_json for e in events],
                [e.payload_json for e in events],
                [e.correlation_id for e in events],
                [e.client_ip for e in events],
            )
        inserted = {(row["source"], row["external_id"]): row["id"] for row in rows}
        results: list[Stored] = []
        for event in events:
            # Within one batch, only the first of two identical deliveries is new.
            event_id = inserted.pop((event.source.value, event.external_id), None)
            if event_id is None:
                results.append(Stored(StoreOutcome.DUPLICATE, None))
            else:
                results.append(Stored(StoreOutcome.ACCEPTED, event_id))
        return results
