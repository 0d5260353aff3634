"""The orchestrator's own overhead per agent turn, with a model that answers at once.

From webhook accepted to reply sent: each message is a signed `issue_comment` delivery
mentioning @orchestrator, sent at a steady rate over several repositories (one project
each) to `orchestrator serve` (API + in-process worker) or, with --separate-worker, to
`serve --no-worker` plus an `orchestrator worker` process. For each message:

    t0 = when the 202 came back to the sender
    t1 = when the fake GitHub finished answering the reply comment's POST

The fake Messages API echoes the newest message's unique token in its answer, so the reply
comment carries it and t1 is matched to its message. The agent answers a project's newest
message and covers the earlier ones it had not answered yet (they are in the history the
model saw), so a reply also answers those, at its t1. Reports, per rate: messages sent,
replies received, overhead (t1 - t0) p50/p95/p99/max, reply throughput over the window,
CPU spent per message sent by each process, and whether the targets (p99 < 100 ms,
>= 50 messages/s) are met. Exits 1 when a reply is missing, else 0 (it is a measurement).

    uv run python bench/agent_turn.py [--messages 1000] [--rate 50 100] [--repos 20]
                                      [--separate-worker] [--database-url URL]

The fakes (Anthropic, GitHub) run by default in a child process of their own, so their
work and the sender's never wait for each other's GIL (--fakes in-process to compare).
Needs a PostgreSQL it may create a database on (default: 127.0.0.1:5432, user postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import postgres
from tests.support.fake_anthropic import DEFAULT_REPLY, FakeAnthropic
from tests.support.fake_github import FakeGitHub
from tests.support.fake_http import FakeServer
from tests.support.github_payloads import issue_comment, signed

SECRET = "bench-secret-" + uuid.uuid4().hex
OWNER_LOGIN = "ada"
ISSUE = 1
TOKEN = re.compile(r"tok-[0-9a-f]{16}")
COMMENT_POST = re.compile(r"/repos/[^/]+/[^/]+/issues/\d+/comments")
TARGET_P99_MS = 100.0
TARGET_RATE = 50.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the fakes ----------------------------------------------------------------------------


def echo_responder(request: dict[str, Any]) -> str:
    """Answer at once, repeating the token of the newest user message (matches replies)."""
    for message in reversed(request.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if not isinstance(content, str):
            content = " ".join(str(block.get("text", "")) for block in content or [])
        tokens = TOKEN.findall(content)
        if tokens:
            return f"Noted ({tokens[-1]}). Who would use it first?"
        break
    return DEFAULT_REPLY


@dataclass
class Timings:
    """What the fakes saw, with monotonic times (one clock for every process on Linux)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    arrivals: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    # Seconds each fake spent answering (request received to last byte sent).
    service: dict[str, list[float]] = field(default_factory=lambda: {"anthropic": [], "github": []})


