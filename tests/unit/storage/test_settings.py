"""Start-up requirements of the storage settings, and URL rewriting for a CDN."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mangakai_storage.s3_backend import rewrite_host
from mangakai_storage.settings import StorageSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STORAGE_BACKEND", "STORAGE_SIGNING_KEY", "S3_BUCKET", "GRPC_PORT", "METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_SIGNING_KEY", "a-long-enough-signing-key")
    settings = StorageSettings.model_validate({})
    assert (settings.storage_backend, settings.grpc_port, settings.metrics_port) == ("fs", 50054, 9104)
    assert settings.storage_http_port == 8090
    assert settings.storage_max_blob_bytes == 64 * 1024 * 1024
    assert settings.storage_url_ttl_seconds == 3600


def test_fs_needs_a_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="STORAGE_SIGNING_KEY is required"):
        StorageSettings.model_validate({})
    monkeypatch.setenv("STORAGE_SIGNING_KEY", "short")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        StorageSettings.model_validate({})


def test_s3_needs_a_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "s3")
    with pytest.raises(ValidationError, match="S3_BUCKET is required"):
        StorageSettings.model_validate({})
    monkeypatch.setenv("S3_BUCKET", "panels")
    assert StorageSettings.model_validate({}).storage_signing_key is None


def test_cdn_rewrite_keeps_path_and_query() -> None:
    url = "https://bucket.s3.eu-west-1.amazonaws.com/p/jobs/a.png?X-Amz-Signature=ab&X-Amz-Expires=60"
    assert rewrite_host(url, "https://cdn.example.com") == (
        "https://cdn.example.com/p/jobs/a.png?X-Amz-Signature=ab&X-Amz-Expires=60"
    )
    assert rewrite_host(url, "https://cdn.example.com/media/").startswith(
        "https://cdn.example.com/media/p/jobs/a.png?"
    )
