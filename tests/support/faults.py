"""The fault scenarios: streams, exactly-once verdicts, service processes, kills.

Used small by tests/test_faults.py and big by bench/fault_*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, text

from project_orchestrator.agent.models import ConversationMessage, MessageRole
from project_orchestrator.audit import AuditLog
from project_orchestrator.composition.worker import build_workload
from project_orchestrator.db import raw
from project_orchestrator.db.engine import Database, create_database
from project_orchestrator.metrics import registry
from project_orchestrator.queue.worker import WorkerOptions, run_worker
from tests.conftest import make_settings
from tests.support.cli import COMMAND, clean_environment
from tests.support.fake_github import FakeGitHub
from tests.support.github_payloads import issue_comment, signed
from tests.support.journey import (
    OWNER,
    REPO,
    Journey,
)
from tests.support.postgres import RestartablePostgres
from tests.support.webhooks import SECRET, URL, webhook_client
from tests.support.worker import FAST_RETRIES, wait_until_idle, work_until_idle

# The issue every `/help` comment of the streams is made on (one per repository).
THREAD = 1
# Rate limiting is not under test here: every delivery comes from 127.0.0.1.
NO_RATE_LIMIT = "10000000/minute"
_MARKER = re.compile(r"<!-- orchestrator:(.+?) -->")


# --- deliveries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    key: str  # the idempotency key of the one reply this comment deserves
    delivery_id: str
    body: bytes
    headers: dict[str, str]


def help_stream(
    events: int, duplicates: int, repos: Sequence[str], rng: random.Random
) -> tuple[list[Delivery], list[Delivery]]:
    """`events` distinct `/help` comments spread over `repos`, and the stream GitHub sends:
    each of them, plus `duplicates` of them delivered again (a lost acknowledgement), in a
    shuffled order."""
    tag = uuid.uuid4().hex[:10]
    distinct = []
    for n in range(events):
        repo = repos[n % len(repos)]
        comment_id = 100_000 + n
        payload = issue_comment(
            "@orchestrator /help", repo=repo, issue_number=THREAD, comment_id=comment_id
        )
        body, headers = signed(SECRET, "issue_comment", payload, delivery=f"{tag}-{n}")
        key = f"github:{repo.lower()}#{THREAD}:comment:{comment_id}"
        distinct.append(Delivery(key, f"{tag}-{n}", body, headers))
    stream = distinct + rng.sample(distinct, duplicates)
    rng.shuffle(stream)
    return distinct, stream


@dataclass
class StreamFigures:
    """What the sender saw. A delivery answered 503 (or not answered) is sent again until
    it gets a 2xx, as GitHub's redelivery would."""

    deliveries: int = 0
    requests: int = 0
    answers: Counter[int] = field(default_factory=Counter)  # every answer, by status
    final: Counter[int] = field(default_factory=Counter)  # the answer that ended each delivery
    resent: int = 0  # deliveries that needed more than one request
    transport_errors: int = 0
    refused: list[str] = field(default_factory=list)  # ended by an answer other than 2xx/503
    elapsed: float = 0.0

    @property
    def accepted(self) -> int:
        return sum(n for status, n in self.final.items() if 200 <= status < 300)


async def send_stream(
    items: Sequence[tuple[httpx.AsyncClient, Delivery]],
    *,
    concurrency: int = 4,
    pace: float = 0.0,
    resend_after: float = 0.2,
    limit_seconds: float = 600,
) -> StreamFigures:
    """POST every delivery (to its client), `concurrency` at a time, each sender pausing
    `pace` seconds between deliveries."""
    figures = StreamFigures(deliveries=len(items))
    queue: asyncio.Queue[tuple[httpx.AsyncClient, Delivery]] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    started = time.monotonic()

    async def deliver(client: httpx.AsyncClient, delivery: Delivery) -> None:
        tries = 0
        while True:
            tries += 1
            figures.requests += 1
            try:
                response = await client.post(URL, content=delivery.body, headers=delivery.headers)
            except httpx.TransportError:
                figures.transport_errors += 1
            else:
                status = response.status_code
                figures.answers[status] += 1
                if status != 503:  # 503 means "not stored, send it again"
                    figures.final[status] += 1
                    if not 200 <= status < 300:
                        figures.refused.append(f"{delivery.delivery_id}: {status} {response.text}")
                    break
            await asyncio.sleep(resend_after)
        if tries > 1:
            figures.resent += 1

    async def sender() -> None:
        while not queue.empty():
            client, delivery = queue.get_nowait()
            await deliver(client, delivery)
            if pace:
                await asyncio.sleep(pace)

    async with asyncio.timeout(limit_seconds):
        await asyncio.gather(*(sender() for _ in range(concurrency)))
    figures.elapsed = time.monotonic() - started
    return figures


