"""Durable webhook ingress beside its anchor: ours against @octokit/webhooks, in one run.

Both servers get the same signed ~13 KB `issue_comment` (a new delivery id per request,
so every 2xx of ours is a new event row and its job, committed before the answer) from
wrk with the same threads and connections, in alternating rounds: ours, octokit, ours,
... Octokit's Node middleware only verifies the signature and stores nothing; it is the
pace a webhook receiver can reach on this machine. The figure is the median of the
per-round ratios (ours / octokit), which holds still while the machine's absolute speed
drifts.

Phases, each with its own rounds beside the anchor:
- `empty`: an empty store;
- `redis` (`--redis URL`): the rate limit counted in Redis (`RATE_LIMIT_STORAGE_URI`);
- `prefilled` (`--prefill N`): after N handled events were bulk-loaded into the store.
The growth and Redis figures are those phases' ratios over the empty store's.

    uv run python bench/webhook_ingress.py --rounds 3 --duration 10 \\
        [--prefill 1000000] [--redis redis://127.0.0.1:6379/0] [--api-processes 2]

Needs wrk (Debian package `wrk`), npm and node for the anchor (skipped, saying so, where
node is missing), and a PostgreSQL it may create a database on (default: the local
server on 127.0.0.1:5432, user postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import postgres
from tests.support.github_payloads import issue_comment

SECRET = "bench-secret-" + uuid.uuid4().hex
HERE = Path(__file__).resolve().parent
OCTOKIT_VERSION = "14.2.0"
ROUTE = "/webhooks/github"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_rss_mb(pid: int) -> list[float]:
    """RSS of the process and each of its children, in MB."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        return [p.memory_info().rss / 2**20 for p in processes if p.is_running()]
    except psutil.Error:
        return []


def wait_listening(url: str, path: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2):  # noqa: S310
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@dataclass
class Round:
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    rows: int | None = None
    jobs: int | None = None

    @property
    def accepted_rps(self) -> float:
        """2xx answers per second: a refusal (a 429, say) is quick and must not count."""
        if not self.requests:
            return 0.0
        return self.rps * (self.requests - self.non_2xx) / self.requests


def parse_wrk(target: str, output: str) -> Round:
    def latency_ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    def number(pattern: str) -> float:
        match = re.search(pattern, output, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    percentiles = {}
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.MULTILINE)
        percentiles[pct] = latency_ms(match.group(1)) if match else float("nan")
    errors = re.search(r"Socket errors: (.*)", output)
    return Round(
        target=target,
        rps=number(r"Requests/sec:\s+([\d.]+)"),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        requests=int(number(r"(\d+) requests in")),
        non_2xx=int(number(r"Non-2xx or 3xx responses: (\d+)")),
        socket_errors=sum(int(n) for n in re.findall(r"\d+", errors.group(1))) if errors else 0,
    )


class Store:
    """The scratch database: counts and the bulk pre-fill."""

    def __init__(self, database_url: str) -> None:
        self.dsn = database_url.replace("+asyncpg", "")

    def counts(self) -> tuple[int, int]:
        async def go() -> tuple[int, int]:
            conn = await asyncpg.connect(self.dsn)
            try:
                rows = await conn.fetchval("SELECT count(*) FROM inbound_events")
                jobs = await conn.fetchval("SELECT count(*) FROM pgqueuer")
                return int(rows), int(jobs)
            finally:
                await conn.close()

        return asyncio.run(go())

    def prefill(self, count: int) -> float:
        """`count` handled events of ~1 KB, as months of traffic leave them; seconds taken."""
        payload = orjson.dumps(issue_comment("@orchestrator an old comment", padding=600))

        async def go() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                chunk = 200_000
                for start in range(0, count, chunk):
                    await conn.execute(
                        """
                        INSERT INTO inbound_events (source, external_id, event_type, serial_key,
                            headers, payload, status, attempts, handled_at, received_at)
                        SELECT 'github', 'prefill-' || i, 'issue_comment',
                            'github:acme/repo-' || (i % 2000), '{}', $1::json, 'handled', 1,
                            now(), now() - make_interval(secs => $3 - i)
                        FROM generate_series($2::bigint, $3::bigint) AS i
                        """,
                        payload.decode(),
                        start + 1,
                        min(start + chunk, count),
                    )
                await conn.execute("VACUUM ANALYZE inbound_events")
            finally:
                await conn.close()

        started = time.monotonic()
        asyncio.run(go())
        return time.monotonic() - started


