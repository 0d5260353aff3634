"""X-Hub-Signature-256: HMAC-SHA256 of the raw body, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

PREFIX = "sha256="
_HEX_DIGITS = frozenset("0123456789abcdef")


def sign(secret: bytes, body: bytes) -> str:
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_matches(header: str | None, body: bytes, secrets: Sequence[bytes]) -> bool:
    """True when the header is a well-formed signature made with any one of `secrets`.

    Several secrets are accepted so that one can be rotated without downtime. Every secret
    is tried even after a match, so timing does not tell which one (or whether any) matched.
    """
    if not header or not header.startswith(PREFIX):
        return False
    digest = header[len(PREFIX) :].lower()
    if len(digest) != 64 or not _HEX_DIGITS.issuperset(digest):
        return False
    expected = digest.encode("ascii")
    matched = False
    for secret in secrets:
        # One-shot: OpenSSL's HMAC in one call, without building an hmac object.
        computed = hmac.digest(secret, body, "sha256").hex().encode("ascii")
        matched |= hmac.compare_digest(computed, expected)
    return matched
