"""Fixtures of the fault matrix: per module, a counting fake Gemini and a stack of its own.

Every test here is marked `integration` (it starts real servers).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from mangakai_devstack.stack import Stack
from tests.faults.harness import CountingGemini
from tests.integration.mesh_client import Session, new_session

HERE = Path(__file__).parent

# The services inherit this environment: never let a developer's key send test traffic to Gemini.
os.environ.pop("GEMINI_API_KEY", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def gemini() -> Iterator[CountingGemini]:
    with CountingGemini() as fake:
        yield fake


@pytest.fixture
async def session(stack: Stack) -> AsyncIterator[Session]:
    """A new session on the module's stack (each module defines `stack`)."""
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        yield await new_session(channel)
