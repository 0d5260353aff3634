"""Our overhead per SCAR command, beside SCAR's own time for it, in one run.

The real `HttpScarClient` drives the fake SCAR of `tests/support/fake_scar.py` (SCAR's
wording and timing: built-ins take `--builtin-ms`, as the real SCAR's 50-100 ms) served
from a child process, so the client and SCAR do not share a GIL. For every command the
fake notes when it started and finished processing each message (the monotonic clock is
shared between processes); SCAR's own time is the sum of those, and our overhead is the
client's wall time minus it: polling, the HTTP round trips, reading the listing.

Scenarios, each `--commands` times, a new conversation each:
- `command`: a later command of a run, in the run's conversation (the repository is
  open): mode, settle, clear, send, wait, read. It answers like a built-in, in
  `--builtin-ms`.
- `first`: a run's first command: `/repo <folder> pull`, `/commands`, then the command.
- `ai`: a command whose AI works for `--ai-ms`.

Output: per scenario p50/p99 of SCAR's own time, of our overhead, and the ratio of wall
time to SCAR's time (1.0 would be no overhead at all). `--poll-interval` is
SCAR_POLL_INTERVAL_SECONDS (default 2 s, the service's default): a client that looked
only once per interval could not finish a command in less than that.

    uv run python bench/scar_command.py
    uv run python bench/scar_command.py --commands 200 --poll-interval 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from project_orchestrator.scar.http_transport import HttpScarClient
from project_orchestrator.scar.protocol import ScarInvocation
from tests.support.fake_http import FakeServer
from tests.support.fake_scar import FakeScar

REPO = "acme/widgets"


def _serve(conn: Connection, builtin_s: float, ai_s: float) -> None:
    fake = FakeScar(builtin_delay=builtin_s)
    commands = {f".claude/commands/{name}.md": f"# {name}\n" for name in ("quick", "work")}
    fake.remote(REPO, files=commands)
    fake.add_repo(REPO)
    fake.script("quick", "Done.", delay=builtin_s)
    fake.script("work", "Worked.", delay=ai_s)

    async def timings(_request: Request) -> JSONResponse:
        return JSONResponse([list(t) for t in fake.timings])

    app = Starlette(routes=[Route("/bench/timings", timings), Mount("/", app=fake.app)])
    with FakeServer(app) as server:
        conn.send(server.url)
        conn.recv()  # until the bench is done


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _scenario(
    client: HttpScarClient,
    url: str,
    name: str,
    invocation: ScarInvocation,
    count: int,
    *,
    shared: str | None = None,
) -> dict[str, Any]:
    """`count` commands, each in a new conversation or all in `shared` (one run's)."""
    windows: list[tuple[str, float, float]] = []
    for n in range(count):
        cid = shared or f"bench-{name}-{n}"
        started = time.monotonic()
        await client.run(replace(invocation, conversation_id=cid))
        windows.append((cid, started, time.monotonic()))
    async with httpx.AsyncClient() as http:
        rows = (await http.get(f"{url}/bench/timings")).json()
    walls, own = [], []
    for cid, started, ended in windows:
        walls.append(ended - started)
        own.append(
            sum(e - b for c, _text, b, e in rows if c == cid and started <= b and e <= ended)
        )
    overhead = [w - o for w, o in zip(walls, own, strict=True)]
    ratio = [w / o for w, o in zip(walls, own, strict=True) if o > 0]
    return {
        "scenario": name,
        "commands": count,
        "scar_p50_ms": 1000 * statistics.median(own),
        "scar_p99_ms": 1000 * _percentile(own, 0.99),
        "overhead_p50_ms": 1000 * statistics.median(overhead),
        "overhead_p99_ms": 1000 * _percentile(overhead, 0.99),
        "wall_p99_ms": 1000 * _percentile(walls, 0.99),
        "ratio_p50": statistics.median(ratio),
        "ratio_p99": _percentile(ratio, 0.99),
    }


async def _bench(args: argparse.Namespace, url: str) -> list[dict[str, Any]]:
    client = HttpScarClient(url, timeout_seconds=120, poll_interval=args.poll_interval)
    base = ScarInvocation("x", REPO, f"https://github.com/{REPO}", "quick", open_repository=False)
    try:
        # One run's conversation, its repository opened by its first command.
        await client.run(replace(base, conversation_id="bench-run", open_repository=True))
        return [
            await _scenario(client, url, "command", base, args.commands, shared="bench-run"),
            await _scenario(
                client, url, "first", replace(base, open_repository=True), args.commands
            ),
            await _scenario(
                client,
                url,
                "ai",
                replace(base, command="work"),
                max(5, args.commands // 5),
                shared="bench-run",
            ),
        ]
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=100)
    parser.add_argument("--builtin-ms", type=float, default=75.0)
    parser.add_argument("--ai-ms", type=float, default=1000.0)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(
        target=_serve, args=(child, args.builtin_ms / 1000, args.ai_ms / 1000), daemon=True
    )
    server.start()
    try:
        url = parent.recv()
        results = asyncio.run(_bench(args, url))
    finally:
        parent.send("done")
        server.join(timeout=10)
    print(
        f"poll interval {args.poll_interval:g} s, built-ins {args.builtin_ms:g} ms, "
        f"AI {args.ai_ms:g} ms"
    )
    header = (
        "scenario", "n", "SCAR p50", "SCAR p99", "ours p50", "ours p99", "wall p99",
        "wall/SCAR p50", "wall/SCAR p99",
    )  # fmt: skip
    print(" | ".join(header))
    for r in results:
        print(
            f"{r['scenario']} | {r['commands']} | {r['scar_p50_ms']:.0f} ms | "
            f"{r['scar_p99_ms']:.0f} ms | {r['overhead_p50_ms']:.0f} ms | "
            f"{r['overhead_p99_ms']:.0f} ms | {r['wall_p99_ms']:.0f} ms | "
            f"{r['ratio_p50']:.2f} | {r['ratio_p99']:.2f}"
        )
    command = results[0]
    verdict = "met" if command["wall_p99_ms"] < 300 else "NOT met"
    print(
        f"built-in-sized command round trip p99 {command['wall_p99_ms']:.0f} ms: < 300 ms {verdict}"
    )


if __name__ == "__main__":
    main()