class TimedApp:
    """ASGI wrapper: times each request and notes when a reply comment's POST completes."""

    def __init__(self, app: Any, name: str, timings: Timings) -> None:
        self.app = app
        self.name = name
        self.timings = timings

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        is_comment = scope["method"] == "POST" and COMMENT_POST.fullmatch(scope["path"])
        chunks: list[bytes] = []

        async def receive_and_keep() -> Any:
            message = await receive()
            if is_comment and message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def send_and_time(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self._done(start, time.monotonic(), b"".join(chunks) if is_comment else None)

        await self.app(scope, receive_and_keep, send_and_time)

    def _done(self, start: float, end: float, comment: bytes | None) -> None:
        token = None
        if comment is not None:
            with contextlib.suppress(ValueError):
                found = TOKEN.search(str(json.loads(comment).get("body", "")))
                token = found.group(0) if found else None
        with self.timings.lock:
            self.timings.service[self.name].append(end - start)
            if token is not None:
                if token in self.timings.arrivals:
                    self.timings.duplicates += 1
                else:
                    self.timings.arrivals[token] = end


class Fakes:
    """Fake Anthropic and fake GitHub, each served by a FakeServer thread."""

    def __init__(self) -> None:
        self.timings = Timings()
        self.anthropic = FakeAnthropic(responder=echo_responder)
        self.github = FakeGitHub(bot_login="orchestrator")
        self._servers = {
            "anthropic": FakeServer(TimedApp(self.anthropic.app, "anthropic", self.timings)),
            "github": FakeServer(TimedApp(self.github.app, "github", self.timings)),
        }

    def start(self) -> dict[str, str]:
        return {name: server.start().url for name, server in self._servers.items()}

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()

    def add_issue(self, repo: str, number: int) -> None:
        self.github.add_issue(repo, number, title="An idea", user=OWNER_LOGIN)

    def missing(self, tokens: list[str]) -> int:
        """How many of these tokens no reply has carried yet."""
        with self.timings.lock:
            return sum(1 for token in tokens if token not in self.timings.arrivals)

    def take(self) -> dict[str, Any]:
        """Arrivals so far, and the service times recorded since the last call."""
        with self.timings.lock:
            service = self.timings.service
            self.timings.service = {name: [] for name in service}
            result = {
                "arrivals": dict(self.timings.arrivals),
                "duplicates": self.timings.duplicates,
                "service": service,
            }
        # FakeServer keeps every request for assertions; a bench has no use for them.
        for server in self._servers.values():
            server.requests.clear()
        return result


def _fakes_child(conn: Connection) -> None:
    fakes = Fakes()
    conn.send(fakes.start())
    try:
        while True:
            name, args = conn.recv()
            if name == "stop":
                break
            conn.send(getattr(fakes, name)(*args))
    finally:
        fakes.stop()


class FakesHandle:
    """The fakes, in this process or in a child process, behind one call interface."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.pid = os.getpid()
        self._local: Fakes | None = None
        self._conn: Connection | None = None
        self._process: Any = None
        self._lock = threading.Lock()

    def start(self) -> dict[str, str]:
        if self.mode == "in-process":
            self._local = Fakes()
            return self._local.start()
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_fakes_child, args=(child,), daemon=True)
        self._process.start()
        self.pid = self._process.pid
        urls: dict[str, str] = self._conn.recv()
        return urls

    def call(self, name: str, *args: Any) -> Any:
        if self._local is not None:
            return getattr(self._local, name)(*args)
        assert self._conn is not None
        with self._lock:
            self._conn.send((name, args))
            return self._conn.recv()

    def stop(self) -> None:
        if self._local is not None:
            self._local.stop()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(("stop", ()))
            self._process.join(timeout=10)


# --- the service ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode} before ready")
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service did not become ready")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time every core spent on anything but idling and waiting for I/O."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


async def backend_pids(dsn: str, database: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await conn.close()
    return [int(row["pid"]) for row in rows]


@dataclass
class Service:
    database_url: str
    workdir: Path
    fake_urls: dict[str, str]
    separate_worker: bool
    log_level: str
    workers: int
    extra_env: dict[str, str]
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            **{k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}},
            "APP_ENV": "production",
            "DATABASE_URL": self.database_url,
            "API_KEY": "bench-api-key-0123456789",
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "GITHUB_ACCESS_TOKEN": "ghp-bench-token-000000",
            "GITHUB_API_URL": self.fake_urls["github"],
            "ANTHROPIC_API_KEY": "sk-ant-bench-key-000000",
            "ANTHROPIC_BASE_URL": self.fake_urls["anthropic"],
            "WEBHOOK_IP_FILTERING_ENABLED": "true",
            "GITHUB_WEBHOOK_IPS": "127.0.0.0/8",
            "DEFAULT_RATE_LIMIT": "100000000/minute",
            "TELEGRAM_MODE": "off",
            "LOG_LEVEL": self.log_level,
            "AUDIT_LOG_PATH": str(self.workdir / "audit.log"),
        }
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "project_orchestrator", *args],
            env=self.env(),
            cwd=self.workdir,  # no stray .env file is read
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "project_orchestrator", "migrate"],
            env=self.env(),
            cwd=self.workdir,
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        serve = ["serve", "--port", str(self.port)]
        if self.separate_worker:
            serve.append("--no-worker")
        api = self._spawn("api", serve)
        wait_ready(self.url, api)
        if self.separate_worker:
            for n in range(self.workers):
                self._spawn(f"worker{n + 1}" if self.workers > 1 else "worker", ["worker"])

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {name}.log")


# --- the load -----------------------------------------------------------------------------


@dataclass
class Delivery:
    token: str
    repo: str
    body: bytes
    headers: dict[str, str]
    sent: float = math.nan
    accepted: float = math.nan  # t0
    status: int = 0


_comment_ids = iter(range(10_000_000, 100_000_000))


def make_delivery(repo: str, padding: int) -> Delivery:
    token = f"tok-{uuid.uuid4().hex[:16]}"
    text = f"@orchestrator {token}: it should also remind people of birthdays, by email."
    payload = issue_comment(
        text,
        login=OWNER_LOGIN,
        association="OWNER",
        repo=repo,
        issue_number=ISSUE,
        comment_id=next(_comment_ids),
        padding=padding,
    )
    body, headers = signed(SECRET, "issue_comment", payload, delivery=str(uuid.uuid4()))
    return Delivery(token, repo, body, headers)


async def post(client: httpx.AsyncClient, url: str, delivery: Delivery) -> None:
    delivery.sent = time.monotonic()
    try:
        response = await client.post(url, content=delivery.body, headers=delivery.headers)
        delivery.status = response.status_code
    except httpx.HTTPError:
        delivery.status = -1
    delivery.accepted = time.monotonic()


async def send_at_rate(url: str, deliveries: list[Delivery], rate: float) -> None:
    """Open loop: message i leaves at start + i / rate whatever earlier answers do."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.monotonic() + 0.05
        tasks = []
        for i, delivery in enumerate(deliveries):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(client, url + "/webhooks/github", delivery)))
        await asyncio.gather(*tasks)