# --- the verdict ----------------------------------------------------------------------------


@dataclass
class ExactlyOnce:
    distinct: int
    stored: int  # inbound_events rows
    stored_distinct: int  # distinct delivery ids among them
    events: dict[str, int]  # inbound_events by status
    replies: int  # comments created on the fake GitHub
    lost: list[str]  # comments without a reply
    doubled: list[str]  # comments with more than one reply
    jobs: dict[str, int]  # jobs left in the queue, by status
    outbound: dict[str, int]  # outbound_messages by status
    # Replies whose first attempt may have posted before its worker died: the next attempt
    # looked for the marker on GitHub instead of posting blind.
    replies_retried: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.stored == self.stored_distinct == self.distinct
            and self.events == {"handled": self.distinct}
            and self.replies == self.distinct
            and not self.lost
            and not self.doubled
            and not self.jobs
            and self.outbound == {"sent": self.distinct}
        )

    def describe(self) -> str:
        return (
            f"distinct {self.distinct}, stored {self.stored} ({self.stored_distinct} distinct), "
            f"events {self.events}, replies {self.replies}, lost {len(self.lost)} "
            f"{self.lost[:5]}, doubled {len(self.doubled)} {self.doubled[:5]}, "
            f"jobs left {self.jobs}, outbound {self.outbound}"
        )


async def check_exactly_once(
    database_url: str, github: FakeGitHub, distinct: Sequence[Delivery], repos: Sequence[str]
) -> ExactlyOnce:
    conn = await raw.connect(database_url)
    try:
        stored, stored_distinct = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT external_id) FROM inbound_events"
        )
        events = dict(
            await conn.fetch("SELECT status::text, count(*) FROM inbound_events GROUP BY 1")
        )
        jobs = dict(await conn.fetch("SELECT status::text, count(*) FROM pgqueuer GROUP BY 1"))
        outbound = dict(
            await conn.fetch("SELECT status::text, count(*) FROM outbound_messages GROUP BY 1")
        )
        replies_retried = await conn.fetchval(
            "SELECT count(*) FROM outbound_messages WHERE attempts > 1"
        )
    finally:
        await conn.close()
    marked: Counter[str] = Counter()
    for repo in repos:
        for comment in github.comments(repo, THREAD):
            marked.update(_MARKER.findall(comment["body"]))
    expected = {d.key for d in distinct}
    return ExactlyOnce(
        distinct=len(expected),
        stored=stored,
        stored_distinct=stored_distinct,
        events=events,
        replies=github.created_comment_count(),
        lost=sorted(expected - set(marked)),
        doubled=sorted(key for key, n in marked.items() if n > 1),
        jobs=jobs,
        outbound=outbound,
        replies_retried=replies_retried,
    )


