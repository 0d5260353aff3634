"""The webhook routes' view of a request and their answers, built for the hot path.

Starlette's `Headers` scans and decodes every header line on each lookup; the routes read
about a dozen, so they take one snapshot of the raw lines instead. Their answers are
Starlette responses whose header lines are written out once, not assembled through
`MutableHeaders`.
"""

from __future__ import annotations

import orjson
from fastapi.responses import Response
from starlette.requests import Request

_JSON = (b"content-type", b"application/json")


class RequestHeaders:
    """The request's header lines by (lowercase) name; a repeated line's last value."""

    __slots__ = ("_lines",)

    def __init__(self, request: Request) -> None:
        # ASGI servers hand names over lowercased.
        self._lines: dict[bytes, bytes] = dict(request.scope["headers"])

    def get(self, name: bytes) -> str | None:
        value = self._lines.get(name)
        # Latin-1, as Starlette decodes them: every byte maps to one character.
        return None if value is None else value.decode("latin-1")

    def __contains__(self, name: bytes) -> bool:
        return name in self._lines


class Answer(Response):
    """A JSON answer with its header lines ready to send."""

    media_type = "application/json"

    def __init__(
        self, status: int, body: dict[str, object], headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status_code = status
        self.background = None
        self.body = orjson.dumps(body)
        self.raw_headers = [_JSON, (b"content-length", str(len(self.body)).encode())]
        if headers:
            self.raw_headers.extend(headers)

    def add_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.raw_headers.extend(headers)