def wait_for_replies(
    fakes: FakesHandle, accepted: list[Delivery], timeout: float, alive: Callable[[], None]
) -> None:
    """Until each repository's newest accepted message is answered: a reply covers the
    earlier ones of its project, so there may be fewer replies than messages."""
    newest: dict[str, Delivery] = {}
    for delivery in sorted(accepted, key=lambda d: d.accepted):
        newest[delivery.repo] = delivery
    tokens = [d.token for d in newest.values()]
    deadline = time.monotonic() + timeout
    while fakes.call("missing", tokens) and time.monotonic() < deadline:
        alive()
        time.sleep(0.1)


# --- figures ------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest rank: the smallest value with at least pct % of values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def per_second(times: list[float]) -> float:
    if len(times) < 2 or max(times) == min(times):
        return math.nan
    return (len(times) - 1) / (max(times) - min(times))


@dataclass
class CpuMeter:
    """CPU seconds of each process of interest, and of the whole machine, over a phase."""

    pids: dict[str, list[int]]
    before: dict[str, dict[int, float]] = field(default_factory=dict)
    busy_before: float = 0.0
    wall_before: float = 0.0

    def start(self) -> None:
        self.before = {name: {p: cpu_seconds(p) for p in pids} for name, pids in self.pids.items()}
        self.busy_before = machine_busy_seconds()
        self.wall_before = time.monotonic()

    def stop(self, pids: dict[str, list[int]]) -> tuple[dict[str, float], float, float]:
        used: dict[str, float] = {}
        for name, now_pids in pids.items():
            before = self.before.get(name, {})
            used[name] = sum(cpu_seconds(p) - before.get(p, 0.0) for p in now_pids)
        busy = machine_busy_seconds() - self.busy_before
        return used, busy, time.monotonic() - self.wall_before


@dataclass
class PhaseResult:
    rate: float
    sent: int
    accepted: int
    replies: int
    duplicates: int
    overhead_ms: list[float]
    ingress_ms: list[float]
    send_rate: float
    reply_rate: float
    fake_ms: dict[str, float]
    cpu_ms_per_msg: dict[str, float]
    machine_busy: float  # cores busy on average, all processes included
    others_busy: float  # of which, processes not part of this bench (other work on the box)