class Server:
    name = "server"
    pid: int | None = None

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


@dataclass
class Ours(Server):
    database_url: str
    workdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    api_processes: int = 1
    name: str = "ours"
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}},
            "APP_ENV": "production",
            "DATABASE_URL": self.database_url,
            "API_KEY": "bench-api-key-0123456789",
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "WEBHOOK_IP_FILTERING_ENABLED": "true",
            "GITHUB_WEBHOOK_IPS": "127.0.0.0/8",
            "DEFAULT_RATE_LIMIT": "100000000/minute",
            "TELEGRAM_MODE": "off",
            "LOG_LEVEL": "INFO",
            "AUDIT_LOG_PATH": str(self.workdir / "audit.log"),
            **self.env_extra,
        }
        command = ["orchestrator", "serve", "--no-worker", "--port", str(port)]
        if self.api_processes > 1:
            command += ["--api-processes", str(self.api_processes)]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.pid = self.process.pid
        url = f"http://127.0.0.1:{port}"
        wait_listening(url, "/health/ready")
        time.sleep(1.5)  # let startup's garbage settle before RSS is read
        return url

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


@dataclass
class Octokit(Server):
    folder: Path
    name: str = "octokit"
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def install(cls, scratch: Path) -> Octokit | None:
        if shutil.which("node") is None or shutil.which("npm") is None:
            print("anchor skipped: node or npm is not installed, so no ratio can be given")
            return None
        folder = scratch / "octokit"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text('{"private": true, "type": "module"}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"@octokit/webhooks@{OCTOKIT_VERSION}"],
            cwd=folder,
            check=True,
            capture_output=True,
        )
        shutil.copy(HERE / "octokit_server.mjs", folder / "server.mjs")
        return cls(folder)

    def start(self) -> str:
        port = free_port()
        self.process = subprocess.Popen(
            ["node", "server.mjs", str(port), SECRET],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.process.pid
        url = f"http://127.0.0.1:{port}"
        wait_listening(url, ROUTE)
        return url

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


def drive(url: str, body: Path, signature: Path, args: argparse.Namespace) -> str:
    return subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "--latency",
            "-s",
            str(HERE / "webhook_ingress.lua"),
            f"{url}{ROUTE}",
            "--",
            str(body),
            str(signature),
            uuid.uuid4().hex[:12],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@dataclass
class Phase:
    label: str
    rounds: list[Round] = field(default_factory=list)
    idle_rss: list[float] = field(default_factory=list)
    load_rss: list[float] = field(default_factory=list)
    octokit_rss: list[float] = field(default_factory=list)

    def of(self, target: str) -> list[Round]:
        return [r for r in self.rounds if r.target == target]

    def ratios(self) -> list[float]:
        return [
            o.accepted_rps / a.accepted_rps
            for o, a in zip(self.of("ours"), self.of("octokit"), strict=False)
            if a.accepted_rps
        ]


def run_phase(
    label: str,
    ours: Ours,
    anchor: Octokit | None,
    store: Store,
    files: tuple[Path, Path],
    args: argparse.Namespace,
) -> Phase:
    phase = Phase(label)
    ours_url = ours.start()
    anchor_url = anchor.start() if anchor else None
    try:
        assert ours.pid is not None
        phase.idle_rss = tree_rss_mb(ours.pid)
        drive(ours_url, *files, argparse.Namespace(**{**vars(args), "duration": 5}))  # warm-up
        if anchor_url:
            drive(anchor_url, *files, argparse.Namespace(**{**vars(args), "duration": 2}))
        for _ in range(args.rounds):
            rows_before, jobs_before = store.counts()
            result = parse_wrk("ours", drive(ours_url, *files, args))
            phase.load_rss = max(phase.load_rss, tree_rss_mb(ours.pid), key=sum)
            rows_after, jobs_after = store.counts()
            result.rows, result.jobs = rows_after - rows_before, jobs_after - jobs_before
            phase.rounds.append(result)
            report(label, result)
            if anchor is not None and anchor_url is not None:
                result = parse_wrk("octokit", drive(anchor_url, *files, args))
                assert anchor.pid is not None
                phase.octokit_rss = tree_rss_mb(anchor.pid)
                phase.rounds.append(result)
                report(label, result)
    finally:
        ours.stop()
        if anchor:
            anchor.stop()
    return phase


def report(label: str, r: Round) -> None:
    stored = "" if r.rows is None else f"  rows {r.rows} jobs {r.jobs}"
    errors = r.non_2xx + r.socket_errors
    print(
        f"  {label:<10} {r.target:<8} {r.accepted_rps:>9.0f} 2xx/s  p50 {r.p50_ms:>6.2f} ms  "
        f"p99 {r.p99_ms:>6.2f} ms  2xx {r.requests - r.non_2xx:>7}  errors {errors}{stored}",
        flush=True,
    )


def summarise(phases: list[Phase]) -> None:
    print("\nsummary (medians over rounds)")
    base: float | None = None
    for phase in phases:
        ours = phase.of("ours")
        accepted = statistics.median(r.accepted_rps for r in ours)
        line = (
            f"  {phase.label:<10} ours {accepted:>7.0f} 2xx/s "
            f"p99 {statistics.median(r.p99_ms for r in ours):>6.2f} ms"
        )
        ratios = phase.ratios()
        if ratios:
            ratio = statistics.median(ratios)
            octokit = phase.of("octokit")
            line += (
                f" | octokit {statistics.median(r.accepted_rps for r in octokit):>7.0f} 2xx/s "
                f"p99 {statistics.median(r.p99_ms for r in octokit):>6.2f} ms"
                f" | ratio {ratio:.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
            )
            if base is None:
                base = ratio
            else:
                line += f" | vs empty {ratio / base:.2f}"
        print(line)
        answered = sum(r.requests - r.non_2xx for r in ours)
        rows = sum(r.rows or 0 for r in ours)
        jobs = sum(r.jobs or 0 for r in ours)
        # wrk stops its clock with requests in flight: those are stored but not counted
        # as answered, so rows may exceed the 2xx by a few. Fewer would be a loss.
        verdict = "every 2xx stored" if rows >= answered and jobs == rows else "LOST"
        refused = sum(r.non_2xx + r.socket_errors for r in phase.rounds)
        if refused:
            verdict += f"; {refused} answers not 2xx or failed (ERRORS: not in the figures)"
        print(
            f"  {'':<10} 2xx {answered}, rows {rows}, jobs {jobs}: {verdict}; "
            f"ours RSS MB idle {', '.join(f'{x:.0f}' for x in phase.idle_rss)}, "
            f"loaded {', '.join(f'{x:.0f}' for x in phase.load_rss)}; "
            f"octokit {', '.join(f'{x:.0f}' for x in phase.octokit_rss) or '-'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL server")
    parser.add_argument("--duration", type=int, default=10, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target and phase")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--api-processes", type=int, default=1)
    parser.add_argument("--prefill", type=int, default=0, help="events stored before a phase")
    parser.add_argument("--redis", help="also run a phase with this RATE_LIMIT_STORAGE_URI")
    parser.add_argument("--no-anchor", action="store_true", help="ours alone, no ratio")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="more settings"
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)

    admin = args.database_url or postgres.admin_url()
    database_url = postgres.create_database(admin)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingress-"))
    body = orjson.dumps(issue_comment("@orchestrator please build the thing", padding=12_000))
    (workdir / "body.json").write_bytes(body)
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    (workdir / "signature").write_text(signature)
    files = (workdir / "body.json", workdir / "signature")
    store = Store(database_url)
    try:
        anchor = None if args.no_anchor else Octokit.install(workdir)
        print(
            f"{time.strftime('%Y-%m-%d %H:%M')}  body {len(body)} bytes; wrk -t{args.threads} "
            f"-c{args.connections} -d{args.duration}s; {args.rounds} rounds per phase; "
            f"api processes {args.api_processes}; anchor "
            f"{'@octokit/webhooks ' + OCTOKIT_VERSION if anchor else 'none'}",
            flush=True,
        )

        def ours(**env: str) -> Ours:
            return Ours(database_url, workdir, {**extra, **env}, args.api_processes)

        phases = [run_phase("empty", ours(), anchor, store, files, args)]
        if args.redis:
            phases.append(
                run_phase(
                    "redis", ours(RATE_LIMIT_STORAGE_URI=args.redis), anchor, store, files, args
                )
            )
        if args.prefill:
            seconds = store.prefill(args.prefill)
            print(f"  pre-filled {args.prefill} events in {seconds:.0f} s", flush=True)
            phases.append(run_phase("prefilled", ours(), anchor, store, files, args))
        summarise(phases)
    finally:
        postgres.drop_database(admin, database_url)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
