"""Prometheus metrics of the storage service, labelled by backend ("fs" or "s3")."""

from __future__ import annotations

import prometheus_client

BYTES_IN = prometheus_client.Counter(
    "storage_bytes_in_total", "Bytes received in PutBlob streams.", ["backend"]
)
BYTES_OUT = prometheus_client.Counter(
    "storage_bytes_out_total", "Blob bytes sent to clients, over gRPC and HTTP.", ["backend"]
)
BLOBS_WRITTEN = prometheus_client.Counter(
    "storage_blobs_written_total", "Blobs stored by PutBlob.", ["backend"]
)
DERIVATIVES_WRITTEN = prometheus_client.Counter(
    "storage_derivatives_written_total", "WebP copies and thumbnails stored beside panel images.", ["backend"]
)