def answered_at(accepted: list[Delivery], arrivals: dict[str, float]) -> dict[str, float]:
    """When each message was answered. The agent answers a project's newest message and
    covers the ones it had not answered yet (they are in the history the model saw), so a
    reply carrying message k's token answers every earlier unanswered message of its
    repository; a reply that never came for any later one leaves them unanswered."""
    answered: dict[str, float] = {}
    by_repo: dict[str, list[Delivery]] = {}
    for delivery in sorted(accepted, key=lambda d: d.accepted):
        by_repo.setdefault(delivery.repo, []).append(delivery)
    for messages in by_repo.values():
        waiting: list[Delivery] = []
        for delivery in messages:
            waiting.append(delivery)
            if delivery.token in arrivals:
                for covered in waiting:
                    answered[covered.token] = arrivals[delivery.token]
                waiting = []
    return answered


def summarise(
    rate: float,
    deliveries: list[Delivery],
    taken: dict[str, Any],
    cpu: tuple[dict[str, float], float, float],
) -> PhaseResult:
    accepted = [d for d in deliveries if d.status == 202]
    answered = answered_at(accepted, taken["arrivals"])
    matched = [d for d in accepted if d.token in answered]
    used, busy, wall = cpu
    messages = len(accepted) or 1
    return PhaseResult(
        rate=rate,
        sent=len(deliveries),
        accepted=len(accepted),
        replies=len(matched),
        duplicates=taken["duplicates"],
        overhead_ms=[(answered[d.token] - d.accepted) * 1000 for d in matched],
        ingress_ms=[(d.accepted - d.sent) * 1000 for d in accepted],
        send_rate=per_second([d.sent for d in deliveries]),
        reply_rate=per_second([answered[d.token] for d in matched]),
        fake_ms={name: percentile(v, 50) * 1000 for name, v in taken["service"].items()},
        cpu_ms_per_msg={name: seconds * 1000 / messages for name, seconds in used.items()},
        machine_busy=busy / wall if wall else math.nan,
        others_busy=max(0.0, busy - sum(used.values())) / wall if wall else math.nan,
    )


