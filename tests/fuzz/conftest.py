"""The fuzz tests run against a real stack, with the integration tests' servers."""

from __future__ import annotations

import os

from tests.integration.conftest import make_module_stack, nats, postgres

__all__ = ["make_module_stack", "nats", "postgres"]

# The services inherit this environment: never let a developer's key send test traffic to Gemini.
os.environ.pop("GEMINI_API_KEY", None)
