"""A stand-in service for testing mangakai_devstack: health, ready file, and nothing else.

Run as `python -m devstack_standin` with this folder on PYTHONPATH. It serves
through the shared runtime (`mangakai_runtime.server.ServiceMain`), so it binds,
reports its ports and shuts down exactly as the real services do. Which service
it impersonates is read from its READY_FILE name (storage.ready -> storage);
as "storage" it also listens on STORAGE_HTTP_PORT and reports "http_port".

It writes the environment it was given to `<READY_FILE>.env.json` before it
reports ready, so tests can check how the stack wired the services together.
STANDIN_FAIL=message makes it print the message and exit 3 before serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from mangakai_runtime.server import ServiceMain
from mangakai_runtime.settings import ServiceSettings

WIRING_VARIABLES = (
    "GRPC_HOST",
    "GRPC_PORT",
    "METRICS_PORT",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "READY_FILE",
    "DATABASE_URL",
    "NATS_URL",
    "STORAGE_ADDR",
    "RENDERER_ADDR",
    "ORCHESTRATOR_ADDR",
    "RENDERER_BACKEND",
    "STORAGE_BACKEND",
    "STORAGE_DATA_DIR",
    "STORAGE_HTTP_HOST",
    "STORAGE_HTTP_PORT",
    "STORAGE_SIGNING_KEY",
    "STANDIN_MARK",
)


async def _http_listener() -> tuple[asyncio.Server, int]:
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    host = os.environ.get("STORAGE_HTTP_HOST", "127.0.0.1")
    server = await asyncio.start_server(close_at_once, host, int(os.environ.get("STORAGE_HTTP_PORT", "0")))
    return server, server.sockets[0].getsockname()[1]


def main() -> None:
    if message := os.environ.get("STANDIN_FAIL"):
        print(message, file=sys.stderr, flush=True)
        sys.exit(3)
    settings = ServiceSettings.from_env()
    assert settings.ready_file is not None, "READY_FILE must be set"
    wiring = {key: os.environ[key] for key in WIRING_VARIABLES if key in os.environ}
    Path(f"{settings.ready_file}.env.json").write_text(json.dumps(wiring))
    asyncio.run(_serve(settings, settings.ready_file.stem))


async def _serve(settings: ServiceSettings, name: str) -> None:
    service = ServiceMain(name, settings)
    service.setup()
    if name == "storage":
        http, http_port = await _http_listener()
        service.extra_ports["http_port"] = http_port

        async def close_http() -> None:
            http.close()
            await http.wait_closed()

        service.on_shutdown.append(close_http)
    await service.serve([])


if __name__ == "__main__":
    main()
