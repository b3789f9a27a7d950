"""Service identities over mutual TLS: who this process is, and who may call each internal service.

With TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE set, a process presents its
certificate on every channel to another service (`channel_credentials`), and
an internal service (one listed in `CALLERS`) accepts only callers whose
certificate the CA signed (`server_credentials`). The identity of a caller is
its certificate's common name ("gateway", "orchestrator", "renderer",
"storage" or "operator"); `CallerInterceptor` checks it per RPC against
`CALLERS`, the mesh's call graph: a call from an identity not allowed there is
PERMISSION_DENIED and reaches no servicer. The public services on the gateway
take no client certificate (browsers and the CLI have none; TLS for them is the
ingress's business). Without the settings everything is plaintext, as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from mangakai_runtime.errors import PermissionDenied, Unauthenticated
from mangakai_runtime.handlers import guarded

OPERATOR = "operator"

# Who may call what. A "Service/Method" entry wins over its service's entry; services not listed
# (the gateway's public ones, health, reflection) are open to any caller the transport admits.
CALLERS: Mapping[str, frozenset[str]] = {
    "mangakai.v1.OrchestratorService": frozenset({"gateway"}),
    # The operator call: deletes every session's old jobs.
    "mangakai.v1.OrchestratorService/SweepRetention": frozenset({OPERATOR}),
    "mangakai.v1.RendererService": frozenset({"orchestrator"}),
    # Storage, method by method: the gateway only signs URLs, the renderer reads and writes the
    # images it draws, the orchestrator stores reference images and deletes expired jobs' blobs.
    "mangakai.v1.StorageService": frozenset({OPERATOR}),
    "mangakai.v1.StorageService/PutBlob": frozenset({"orchestrator", "renderer", OPERATOR}),
    "mangakai.v1.StorageService/GetBlob": frozenset({"renderer", OPERATOR}),
    "mangakai.v1.StorageService/StatBlob": frozenset({"orchestrator", "renderer", OPERATOR}),
    "mangakai.v1.StorageService/SignUrls": frozenset({"gateway", OPERATOR}),
    "mangakai.v1.StorageService/DeleteBlobs": frozenset({"orchestrator", OPERATOR}),
}


@dataclass(frozen=True)
class TlsFiles:
    """The CA that signs every identity of the mesh, and this process's own certificate and key."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


_own: TlsFiles | None = None


def configure(files: TlsFiles | None) -> None:
    """Sets this process's identity (None: plaintext); channels opened afterwards use it."""
    global _own
    _own = files


def channel_credentials() -> grpc.ChannelCredentials | None:
    """Credentials presenting this process's certificate, or None without TLS."""
    if _own is None:
        return None
    ca, cert, key = _own.read()
    credentials: grpc.ChannelCredentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    return credentials


def is_internal(service_names: list[str]) -> bool:
    """Whether a server of these services must require client certificates."""
    return any(name in CALLERS for name in service_names)


def server_credentials() -> grpc.ServerCredentials | None:
    """Credentials of an internal service's port: callers must present a certificate of the CA."""
    if _own is None:
        return None
    ca, cert, key = _own.read()
    credentials: grpc.ServerCredentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )
    return credentials


def _allowed(method: str) -> frozenset[str] | None:
    """The identities allowed to call `method` ("/package.Service/Method"), or None for anyone."""
    full = method.lstrip("/")
    return CALLERS.get(full) or CALLERS.get(full.partition("/")[0])


def caller_identity(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The common name of the caller's certificate, or "" when it presented none."""
    names = context.auth_context().get("x509_common_name") or []
    for name in names:
        return bytes(name).decode(errors="replace")
    return ""


class CallerInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls from identities `CALLERS` does not allow, before any servicer runs.

    Must come after `ErrorInterceptor` in the server's list, so that the refusal maps to its status.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        allowed = _allowed(handler_call_details.method)
        if handler is None or allowed is None:
            return handler
        method: str = handler_call_details.method

        @asynccontextmanager
        async def admit(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            identity = caller_identity(context)
            if not identity:
                raise Unauthenticated(f"{method} needs a client certificate")
            if identity not in allowed:
                raise PermissionDenied(f"{identity!r} may not call {method}")
            yield

        return guarded(handler, admit)
