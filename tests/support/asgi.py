"""Driving an ASGI app by hand, message by message: for what no HTTP client can do, such
as hanging up half-way through a body."""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]


def http_scope(
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    method: str = "POST",
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": ("t", 80),
        "state": {},
    }


def header_lines(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


class Exchange:
    """One request: the messages the app will receive, in order (then a disconnect), and
    what it sent back, and how often it asked for the body."""

    def __init__(self, messages: list[Message]) -> None:
        self.pending = list(messages)
        self.sent: list[Message] = []
        self.asked = 0

    async def receive(self) -> Message:
        self.asked += 1
        return self.pending.pop(0) if self.pending else {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def run(self, app: Any, scope: dict[str, Any]) -> Exchange:
        await app(scope, self.receive, self.send)
        return self

    @property
    def statuses(self) -> list[int]:
        return [m["status"] for m in self.sent if m["type"] == "http.response.start"]