async def queue_idle(database_url: str) -> bool:
    """No job queued or running and no event waiting."""
    conn = await raw.connect(database_url)
    try:
        busy = await conn.fetchval(
            "SELECT (SELECT count(*) FROM pgqueuer WHERE status IN ('queued', 'picked'))"
            " + (SELECT count(*) FROM inbound_events WHERE status = 'pending')"
        )
    finally:
        await conn.close()
    return int(busy) == 0


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(
    args: list[str], env: dict[str, str], workdir: Path, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [*COMMAND, *args],
            # Unbuffered: the fleet reads the log to see when a worker is up and working.
            env=clean_environment(PYTHONUNBUFFERED="1", **env),
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_api(database_url: str, workdir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`orchestrator serve --no-worker`: ingress and probes only."""
    env = {
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "DEFAULT_RATE_LIMIT": NO_RATE_LIMIT,
        "TELEGRAM_MODE": "off",
        "AUDIT_LOG_PATH": str(workdir / "audit.log"),
        "DATA_DIR": str(workdir / "data"),
    }
    return _spawn(["serve", "--no-worker"], env, workdir, log)


def start_worker(
    database_url: str, workdir: Path, github_url: str, log: Path
) -> subprocess.Popen[bytes]:
    """`orchestrator worker` that takes over a dead worker's jobs after a second."""
    env = {
        "DATABASE_URL": database_url,
        "GITHUB_ACCESS_TOKEN": "ghp-test-token-123456",
        "GITHUB_API_URL": github_url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "WORKER_HEARTBEAT_TIMEOUT_SECONDS": "1",
        "WORKER_DRAIN_TIMEOUT_SECONDS": "10",
        "TELEGRAM_MODE": "off",
        "AUDIT_LOG_PATH": str(workdir / "audit.log"),
        "DATA_DIR": str(workdir / "data"),
    }
    return _spawn(["worker"], env, workdir, log)


def tail(log: Path, size: int = 4000) -> str:
    return log.read_text(errors="replace")[-size:] if log.exists() else ""


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


async def wait_ready(
    client: httpx.AsyncClient, process: subprocess.Popen[bytes], log: Path, limit: float = 60
) -> None:
    async with asyncio.timeout(limit):
        while True:
            assert process.poll() is None, tail(log)
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/health/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


@asynccontextmanager
async def api_processes(
    database_url: str, workdir: Path, count: int, exit_codes: list[int] | None = None
) -> AsyncIterator[list[tuple[subprocess.Popen[bytes], httpx.AsyncClient]]]:
    """`count` API processes, ready, each with a client; stopped with SIGTERM on exit
    (their exit codes appended to `exit_codes`)."""
    started: list[tuple[subprocess.Popen[bytes], httpx.AsyncClient, Path]] = []
    try:
        for n in range(count):
            port = free_port()
            log = workdir / f"api-{n}.log"
            client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15)
            started.append((start_api(database_url, workdir, port, log), client, log))
        for process, client, log in started:
            await wait_ready(client, process, log)
        yield [(process, client) for process, client, _ in started]
    finally:
        for process, client, _ in started:
            await client.aclose()
            code = await asyncio.to_thread(stop, process)
            if exit_codes is not None:
                exit_codes.append(code)


_WORKING = re.compile(r"event\.handled|github\.comment_posted|event\.already_handled")


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    log: Path
    working_since: float | None = None  # when its log first showed it handling an event


class WorkerFleet:
    """`size` worker processes, kept at that number; `kill_one` SIGKILLs the one that has
    been working the longest and starts another in its place.

    Only a worker seen working is killed: starting one costs a couple of CPU seconds (more
    on a busy machine), and killing one that is still importing proves nothing.
    """

    def __init__(self, database_url: str, workdir: Path, github_url: str, size: int) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.github_url = github_url
        self.size = size
        self.live: list[_Worker] = []
        self.started = 0
        self.kills = 0

    def fill(self) -> None:
        while len(self.live) < self.size:
            log = self.workdir / f"worker-{self.started}.log"
            self.started += 1
            process = start_worker(self.database_url, self.workdir, self.github_url, log)
            self.live.append(_Worker(process, log))

    def check(self) -> None:
        """Note which workers are working; fail if one died by itself."""
        now = time.monotonic()
        for worker in self.live:
            assert worker.process.poll() is None, f"a worker died by itself:\n{tail(worker.log)}"
            if worker.working_since is None and _WORKING.search(tail(worker.log, 1_000_000)):
                worker.working_since = now

    async def wait_up(self, limit: float = 60) -> None:
        """Until every worker has logged that it takes jobs."""
        async with asyncio.timeout(limit):
            while True:
                self.check()
                if all("worker.started" in tail(w.log, 1_000_000) for w in self.live):
                    return
                await asyncio.sleep(0.1)

    def kill_one(self, min_working: float) -> bool:
        """SIGKILL the worker working the longest, if it has been for `min_working` seconds
        and another one is working too (so the queue never waits on a restart alone)."""
        self.check()
        now = time.monotonic()
        working = [w for w in self.live if w.working_since is not None]
        ripe = [w for w in working if now - (w.working_since or now) >= min_working]
        if not ripe or len(working) < 2:
            return False
        victim = min(ripe, key=lambda w: w.working_since or now)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        self.live.remove(victim)
        self.kills += 1
        self.fill()
        return True

    def stop(self) -> list[int]:
        codes = [stop(worker.process) for worker in self.live]
        self.live = []
        return codes


# --- 1. the database restarts while webhooks stream in --------------------------------------


@dataclass
class DbRestartFigures:
    stream: StreamFigures
    down_seconds: float  # from the stop to the database answering again
    probe_failures: int  # 503 answers of /health/db and /health/ready seen meanwhile
    detect_seconds: float  # from the stop to the first probe answering 503
    recovery_seconds: float  # from the database being back to both probes answering 200
    api_survived: bool  # the same API process served throughout, never restarted
    api_exit_code: int  # on SIGTERM afterwards


async def _poll_probes(
    client: httpx.AsyncClient, samples: list[tuple[float, str, int]], stop_polling: asyncio.Event
) -> None:
    while not stop_polling.is_set():
        for path in ("/health/db", "/health/ready"):
            try:
                status = (await client.get(path)).status_code
            except httpx.TransportError:
                status = 0
            samples.append((time.monotonic(), path, status))
        await asyncio.sleep(0.1)


async def _probes_recovered(
    samples: list[tuple[float, str, int]], since: float, limit: float
) -> float:
    """Seconds from `since` until both probes answer 200 for good (waiting up to `limit`)."""
    paths = ("/health/db", "/health/ready")
    async with asyncio.timeout(limit):
        while True:
            recent = [(m, p, s) for m, p, s in samples if m >= since]
            last = {p: s for _, p, s in recent}
            if all(last.get(path) == 200 for path in paths):
                bad = [m for m, _, s in recent if s != 200]
                healthy = [m for m, _, s in recent if m > max(bad, default=since)]
                return min(healthy) - since
            await asyncio.sleep(0.1)


async def db_restart_scenario(
    workdir: Path,
    pg: RestartablePostgres,
    stream: Sequence[Delivery],
    *,
    concurrency: int,
    pace: float,
    down_after: float,
    down_for: float,
) -> DbRestartFigures:
    """An API process takes the stream; `down_after` seconds in, the database stops for
    `down_for` seconds and starts again. Nothing is restarted but the database."""
    exit_codes: list[int] = []
    async with api_processes(pg.url, workdir, 1, exit_codes) as [(api, client)]:
        samples: list[tuple[float, str, int]] = []
        stop_polling = asyncio.Event()
        probes = asyncio.create_task(_poll_probes(client, samples, stop_polling))
        sending = asyncio.create_task(
            send_stream([(client, d) for d in stream], concurrency=concurrency, pace=pace)
        )
        try:
            await asyncio.sleep(down_after)
            went_down = time.monotonic()
            await asyncio.to_thread(pg.stop)
            await asyncio.sleep(down_for)
            await asyncio.to_thread(pg.start)
            back = time.monotonic()
            figures = await sending
            recovery = await _probes_recovered(samples, back, limit=30)
        finally:
            stop_polling.set()
            sending.cancel()
            await asyncio.gather(probes, sending, return_exceptions=True)
        alive = api.poll() is None
    failed = [m for m, _, s in samples if went_down <= m and s == 503]
    detect = min(failed, default=back) - went_down
    return DbRestartFigures(
        figures, back - went_down, len(failed), detect, recovery, alive, exit_codes[0]
    )


async def drain_in_process(
    tmp_path: Path, database_url: str, github: FakeGitHub, limit_seconds: float = 120
) -> None:
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        github_access_token="ghp-test-token-123456",
        github_api_url=github.base_url,
    )
    db = create_database(database_url, pool_size=5, max_overflow=5)
    try:
        await work_until_idle(settings, db, limit_seconds=limit_seconds)
    finally:
        await db.dispose()


