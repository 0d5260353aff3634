"""Who is calling: the socket peer, or the client a trusted proxy says it forwarded.

X-Forwarded-For is believed only when the peer is a trusted proxy, and then only as far as
the chain stays inside trusted proxies: the first untrusted hop from the right is the client.
Anything else would let a caller pick its own address and walk past the IP filter.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket is still that IPv4 client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_for(request: HTTPConnection) -> str | None:
    """Every X-Forwarded-For line, as one list.

    HTTP makes repeated lines of a list header one list, in order. Reading only the first
    line would let a client put a spoofed line before the one its proxy appends."""
    lines = request.headers.getlist("x-forwarded-for")
    return ",".join(lines) if lines else None


@dataclass(frozen=True)
class ClientResolver:
    trusted_proxies: tuple[Network, ...] = ()

    def _trusted(self, address: Address) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The caller's address as text, or None when the peer is unknown."""
        peer_address = _address(peer) if peer else None
        if peer_address is None:
            return None
        if not forwarded_for or not self._trusted(peer_address):
            return str(peer_address)
        client = peer_address
        for hop in reversed(forwarded_for.split(",")):
            hop_address = _address(hop)
            if hop_address is None:
                # Garbage in the chain: stop at the last address we could vouch for.
                break
            client = hop_address
            if not self._trusted(hop_address):
                break
        return str(client)


@dataclass(frozen=True)
class IpAllowList:
    networks: tuple[Network, ...]

    def allows(self, ip: str | None) -> bool:
        address = _address(ip) if ip else None
        return address is not None and any(address in network for network in self.networks)