def report(results: list[PhaseResult], description: str) -> None:
    print()
    print(description)
    header = (
        f"{'rate':>5} {'sent':>5} {'202':>5} {'replies':>7} {'sent/s':>7} {'reply/s':>7} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'202 p99':>7}  targets"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        p99 = percentile(r.overhead_ms, 99)
        # The reply rate can only reach the offered rate; 2 % is left for timing noise.
        rate_ok = r.reply_rate >= TARGET_RATE * 0.98 and r.replies == r.sent
        verdict = (
            f"p99<{TARGET_P99_MS:.0f}ms {'yes' if p99 < TARGET_P99_MS else 'NO'}, "
            f">={TARGET_RATE:.0f}/s {'yes' if rate_ok else 'NO'}"
        )
        print(
            f"{r.rate:>5.0f} {r.sent:>5} {r.accepted:>5} {r.replies:>7} {r.send_rate:>7.1f} "
            f"{r.reply_rate:>7.1f} {percentile(r.overhead_ms, 50):>7.1f} "
            f"{percentile(r.overhead_ms, 95):>7.1f} {p99:>7.1f} "
            f"{max(r.overhead_ms, default=math.nan):>7.1f} "
            f"{percentile(r.ingress_ms, 99):>7.1f}  {verdict}"
        )
    print()
    print("CPU per message (ms) by process; cores busy on the machine; fakes' own answer time:")
    for r in results:
        cpu = ", ".join(f"{name} {ms:.1f}" for name, ms in r.cpu_ms_per_msg.items())
        fakes = ", ".join(f"{name} {ms:.2f}" for name, ms in r.fake_ms.items())
        extra = f"; {r.duplicates} duplicate replies" if r.duplicates else ""
        print(
            f"{r.rate:>5.0f}/s: {cpu}; cores busy {r.machine_busy:.2f} of {os.cpu_count()} "
            f"(other processes {r.others_busy:.2f}); fake p50 ms: {fakes}{extra}"
        )


# --- the run ------------------------------------------------------------------------------


def revision() -> str:
    """The commit measured (and whether the tree had changes), for the record."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@contextlib.contextmanager
def scratch_database(admin: str) -> Iterator[str]:
    database_url = postgres.create_database(admin, prefix="bench_agent_turn")
    try:
        yield database_url
    finally:
        postgres.drop_database(admin, database_url)


def run_phase(
    service: Service,
    fakes: FakesHandle,
    deliveries: list[Delivery],
    rate: float,
    drain_timeout: float,
    pids: Callable[[], dict[str, list[int]]],
) -> tuple[list[Delivery], dict[str, Any], tuple[dict[str, float], float, float]]:
    fakes.call("take")  # service times from here on only
    meter = CpuMeter(pids())
    meter.start()
    asyncio.run(send_at_rate(service.url, deliveries, rate))
    accepted = [d for d in deliveries if d.status == 202]
    wait_for_replies(fakes, accepted, drain_timeout, service.check_alive)
    cpu = meter.stop(pids())
    return deliveries, fakes.call("take"), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="messages per rate")
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[50.0, 100.0], help="messages/s, one run each"
    )
    parser.add_argument("--repos", type=int, default=20, help="repositories (projects)")
    parser.add_argument(
        "--separate-worker",
        action="store_true",
        help="serve --no-worker plus an `orchestrator worker` process",
    )
    parser.add_argument(
        "--fakes",
        choices=["process", "in-process"],
        default="process",
        help="run the fake APIs in a child process (default) or in this one",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes with --separate-worker"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for the service, e.g. WORKER_CONCURRENCY=16 (repeatable)",
    )
    parser.add_argument("--padding", type=int, default=12_000, help="issue body bytes")
    parser.add_argument("--warmup", type=int, default=3, help="messages per repository")
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the service logs")
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL server")
    parser.add_argument(
        "--anchor",
        metavar="REV",
        help="also run this git revision, alternating with ours, and print the ratios",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each with --anchor")
    args = parser.parse_args()

    extra_env = dict(item.split("=", 1) for item in args.env)
    if args.anchor is None:
        _, failed = measure(args, extra_env, "ours")
        sys.exit(1 if failed else 0)
    root = Path(__file__).resolve().parents[1]
    scratch = Path(tempfile.mkdtemp(prefix="bench-anchor-"))
    tree = scratch / "anchor"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), args.anchor],
        cwd=root,
        check=True,
        capture_output=True,
    )
    rounds: list[tuple[list[PhaseResult], list[PhaseResult]]] = []
    failed = False
    try:
        # Alternating, so both see the same drift of a shared machine.
        anchor_env = {**extra_env, "PYTHONPATH": str(tree / "src")}
        for _ in range(args.rounds):
            theirs, _ = measure(args, anchor_env, f"anchor {args.anchor}")
            ours, ours_failed = measure(args, extra_env, "ours")
            failed = failed or ours_failed
            rounds.append((theirs, ours))
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True
        )
        shutil.rmtree(scratch, ignore_errors=True)
    compare(rounds, args.anchor)
    sys.exit(1 if failed else 0)


def worker_cpu(result: PhaseResult) -> float:
    """CPU per message of the process(es) running the jobs."""
    names = [n for n in result.cpu_ms_per_msg if n.startswith("worker")] or ["api"]
    return sum(result.cpu_ms_per_msg.get(n, 0.0) for n in names)


def compare(rounds: list[tuple[list[PhaseResult], list[PhaseResult]]], anchor: str) -> None:
    """Each round's figures side by side, and the median of the per-round ratios."""
    print()
    print(f"ours beside anchor {anchor}, per round (anchor / ours; ratio ours / anchor):")
    ratios: dict[float, list[float]] = {}
    for n, (theirs, ours) in enumerate(rounds, 1):
        for a, o in zip(theirs, ours, strict=False):
            ratio = worker_cpu(o) / worker_cpu(a)
            ratios.setdefault(o.rate, []).append(ratio)
            print(
                f"  round {n} {o.rate:>4.0f}/s: reply/s {a.reply_rate:.1f} / {o.reply_rate:.1f}"
                f"; p50 ms {percentile(a.overhead_ms, 50):.1f} / "
                f"{percentile(o.overhead_ms, 50):.1f}; p99 ms "
                f"{percentile(a.overhead_ms, 99):.1f} / {percentile(o.overhead_ms, 99):.1f}"
                f"; worker CPU ms/message {worker_cpu(a):.1f} / {worker_cpu(o):.1f}"
                f" (ratio {ratio:.2f})"
            )
    for rate, values in ratios.items():
        listed = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"  {rate:.0f}/s: worker CPU per message, median ratio {statistics.median(values):.2f}"
            f" (rounds: {listed})"
        )