def add_threads(github: FakeGitHub, repos: Sequence[str]) -> None:
    for repo in repos:
        github.add_issue(repo, THREAD)


DB_REPOS = ["acme/alpha", "acme/beta", "acme/gamma"]


# --- 2. workers SIGKILLed again and again ---------------------------------------------------


@dataclass
class KillFigures:
    stream: StreamFigures
    kills: int
    kills_during_stream: int
    workers_started: int
    elapsed: float


async def worker_kill_scenario(
    workdir: Path,
    database_url: str,
    github_url: str,
    stream: Sequence[Delivery],
    *,
    rng: random.Random,
    fleet_size: int = 3,
    kill_every: tuple[float, float] = (0.5, 1.0),
    min_working: float = 0.3,
    concurrency: int = 4,
    pace: float = 0.1,
    limit_seconds: float = 120,
) -> KillFigures:
    """Deliveries stream in (through the in-process app) while `fleet_size` worker
    processes take jobs; every `kill_every` seconds one of them is SIGKILLed and another
    started, until the stream is over and the queue is idle."""
    started = time.monotonic()
    fleet = WorkerFleet(database_url, workdir, github_url, fleet_size)
    fleet.fill()
    kills_during_stream = 0
    try:
        await fleet.wait_up()
        async with webhook_client(
            workdir, database_url, default_rate_limit=NO_RATE_LIMIT
        ) as client:
            sending = asyncio.create_task(
                send_stream([(client, d) for d in stream], concurrency=concurrency, pace=pace)
            )
            try:
                async with asyncio.timeout(limit_seconds):
                    next_kill = time.monotonic() + rng.uniform(*kill_every)
                    checked = 0.0
                    while True:
                        fleet.check()
                        if time.monotonic() >= next_kill and fleet.kill_one(min_working):
                            next_kill = time.monotonic() + rng.uniform(*kill_every)
                            kills_during_stream += not sending.done()
                        if sending.done() and time.monotonic() - checked > 0.25:
                            if await queue_idle(database_url):
                                break
                            checked = time.monotonic()
                        await asyncio.sleep(0.05)
            finally:
                if not sending.done():
                    sending.cancel()
            figures = await sending
    finally:
        await asyncio.to_thread(fleet.stop)
    return KillFigures(
        figures, fleet.kills, kills_during_stream, fleet.started, time.monotonic() - started
    )


