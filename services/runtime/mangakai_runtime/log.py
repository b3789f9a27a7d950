"""Structured JSON logging with the job id and the trace id on every line."""

from __future__ import annotations

import contextvars
import logging
import sys

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

job_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="")


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        record.job_id = job_id_var.get()
        span = trace.get_current_span().get_span_context()
        record.trace_id = format(span.trace_id, "032x") if span.is_valid else ""
        record.span_id = format(span.span_id, "016x") if span.is_valid else ""
        return True


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Sends every log record to stderr, as one JSON object per line unless fmt is "text"."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(service))
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(job_id)s %(trace_id)s %(span_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(service)s %(name)s job=%(job_id)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party libraries are chatty at INFO.
    for noisy in ("aiobotocore", "botocore", "hypercorn.access", "google_genai", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