def measure(
    args: argparse.Namespace, extra_env: dict[str, str], label: str
) -> tuple[list[PhaseResult], bool]:
    """One run: a scratch database, the service, the warm-up, then each rate."""
    admin = args.database_url or postgres.admin_url()
    workdir = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    repos = [f"bench-org/repo-{i:03d}" for i in range(args.repos)]
    fakes = FakesHandle(args.fakes)
    failed = False
    with scratch_database(admin) as database_url:
        service = Service(
            database_url=database_url,
            workdir=workdir,
            fake_urls=fakes.start(),
            separate_worker=args.separate_worker,
            log_level=args.log_level,
            workers=args.workers,
            extra_env=extra_env,
        )
        try:
            for repo in repos:
                fakes.call("add_issue", repo, ISSUE)
            service.migrate()
            service.start()
            url = make_url(database_url)
            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
            database = str(url.database)

            def pids() -> dict[str, list[int]]:
                found = {name: [p.pid] for name, p in service.processes.items()}
                found["postgres"] = asyncio.run(backend_pids(dsn, database))
                found["fakes" if args.fakes == "process" else "bench+fakes"] = [fakes.pid]
                if args.fakes == "process":
                    found["bench"] = [os.getpid()]
                return found

            # Warm-up: the first mention in each repository creates its project.
            for round_ in range(args.warmup):
                warm = [make_delivery(repo, args.padding) for repo in repos]
                rate = 10.0 if round_ == 0 else 50.0
                _, taken, _ = run_phase(service, fakes, warm, rate, 120.0, pids)
                missing = [d for d in warm if d.token not in taken["arrivals"]]
                if missing:
                    raise RuntimeError(f"warm-up: {len(missing)} replies missing")
            results: list[PhaseResult] = []
            for rate in args.rate:
                deliveries = [
                    make_delivery(repos[i % len(repos)], args.padding) for i in range(args.messages)
                ]
                deliveries_done, taken, cpu = run_phase(
                    service, fakes, deliveries, rate, args.drain_timeout, pids
                )
                result = summarise(rate, deliveries_done, taken, cpu)
                results.append(result)
                if result.replies < result.sent:
                    # A backlog left behind would distort every later rate's figures.
                    failed = True
                    print(f"{result.sent - result.replies} replies missing at {rate:.0f}/s")
                    break
                time.sleep(1)
            mode = (
                f"serve --no-worker + {args.workers} x orchestrator worker"
                if args.separate_worker
                else "serve (API + in-process worker)"
            )
            if args.env:
                mode += "; " + " ".join(args.env)
            report(
                results,
                f"{label}: {mode}; fakes {args.fakes}; {args.repos} repositories; "
                f"{args.messages} messages per rate; bench at {revision()}\n"
                "overhead = reply comment POST answered - 202 received",
            )
        finally:
            service.stop()
            fakes.stop()
            if args.keep_workdir or failed:
                print(f"service logs kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return results, failed


if __name__ == "__main__":
    main()