KILL_REPOS = ["acme/one", "acme/two", "acme/three", "acme/four", "acme/five"]


# --- 3. two API processes and two workers on one database -----------------------------------


def spread(
    stream: Sequence[Delivery], clients: Sequence[httpx.AsyncClient], rng: random.Random
) -> list[tuple[httpx.AsyncClient, Delivery]]:
    """Each delivery to one API at random; a delivery seen again goes to another one."""
    first: dict[str, int] = {}
    items = []
    for delivery in stream:
        if delivery.delivery_id in first:
            index = (first[delivery.delivery_id] + 1) % len(clients)
        else:
            index = first[delivery.delivery_id] = rng.randrange(len(clients))
        items.append((clients[index], delivery))
    return items


@dataclass
class SharedFigures:
    stream: StreamFigures
    per_api: list[int]
    api_exit_codes: list[int]
    worker_exit_codes: list[int]
    replies_per_worker: list[int]  # comments each worker posted
    events_per_worker: list[int]  # events each worker handled
    elapsed: float


async def shared_database_scenario(
    workdir: Path,
    database_url: str,
    github_url: str,
    stream: Sequence[Delivery],
    *,
    rng: random.Random,
    apis: int = 2,
    workers: int = 2,
    concurrency: int = 8,
    limit_seconds: float = 50,
) -> SharedFigures:
    started = time.monotonic()
    fleet = WorkerFleet(database_url, workdir, github_url, workers)
    fleet.fill()
    api_codes: list[int] = []
    try:
        await fleet.wait_up()
        async with api_processes(database_url, workdir, apis, api_codes) as running:
            items = spread(stream, [client for _, client in running], rng)
            per_api = [sum(1 for c, _ in items if c is client) for _, client in running]
            figures = await send_stream(items, concurrency=concurrency)
            async with asyncio.timeout(limit_seconds):
                while not await queue_idle(database_url):
                    fleet.check()
                    await asyncio.sleep(0.1)
    finally:
        logs = [worker.log for worker in fleet.live]
        codes = await asyncio.to_thread(fleet.stop)
    texts = [tail(log, 10_000_000) for log in logs]
    posted = [text.count("github.comment_posted") for text in texts]
    handled = [text.count("event.handled") for text in texts]
    return SharedFigures(
        figures, per_api, api_codes, codes, posted, handled, time.monotonic() - started
    )


