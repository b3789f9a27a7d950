"""Metrics listen where they are told: METRICS_HOST, else the gRPC host; never every interface."""

from __future__ import annotations

import socket

import pytest

from mangakai_devstack.stack import Stack, StackFactory


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except ConnectionRefusedError:
        return False


@pytest.fixture(scope="module")
def bound_stack(make_module_stack: StackFactory) -> Stack:
    # The gateway is given no METRICS_HOST (its gRPC host, 127.0.0.1, applies); storage another address.
    return make_module_stack({"gateway": {"METRICS_HOST": ""}, "storage": {"METRICS_HOST": "127.0.0.3"}})


@pytest.mark.parametrize("service", ["gateway", "orchestrator", "renderer"])
def test_metrics_default_to_the_grpc_host(bound_stack: Stack, service: str) -> None:
    port = bound_stack.service(service).ports["metrics_port"]
    assert _accepts("127.0.0.1", port)
    # Linux routes all of 127.0.0.0/8 to loopback: a wildcard listener would accept here too.
    assert not _accepts("127.0.0.2", port)


def test_metrics_host_is_obeyed(bound_stack: Stack) -> None:
    port = bound_stack.service("storage").ports["metrics_port"]
    assert _accepts("127.0.0.3", port)
    assert not _accepts("127.0.0.1", port)
