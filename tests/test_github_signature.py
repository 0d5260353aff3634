"""Signature checks, client addresses and comment parsing: the pure parts of ingress."""

from __future__ import annotations

import pytest

from project_orchestrator.ingress.client_ip import ClientResolver, IpAllowList, parse_networks
from project_orchestrator.ingress.github.commands import parse_comment
from project_orchestrator.ingress.github.signature import sign, signature_matches

# GitHub's published test vector (docs: "Validating webhook deliveries").
VECTOR_SECRET = b"It's a Secret to Everybody"
VECTOR_BODY = b"Hello, World!"
VECTOR_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_githubs_published_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_BODY) == VECTOR_SIGNATURE
    assert signature_matches(VECTOR_SIGNATURE, VECTOR_BODY, [VECTOR_SECRET])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
        VECTOR_SIGNATURE[:-1],
        VECTOR_SIGNATURE[:-1] + "0",
        VECTOR_SIGNATURE.replace("7571", "zz71"),
        "sha256=" + "0" * 64,
    ],
)
def test_malformed_or_wrong_signatures_fail(header: str | None) -> None:
    assert not signature_matches(header, VECTOR_BODY, [VECTOR_SECRET])


def test_any_configured_secret_verifies_for_rotation() -> None:
    assert signature_matches(VECTOR_SIGNATURE, VECTOR_BODY, [b"new-secret", VECTOR_SECRET])
    assert not signature_matches(VECTOR_SIGNATURE, VECTOR_BODY, [b"new-secret"])
    assert not signature_matches(VECTOR_SIGNATURE, VECTOR_BODY, [])
    # The body is what is signed: one changed byte fails.
    assert not signature_matches(VECTOR_SIGNATURE, b"Hello, World?", [VECTOR_SECRET])
    # Upper-case hex is the same digest.
    assert signature_matches(
        VECTOR_SIGNATURE.upper().replace("SHA256", "sha256"), VECTOR_BODY, [VECTOR_SECRET]
    )


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    resolver = ClientResolver(parse_networks(["10.0.0.0/8"]))
    # Untrusted peer: its X-Forwarded-For is ignored.
    assert resolver.client_ip("203.0.113.9", "140.82.112.1") == "203.0.113.9"
    # Trusted proxy: the first untrusted hop from the right is the client.
    assert resolver.client_ip("10.0.0.2", "140.82.112.1") == "140.82.112.1"
    assert resolver.client_ip("10.0.0.2", "6.6.6.6, 140.82.112.1, 10.0.0.3") == "140.82.112.1"
    # Garbage in the chain stops the walk at the last address that was vouched for.
    assert resolver.client_ip("10.0.0.2", "140.82.112.1, not-an-ip") == "10.0.0.2"
    # An IPv4 client on an IPv6 socket.
    assert resolver.client_ip("::ffff:140.82.112.1", None) == "140.82.112.1"
    assert resolver.client_ip(None, "140.82.112.1") is None


def test_allow_list() -> None:
    allow = IpAllowList(parse_networks(["140.82.112.0/20", "2a0a:a440::/29"]))
    assert allow.allows("140.82.112.1")
    assert allow.allows("2a0a:a440::1")
    assert not allow.allows("140.82.128.1")
    assert not allow.allows(None)
    assert not allow.allows("nonsense")


def test_mention_must_be_a_whole_word() -> None:
    assert parse_comment("hey @orchestrator can you help", "@orchestrator").mentioned
    assert parse_comment("@Orchestrator, hi", "@orchestrator").mentioned
    assert not parse_comment("hey @orchestratorx", "@orchestrator").mentioned
    assert not parse_comment("mail me@orchestrator.dev", "@orchestrator").mentioned
    assert not parse_comment("no mention here", "@orchestrator").mentioned
    # Quoting someone who mentioned the bot is not a mention.
    assert not parse_comment("> @orchestrator /approve\nI disagree", "@orchestrator").mentioned
    assert not parse_comment("```\n@orchestrator /approve\n```", "@orchestrator").mentioned


def test_commands_one_per_line_and_the_rest_is_a_message() -> None:
    parsed = parse_comment(
        "@orchestrator /status\nAlso, I'd like dark mode.\n/reject needs tests\n/frobnicate",
        "@orchestrator",
    )
    assert [(c.name, c.argument) for c in parsed.commands] == [
        ("status", ""),
        ("reject", "needs tests"),
    ]
    assert parsed.unknown_commands == ["frobnicate"]
    assert parsed.message == "Also, I'd like dark mode."