SHARED_REPOS = ["acme/north", "acme/south", "acme/east", "acme/west"]


class LongLivedWorker:
    """One in-process worker for the whole test, as in production: its clients (and the
    AI circuit breaker) live across the outage instead of being rebuilt per message."""

    def __init__(self, journey: Journey, options: WorkerOptions) -> None:
        self.journey = journey
        self.options = options
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._ingress: contextlib.AbstractAsyncContextManager[httpx.AsyncClient] | None = None
        self._comment_ids = iter(range(90_000, 100_000))

    async def __aenter__(self) -> LongLivedWorker:
        settings = self.journey.settings
        assert settings.database_url is not None
        audit = AuditLog(settings.audit_log_path)
        workload = build_workload(settings, self.journey.db, audit)
        self._closers = workload.aclose
        self.task = asyncio.create_task(
            run_worker(settings.database_url, workload, self.stop, self.options)
        )
        self._ingress = webhook_client(self.journey.tmp_path, self.journey.database_url)
        self._client = await self._ingress.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ingress is not None:
            await self._ingress.__aexit__(None, None, None)
        self.stop.set()
        if self.task is not None:
            await self.task
        await self._closers()

    async def deliver(self, body: str) -> None:
        assert self._client is not None
        payload = issue_comment(
            body, login=OWNER, association="OWNER", comment_id=next(self._comment_ids), repo=REPO
        )
        raw_body, headers = signed(SECRET, "issue_comment", payload)
        response = await self._client.post(URL, content=raw_body, headers=headers)
        assert response.status_code == 202, response.text

    async def idle(self, limit_seconds: float = 30) -> None:
        assert self.task is not None
        await wait_until_idle(self.journey.db, [self.task], limit_seconds)

    async def say(self, body: str) -> None:
        await self.deliver(body)
        await self.idle()


async def stored_user_messages(db: Database) -> list[str]:
    async with db.session_scope() as session:
        rows = await session.execute(
            select(ConversationMessage.content)
            .where(ConversationMessage.role == MessageRole.USER)
            .order_by(ConversationMessage.id)
        )
        return [str(r) for r in rows.scalars()]


async def ai_row(db: Database) -> tuple[bool, str | None] | None:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT healthy, detail FROM component_status WHERE name='ai'"))
        ).first()
    return None if row is None else (bool(row.healthy), row.detail)


async def eventually(condition: Callable[[], bool], limit: float = 20) -> None:
    async with asyncio.timeout(limit):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


def step_jobs(outcome: str) -> float:
    return registry.get_sample_value("jobs_total", {"job": "run_step", "outcome": outcome}) or 0.0


def sent_to_scar(journey: Journey, command: str) -> list[str]:
    return [c for c in journey.scar_commands() if c.split()[1] == command]


# Slow enough that SCAR can be brought back before the six attempts are spent
# (0.2, 0.4, 0.8, 1.6, 3.2 s between them), fast enough for the suite.
PATIENT_RETRIES = replace(
    FAST_RETRIES,
    retry_initial_delay=timedelta(milliseconds=200),
    retry_max_delay=timedelta(seconds=4),
)
