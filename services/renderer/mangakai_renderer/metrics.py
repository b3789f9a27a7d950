"""Prometheus metrics of the renderer, and the draw activity its autoscaling reads.

`mangakai_renderer_in_flight` counts draws from the moment they take a slot,
quota waits included. What the HPA scales on is
`mangakai_renderer_draws_running`: a draw blocked on the Gemini project's
per-minute budget is moved from there to `mangakai_renderer_quota_waiting`
while it waits, since more replicas cannot draw any faster against a shared
budget. `drawing()` and `waiting_for_quota()` keep the two gauges apart: the
servicer wraps a draw in the first, the quota wraps its waits in the second,
and a context variable tells the quota whether its caller is a draw.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import prometheus_client

PANELS_DRAWN = prometheus_client.Counter(
    "mangakai_renderer_panels_drawn_total",
    "Panels actually drawn (not served from an existing blob).",
    ["backend"],
)
PANELS_REUSED = prometheus_client.Counter(
    "mangakai_renderer_panels_reused_total", "RenderPanel calls answered with an already stored blob."
)
DRAW_SECONDS = prometheus_client.Histogram(
    "mangakai_renderer_draw_seconds",
    "Time a backend took to draw one panel.",
    ["backend"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)
IN_FLIGHT = prometheus_client.Gauge(
    "mangakai_renderer_in_flight", "Panels and sheets being drawn by this replica now, quota waits included."
)
DRAWS_RUNNING = prometheus_client.Gauge(
    "mangakai_renderer_draws_running",
    "Panels and sheets this replica is drawing now, not counting those blocked on the Gemini quota.",
)
QUOTA_WAITING = prometheus_client.Gauge(
    "mangakai_renderer_quota_waiting",
    "Gemini calls of this replica blocked on the project's quota (the per-minute budget or its store).",
)
GEMINI_CALLS = prometheus_client.Counter(
    "mangakai_gemini_calls_total", "Gemini API calls by kind and outcome.", ["kind", "outcome"]
)
GEMINI_RETRIES = prometheus_client.Counter(
    "mangakai_gemini_retries_total", "Gemini calls tried again, by cause.", ["cause"]
)
QUOTA_WAIT_SECONDS = prometheus_client.Histogram(
    "mangakai_gemini_quota_wait_seconds",
    "Time a Gemini call waited for the project's per-minute budget.",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120),
)
QUOTA_STORE_ERRORS = prometheus_client.Counter(
    "mangakai_gemini_quota_store_errors_total",
    "Calls to the shared quota store that failed and were tried again (NATS out of reach, a leader election).",
)
SHEETS_DRAWN = prometheus_client.Counter(
    "mangakai_renderer_character_sheets_drawn_total", "Character sheets actually drawn.", ["backend"]
)

# True while the current task is inside `drawing()`.
_DRAWING: ContextVar[bool] = ContextVar("drawing", default=False)


@contextmanager
def drawing() -> Iterator[None]:
    """Counts a draw in `in_flight` and `draws_running` for as long as it lasts."""
    IN_FLIGHT.inc()
    DRAWS_RUNNING.inc()
    token = _DRAWING.set(True)
    try:
        yield
    finally:
        _DRAWING.reset(token)
        DRAWS_RUNNING.dec()
        IN_FLIGHT.dec()


@contextmanager
def waiting_for_quota() -> Iterator[None]:
    """Counts a call blocked on the quota; a draw's wait is taken out of `draws_running` meanwhile."""
    draw = _DRAWING.get()
    QUOTA_WAITING.inc()
    if draw:
        DRAWS_RUNNING.dec()
    try:
        yield
    finally:
        if draw:
            DRAWS_RUNNING.inc()
        QUOTA_WAITING.dec()
