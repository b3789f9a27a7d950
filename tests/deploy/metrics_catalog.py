"""The series Prometheus can see from a MangakAI deployment, for checking what rules and HPAs read.

- The services' own metrics, read from the prometheus_client objects their modules define.
- `up`, which Prometheus adds to every target.
- prometheus-nats-exporter's JetStream series (`-jsz=all`, the sidecar in
  deploy/k8s/components/nats), by the names and labels its collector/jsz.go gives them.
"""

from __future__ import annotations

import shutil
import subprocess
from types import ModuleType

import prometheus_client

import mangakai_orchestrator.metrics
import mangakai_orchestrator.worker
import mangakai_renderer.metrics
import mangakai_runtime.telemetry
import mangakai_storage.metrics

SERVICE_METRIC_MODULES: dict[str, tuple[ModuleType, ...]] = {
    "runtime": (mangakai_runtime.telemetry,),
    "orchestrator": (mangakai_orchestrator.metrics, mangakai_orchestrator.worker),
    "renderer": (mangakai_renderer.metrics,),
    "storage": (mangakai_storage.metrics,),
}

SCRAPE_SERIES = frozenset({"up"})

# Consumer series carry stream_name, consumer_name and is_consumer_leader ("true" on the
# node leading the consumer), among other labels.
NATS_EXPORTER_SERIES = frozenset(
    {
        "jetstream_consumer_num_pending",
        "jetstream_consumer_num_ack_pending",
        "jetstream_consumer_num_redelivered",
        "jetstream_consumer_num_waiting",
        "jetstream_consumer_delivered_consumer_seq",
        "jetstream_consumer_delivered_stream_seq",
        "jetstream_stream_total_messages",
        "jetstream_stream_total_bytes",
        "jetstream_stream_consumer_count",
        "jetstream_server_total_streams",
        "jetstream_server_total_consumers",
    }
)


def series_of(*modules: ModuleType) -> set[str]:
    """Every series name the metrics defined in these modules can produce."""
    names: set[str] = set()
    for module in modules:
        for value in vars(module).values():
            if not isinstance(value, prometheus_client.metrics.MetricWrapperBase):
                continue
            for family in value.describe():
                base = family.name
                if family.type == "counter":
                    names |= {f"{base}_total", f"{base}_created"}
                elif family.type == "histogram":
                    names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
                else:
                    names.add(base)
    return names


def service_series(service: str | None = None) -> set[str]:
    """The series of one service (its own metrics, not the runtime's), or of every service."""
    if service is None:
        return series_of(*(m for modules in SERVICE_METRIC_MODULES.values() for m in modules))
    return series_of(*SERVICE_METRIC_MODULES[service])


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is missing: run scripts/install-system-deps.sh"
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=60, check=False)
