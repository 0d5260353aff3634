"""Signed links to a project's read-only page: whoever holds one may look, until it expires.

A link names the project and its expiry and carries an HMAC-SHA256 over both, keyed by
PAGE_LINK_SECRET: nothing is stored, every process checks a link alone, and rotating the
key revokes every link out there. Expiries are rounded up to the hour, so the same
project's link reads the same for an hour (a message that quotes it stays unchanged
when it is rendered again).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from project_orchestrator.config import Settings

PAGE_PATH = "/page"
_ROUNDING_SECONDS = 3600
# The key signs only this: a signature made for anything else never opens a page.
_PURPOSE = b"project-page:v1:"


class LinkRefused(Exception):
    """Why a link opens nothing (safe to log: it never quotes the link)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PageLinks:
    base_url: str
    key: bytes
    ttl: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> PageLinks | None:
        """None unless both the service's address and the signing key are set."""
        if settings.public_base_url is None or settings.page_link_secret is None:
            return None
        return cls(
            settings.public_base_url,
            settings.page_link_secret.get_secret_value().encode(),
            timedelta(seconds=settings.page_link_ttl_seconds),
        )

    def link(self, project_id: uuid.UUID, now: datetime | None = None) -> str:
        return f"{self.base_url}{PAGE_PATH}/{self.token(project_id, now)}"

    def token(self, project_id: uuid.UUID, now: datetime | None = None) -> str:
        moment = (now or datetime.now(UTC)) + self.ttl
        expires = math.ceil(moment.timestamp() / _ROUNDING_SECONDS) * _ROUNDING_SECONDS
        return f"{project_id.hex}.{expires}.{self._signature(project_id.hex, expires)}"

    def open(self, token: str, now: datetime | None = None) -> uuid.UUID:
        """The project a token opens; `LinkRefused` says why not."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 12:
            raise LinkRefused("malformed")
        project_hex, expires_text, signature = parts
        try:
            project_id = uuid.UUID(hex=project_hex)
        except ValueError:
            raise LinkRefused("malformed") from None
        expires = int(expires_text)
        # Compared before the expiry is believed: an unsigned expiry says nothing.
        expected = self._signature(project_id.hex, expires)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise LinkRefused("bad signature")
        if (now or datetime.now(UTC)).timestamp() >= expires:
            raise LinkRefused("expired")
        return project_id

    def _signature(self, project_hex: str, expires: int) -> str:
        message = _PURPOSE + f"{project_hex}:{expires}".encode()
        digest = hmac.new(self.key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# The worker's notices quote the link without being handed it (as `configure_prices`).
_configured: PageLinks | None = None


def configure_page_links(links: PageLinks | None) -> None:
    global _configured
    _configured = links


def page_link(project_id: uuid.UUID) -> str | None:
    """The project's page link, or None where pages are not set up."""
    return _configured.link(project_id) if _configured is not None else None
