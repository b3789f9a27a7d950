"""Prometheus metrics of the renderer."""

from __future__ import annotations

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
IN_FLIGHT = prometheus_client.Gauge("mangakai_renderer_in_flight", "Panels being drawn by this replica now.")
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
SHEETS_DRAWN = prometheus_client.Counter(
    "mangakai_renderer_character_sheets_drawn_total", "Character sheets actually drawn.", ["backend"]
)
