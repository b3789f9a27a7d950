"""The address a call comes from, as the per-address rate limit counts it.

The direct peer (gRPC `context.peer()`, the ASGI scope's client) is the
caller unless it is one of the proxies named in TRUSTED_PROXIES; only then is
X-Forwarded-For read, from the right, skipping trusted hops, so a client
cannot pick its own address by sending the header. IPv6 callers are counted
by their /64: one subscriber usually holds a whole /64 and could otherwise
take a new address for every call.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

IPV6_PREFIX = 64


def parse_networks(text: str) -> list[Network]:
    """Comma-separated addresses or CIDR blocks; ValueError naming the bad entry."""
    networks: list[Network] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR block") from None
    return networks


def _ip(text: str) -> Address | None:
    text = text.strip().strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def grpc_peer_host(peer: str) -> str:
    """The host of a grpc peer string: "ipv4:1.2.3.4:5" -> "1.2.3.4", "ipv6:[::1]:5" -> "::1"."""
    kind, _, rest = peer.split(",", 1)[0].partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]")
    return peer


def host_of(address: str) -> str:
    """The host of a "host:port" string (IPv6 with or without brackets)."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    host, sep, port = address.rpartition(":")
    return host if sep and port.isdigit() else address


class ClientAddresses:
    """Resolves the caller's address from the direct peer and, behind trusted proxies, X-Forwarded-For."""

    def __init__(self, trusted_proxies: Sequence[Network]) -> None:
        self._trusted = list(trusted_proxies)

    def _is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self._trusted)

    def resolve(self, peer_host: str, forwarded_for: str = "") -> str:
        """The rate-limit key of a caller: an IPv4 address, an IPv6 /64, or the raw peer if it is no IP."""
        peer = _ip(peer_host)
        if peer is None:
            return peer_host or "unknown"
        client = peer
        if self._trusted and self._is_trusted(peer) and forwarded_for:
            # The rightmost hop not added by one of our proxies is the one we can believe.
            for hop in reversed(forwarded_for.split(",")):
                address = _ip(hop)
                if address is None:
                    break
                client = address
                if not self._is_trusted(address):
                    break
        return _key(client)


def _key(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
