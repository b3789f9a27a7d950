"""Which address a call is counted against (mangakai_gateway.client_address)."""

from __future__ import annotations

import pytest

from mangakai_gateway.client_address import ClientAddresses, grpc_peer_host, host_of, parse_networks
from mangakai_gateway.settings import GatewaySettings


def test_peer_strings_of_both_protocols_give_the_host() -> None:
    assert grpc_peer_host("ipv4:203.0.113.7:51234") == "203.0.113.7"
    assert grpc_peer_host("ipv6:[2001:db8::1]:51234") == "2001:db8::1"
    assert grpc_peer_host("ipv4:10.2.1.1:57284,127.0.0.1:57284") == "10.2.1.1"
    assert host_of("203.0.113.7:51234") == "203.0.113.7"
    assert host_of("2001:db8::1:51234") == "2001:db8::1"  # connectrpc's unbracketed form
    assert host_of("[2001:db8::1]:51234") == "2001:db8::1"


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    untrusting = ClientAddresses([])
    assert untrusting.resolve("203.0.113.7", "198.51.100.1") == "203.0.113.7"
    trusting = ClientAddresses(parse_networks("10.0.0.0/8, 192.0.2.10"))
    # Straight from a client: its own header is not believed.
    assert trusting.resolve("203.0.113.7", "198.51.100.1") == "203.0.113.7"
    # Through the ingress: the rightmost address the ingress did not add is the client.
    assert trusting.resolve("10.1.2.3", "198.51.100.1") == "198.51.100.1"
    # A client that sends its own X-Forwarded-For cannot hide behind it.
    assert trusting.resolve("10.1.2.3", "6.6.6.6, 198.51.100.1") == "198.51.100.1"
    # Two trusted hops (CDN -> ingress) are skipped.
    assert trusting.resolve("10.1.2.3", "198.51.100.1, 192.0.2.10") == "198.51.100.1"
    # Garbage in the header stops the walk at the last address that made sense.
    assert trusting.resolve("10.1.2.3", "198.51.100.1, not-an-ip, 192.0.2.10") == "192.0.2.10"
    assert trusting.resolve("10.1.2.3", "") == "10.1.2.3"


def test_ipv6_callers_are_counted_by_their_64() -> None:
    addresses = ClientAddresses([])
    first = addresses.resolve("2001:db8:1:2:aaaa::1")
    assert first == addresses.resolve("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert addresses.resolve("2001:db8:1:3::1") != first
    assert addresses.resolve("::ffff:203.0.113.7") == "203.0.113.7"


def test_a_bad_trusted_proxies_setting_stops_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@127.0.0.1/x")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, ingress")
    with pytest.raises(SystemExit) as stopped:
        GatewaySettings.from_env()
    assert "TRUSTED_PROXIES" in str(stopped.value) and "'ingress'" in str(stopped.value)
