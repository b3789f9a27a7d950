"""The mesh's call graph: which identity may call which internal RPC."""

from __future__ import annotations

import pytest

from mangakai_runtime.identity import _allowed, is_internal


@pytest.mark.parametrize(
    ("method", "allowed"),
    [
        ("/mangakai.v1.OrchestratorService/CreateJob", {"gateway"}),
        ("/mangakai.v1.OrchestratorService/SweepRetention", {"operator"}),
        ("/mangakai.v1.RendererService/RenderPanel", {"orchestrator"}),
        ("/mangakai.v1.StorageService/DeleteBlobs", {"orchestrator", "operator"}),
        ("/mangakai.v1.StorageService/SignUrls", {"gateway", "operator"}),
        ("/mangakai.v1.StorageService/PutBlob", {"orchestrator", "renderer", "operator"}),
    ],
)
def test_internal_methods_name_their_callers(method: str, allowed: set[str]) -> None:
    assert _allowed(method) == allowed


@pytest.mark.parametrize(
    "method",
    ["/mangakai.v1.JobService/CreateJob", "/grpc.health.v1.Health/Check", "/mangakai.v1.Unknown/Call"],
)
def test_public_and_standard_methods_are_open(method: str) -> None:
    assert _allowed(method) is None


def test_only_servers_of_internal_services_require_client_certificates() -> None:
    assert is_internal(["mangakai.v1.StorageService"])
    assert not is_internal(["mangakai.v1.SessionService", "mangakai.v1.JobService"])
