"""Load test of POST /webhooks/github against `orchestrator serve --no-worker`.

Signed ~13 KB issue_comment payloads, a unique delivery id per request (so every 202 is a
new row and a new job, durably committed), driven by wrk at 16 and 64 connections.
Reports requests/s, p50/p99 latency, errors, rows stored and server RSS.

    uv run python bench/webhook_ingress.py [--database-url URL] [--duration 20]

Needs wrk (Debian package `wrk`) and a PostgreSQL it may create a database on (default:
the local server on 127.0.0.1:5432, user postgres).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import postgres
from tests.support.github_payloads import issue_comment

SECRET = "bench-secret-" + uuid.uuid4().hex
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def parse_wrk(output: str) -> dict[str, float]:
    def latency_ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    result: dict[str, float] = {}
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    result["requests"] = float(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.MULTILINE)
        result[f"p{pct}_ms"] = latency_ms(match.group(1)) if match else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    errors = re.search(r"Socket errors: (.*)", output)
    result["socket_errors"] = (
        float(sum(int(n) for n in re.findall(r"\d+", errors.group(1)))) if errors else 0.0
    )
    return result


def count_rows(database_url: str, table: str) -> int:
    import asyncio

    async def go() -> int:
        conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
        finally:
            await conn.close()

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL server")
    parser.add_argument("--duration", type=int, default=20, help="seconds per run")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()

    admin = args.database_url or postgres.admin_url()
    database_url = postgres.create_database(admin)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    body = orjson.dumps(issue_comment("@orchestrator please build the thing", padding=12_000))
    (workdir / "body.json").write_bytes(body)
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    (workdir / "signature").write_text(signature)

    env = {
        **{k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}},
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "API_KEY": "bench-api-key",
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_IP_FILTERING_ENABLED": "true",
        "GITHUB_WEBHOOK_IPS": "127.0.0.0/8",
        "DEFAULT_RATE_LIMIT": "100000000/minute",
        "TELEGRAM_MODE": "off",
        "LOG_LEVEL": "INFO",
        "AUDIT_LOG_PATH": str(workdir / "audit.log"),
    }
    server = subprocess.Popen(
        ["orchestrator", "serve", "--no-worker", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(url)
        time.sleep(1)
        idle_rss = rss_mb(server.pid)
        print(f"body {len(body)} bytes; idle server RSS {idle_rss:.1f} MB")
        print(f"{'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'RSS MB':>7}")
        stored_before = count_rows(database_url, "inbound_events")
        total_ok = 0
        for connections in args.connections:
            tag = uuid.uuid4().hex[:8]
            output = subprocess.run(
                [
                    "wrk",
                    "-t2",
                    f"-c{connections}",
                    f"-d{args.duration}s",
                    "--latency",
                    "-s",
                    str(HERE / "webhook_ingress.lua"),
                    f"{url}/webhooks/github",
                    "--",
                    str(workdir / "body.json"),
                    str(workdir / "signature"),
                    tag,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            r = parse_wrk(output)
            total_ok += int(r["requests"] - r["non_2xx"])
            errors = int(r["non_2xx"] + r["socket_errors"])
            print(
                f"{connections:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                f"{errors:>7} {rss_mb(server.pid):>7.1f}"
            )
        stored = count_rows(database_url, "inbound_events") - stored_before
        jobs = count_rows(database_url, "pgqueuer")
        # wrk counts only completed responses; every 2xx must be a committed row and job.
        print(f"2xx responses {total_ok}; rows stored {stored}; jobs queued {jobs}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        postgres.drop_database(admin, database_url)


if __name__ == "__main__":
    main()
