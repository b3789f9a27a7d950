"""The storage service as a real process (`python -m mangakai_storage`), on local disk and on S3.

S3 is moto's standalone server on loopback, speaking the S3 protocol
(presigned URLs and multipart uploads included).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit

import boto3
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from mangakai.v1 import common_pb2, storage_pb2, storage_pb2_grpc
from mangakai_storage.signing import UrlSigner, signing_key_bytes

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
MAX_BLOB_BYTES = 24 * MIB
SIGNING_KEY = "integration-signing-key-0123456789"
BUCKET = "mangakai-test-blobs"
S3_PREFIX = "blobs/"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BACKENDS = ["fs", "s3"]


# Servers.


@dataclass
class StorageProcess:
    """One `python -m mangakai_storage` process and what it reported in its ready file."""

    kind: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    metrics_port: int
    log_path: Path
    channel: grpc.aio.Channel | None = field(default=None)

    @property
    def stub(self) -> storage_pb2_grpc.StorageServiceAsyncStub:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        return storage_pb2_grpc.StorageServiceStub(self.channel)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None


def start_storage(kind: str, data_dir: Path, env: dict[str, str], run_dir: Path) -> StorageProcess:
    ready = run_dir / f"ready-{uuid.uuid4().hex}.json"
    log_path = run_dir / f"storage-{uuid.uuid4().hex}.log"
    full_env = {
        **os.environ,
        **env,
        "GRPC_PORT": "0",
        "METRICS_PORT": "0",
        "STORAGE_HTTP_PORT": "0",
        "STORAGE_DATA_DIR": str(data_dir),
        "STORAGE_MAX_BLOB_BYTES": str(MAX_BLOB_BYTES),
        "READY_FILE": str(ready),
        "LOG_FORMAT": "text",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "mangakai_storage"], env=full_env, stderr=log)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None:
            pytest.fail(f"storage exited with {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"storage was not ready within 60 s:\n{log_path.read_text()}")
        time.sleep(0.05)
    ports = json.loads(ready.read_text())
    return StorageProcess(
        kind, data_dir, process, ports["grpc_port"], ports["http_port"], ports["metrics_port"], log_path
    )


def stop_storage(storage: StorageProcess) -> None:
    if storage.process.poll() is None:
        storage.process.send_signal(signal.SIGTERM)
        try:
            storage.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            storage.process.kill()
            storage.process.wait()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3_client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def backend_env(kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if kind == "fs":
        return {"STORAGE_BACKEND": "fs", "STORAGE_SIGNING_KEY": SIGNING_KEY}
    endpoint = request.getfixturevalue("moto_endpoint")
    return {
        **AWS_ENV,
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": BUCKET,
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": "us-east-1",
        "S3_PREFIX": S3_PREFIX,
        "S3_SSE": "AES256",
    }


@pytest.fixture(scope="module", params=BACKENDS)
async def storage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StorageProcess]:
    kind: str = request.param
    run_dir = tmp_path_factory.mktemp(f"storage-{kind}")
    process = start_storage(kind, run_dir / "data", backend_env(kind, request), run_dir)
    yield process
    await process.close()
    stop_storage(process)
    assert process.process.returncode == 0, process.log_path.read_text()


@pytest.fixture
def prefix() -> str:
    return f"t/{uuid.uuid4().hex[:12]}/"


# Helpers.


async def put(
    stub: storage_pb2_grpc.StorageServiceAsyncStub,
    key: str,
    data: bytes,
    *,
    content_type: str = "application/octet-stream",
    chunk_bytes: int = 256 * 1024,
    size_bytes: int = 0,
) -> common_pb2.Blob:
    async def requests() -> AsyncIterator[storage_pb2.PutBlobRequest]:
        header = storage_pb2.PutBlobHeader(key=key, content_type=content_type, size_bytes=size_bytes)
        yield storage_pb2.PutBlobRequest(header=header)
        for offset in range(0, len(data), chunk_bytes):
            yield storage_pb2.PutBlobRequest(chunk=data[offset : offset + chunk_bytes])

    return await stub.PutBlob(requests())


async def get(
    stub: storage_pb2_grpc.StorageServiceAsyncStub, key: str
) -> tuple[common_pb2.Blob, list[bytes]]:
    blob: common_pb2.Blob | None = None
    chunks: list[bytes] = []
    async for message in stub.GetBlob(storage_pb2.GetBlobRequest(key=key)):
        if message.WhichOneof("part") == "blob":
            assert blob is None and not chunks, "the metadata must come first, once"
            blob = message.blob
        else:
            chunks.append(message.chunk)
    assert blob is not None
    return blob, chunks


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields named by the BadRequest detail of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.extend(v.field for v in bad_request.field_violations)
    return fields


def png_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 0, 255)).save(buffer, format="JPEG")
    return buffer.getvalue()


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body: bytes


def _fetch(url: str, method: str, headers: dict[str, str]) -> Fetched:
    split = urlsplit(url)
    connection = http.client.HTTPConnection(split.hostname or "", split.port, timeout=30)
    try:
        connection.request(
            method, f"{split.path}?{split.query}" if split.query else split.path, headers=headers
        )
        response = connection.getresponse()
        body = response.read()
        return Fetched(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        connection.close()


async def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Fetched:
    return await asyncio.to_thread(_fetch, url, method, headers or {})


async def sign(stub: storage_pb2_grpc.StorageServiceAsyncStub, key: str, ttl_seconds: int = 0) -> str:
    response = await stub.SignUrls(storage_pb2.SignUrlsRequest(keys=[key], ttl_seconds=ttl_seconds))
    assert [u.key for u in response.urls] == [key]
    return response.urls[0].uri


def object_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "objects").glob("*/*") if p.is_file())


def s3_objects(endpoint: str, prefix: str) -> list[dict[str, Any]]:
    listing = s3_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=S3_PREFIX + prefix)
    return list(listing.get("Contents", []))


# Tests.


async def test_round_trip_in_chunks(storage: StorageProcess, prefix: str) -> None:
    data = os.urandom(MIB + 12345)
    key = prefix + "data.bin"
    blob = await put(storage.stub, key, data, chunk_bytes=100_000, size_bytes=len(data))
    assert blob.key == key
    assert blob.size_bytes == len(data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.content_type == "application/octet-stream"
    assert abs(blob.create_time.ToDatetime().timestamp() - time.time()) < 120

    got, chunks = await get(storage.stub, key)
    assert got == blob
    assert b"".join(chunks) == data
    assert len(chunks) == 5
    assert max(len(c) for c in chunks) == 256 * 1024

    assert await storage.stub.StatBlob(storage_pb2.StatBlobRequest(key=key)) == blob

    metrics = (await fetch(f"http://127.0.0.1:{storage.metrics_port}/metrics")).body.decode()
    counters = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith("storage_")
    }
    label = f'{{backend="{storage.kind}"}}'
    assert counters[f"storage_bytes_in_total{label}"] >= len(data)
    assert counters[f"storage_bytes_out_total{label}"] >= len(data)
    assert counters[f"storage_blobs_written_total{label}"] >= 1


async def test_empty_blob(storage: StorageProcess, prefix: str) -> None:
    blob = await put(storage.stub, prefix + "empty", b"", content_type="text/plain")
    assert blob.size_bytes == 0
    assert blob.sha256 == hashlib.sha256(b"").hexdigest()
    assert b"".join((await get(storage.stub, prefix + "empty"))[1]) == b""


async def test_twenty_megabytes(storage: StorageProcess, prefix: str, request: pytest.FixtureRequest) -> None:
    data = os.urandom(20 * 1000 * 1000)
    key = prefix + "big.bin"
    blob = await put(storage.stub, key, data, chunk_bytes=MIB)
    assert blob.size_bytes == len(data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    got, chunks = await get(storage.stub, key)
    assert got.sha256 == blob.sha256
    assert b"".join(chunks) == data
    if storage.kind == "s3":
        head = s3_client(request.getfixturevalue("moto_endpoint")).head_object(
            Bucket=BUCKET, Key=S3_PREFIX + key
        )
        # A multipart object's ETag ends with the number of parts: 20 MB in 8 MiB parts is 3.
        assert head["ETag"].endswith('-3"'), head["ETag"]
        assert head["Metadata"]["sha256"] == blob.sha256
        assert head["ContentType"] == "application/octet-stream"
        assert head["ServerSideEncryption"] == "AES256"


async def test_missing_blob_is_not_found(storage: StorageProcess, prefix: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await storage.stub.StatBlob(storage_pb2.StatBlobRequest(key=prefix + "missing"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await get(storage.stub, prefix + "missing")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_retried_upload_changes_nothing(
    storage: StorageProcess, prefix: str, request: pytest.FixtureRequest
) -> None:
    data = png_bytes()
    key = prefix + "panel.png"
    first = await put(storage.stub, key, data, content_type="image/png")
    objects_before = object_files(storage.data_dir) if storage.kind == "fs" else []
    again = await put(storage.stub, key, data, content_type="image/png")
    assert again == first  # same sha256 and the original create_time
    if storage.kind == "fs":
        assert object_files(storage.data_dir) == objects_before
    else:
        listed = s3_objects(request.getfixturevalue("moto_endpoint"), prefix)
        assert [o["Key"] for o in listed] == [S3_PREFIX + key]


async def test_overwrite_replaces_content(storage: StorageProcess, prefix: str) -> None:
    key = prefix + "note.txt"
    await put(storage.stub, key, b"first version", content_type="text/plain")
    second = await put(storage.stub, key, b"second version", content_type="text/plain")
    got, chunks = await get(storage.stub, key)
    assert got.sha256 == second.sha256 == hashlib.sha256(b"second version").hexdigest()
    assert b"".join(chunks) == b"second version"
    if storage.kind == "fs":
        names = {p.parent.name + p.name for p in object_files(storage.data_dir)}
        assert hashlib.sha256(b"first version").hexdigest() not in names


@pytest.mark.parametrize("bad_key", ["../x", "/abs", "a//b", "Upper/case.png", "a/./b", "a/"])
async def test_bad_keys_are_invalid_arguments(storage: StorageProcess, bad_key: str) -> None:
    stub = storage.stub
    calls: list[tuple[str, Any]] = [
        ("key", stub.StatBlob(storage_pb2.StatBlobRequest(key=bad_key))),
        ("header.key", put(stub, bad_key, b"x")),
        ("keys[1]", stub.SignUrls(storage_pb2.SignUrlsRequest(keys=["ok/key", bad_key]))),
        ("key", get(stub, bad_key)),
    ]
    for field_name, call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(raised.value) == [field_name]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.DeleteBlobs(storage_pb2.DeleteBlobsRequest(prefix=bad_key + "/"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == ["prefix"]


async def test_put_must_start_with_a_header(storage: StorageProcess) -> None:
    async def chunk_first() -> AsyncIterator[storage_pb2.PutBlobRequest]:
        yield storage_pb2.PutBlobRequest(chunk=b"data")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await storage.stub.PutBlob(chunk_first())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == ["header"]


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("image/png", b"this is not a png at all"),
        ("image/png", jpeg_bytes()),
        ("image/png", png_bytes()[:-30]),
        ("image/jpeg", png_bytes()),
        ("image/svg+xml", b"<svg/>"),
    ],
    ids=["text-as-png", "jpeg-as-png", "truncated-png", "png-as-jpeg", "svg"],
)
async def test_images_must_be_what_they_claim(
    storage: StorageProcess, prefix: str, content_type: str, data: bytes
) -> None:
    key = prefix + "image"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await put(storage.stub, key, data, content_type=content_type)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == ["header.content_type"]
    with pytest.raises(grpc.aio.AioRpcError) as not_found:
        await storage.stub.StatBlob(storage_pb2.StatBlobRequest(key=key))
    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND


async def test_real_images_are_accepted(storage: StorageProcess, prefix: str) -> None:
    assert (await put(storage.stub, prefix + "a.png", png_bytes(), content_type="image/png")).size_bytes > 0
    assert (await put(storage.stub, prefix + "b.jpg", jpeg_bytes(), content_type="image/jpeg")).size_bytes > 0


async def test_size_limits(storage: StorageProcess, prefix: str) -> None:
    key = prefix + "huge.bin"
    cases: list[tuple[str, Any]] = [
        # Declared too large: refused before any byte is read.
        ("header.size_bytes", put(storage.stub, key, b"x", size_bytes=MAX_BLOB_BYTES + 1)),
        # Undeclared, and the stream runs past the limit.
        ("chunk", put(storage.stub, key, b"\0" * (MAX_BLOB_BYTES + 1), chunk_bytes=MIB)),
        # Declared size that the stream does not match.
        ("header.size_bytes", put(storage.stub, key, b"12345", size_bytes=6)),
    ]
    for field_name, call in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(raised.value) == [field_name]
    with pytest.raises(grpc.aio.AioRpcError) as not_found:
        await storage.stub.StatBlob(storage_pb2.StatBlobRequest(key=key))
    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
    # Exactly the limit is fine.
    assert (
        await put(storage.stub, key, b"\1" * MAX_BLOB_BYTES, chunk_bytes=MIB)
    ).size_bytes == MAX_BLOB_BYTES


async def test_sign_urls_validation(storage: StorageProcess) -> None:
    cases = [
        ("keys", storage_pb2.SignUrlsRequest(keys=[])),
        ("keys", storage_pb2.SignUrlsRequest(keys=[f"k/{i}" for i in range(501)])),
        ("ttl_seconds", storage_pb2.SignUrlsRequest(keys=["k"], ttl_seconds=604801)),
        ("ttl_seconds", storage_pb2.SignUrlsRequest(keys=["k"], ttl_seconds=-1)),
    ]
    for field_name, signing_request in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await storage.stub.SignUrls(signing_request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(raised.value) == [field_name]
    response = await storage.stub.SignUrls(storage_pb2.SignUrlsRequest(keys=[f"k/{i}" for i in range(500)]))
    assert [u.key for u in response.urls] == [f"k/{i}" for i in range(500)]
    expire = response.urls[0].expire_time.seconds
    assert 3600 - 60 < expire - time.time() <= 3600  # the default TTL


async def test_signed_url_serves_the_blob(storage: StorageProcess, prefix: str) -> None:
    data = png_bytes((300, 200))
    key = prefix + "panels/001.png"
    blob = await put(storage.stub, key, data, content_type="image/png")
    url = await sign(storage.stub, key, ttl_seconds=600)

    fetched = await fetch(url)
    assert fetched.status == 200
    assert fetched.body == data
    assert fetched.headers["content-type"] == "image/png"
    assert int(fetched.headers["content-length"]) == len(data)
    if storage.kind == "s3":
        return
    etag = f'"{blob.sha256}"'
    assert fetched.headers["etag"] == etag
    # Private, and never cached past the URL's own expiry (600 s here).
    directive, max_age = fetched.headers["cache-control"].split(", max-age=")
    assert directive == "private" and 540 <= int(max_age) <= 600, fetched.headers["cache-control"]
    assert fetched.headers["access-control-allow-origin"] == "*"

    head = await fetch(url, "HEAD")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", str(len(data)))

    ranged = await fetch(url, headers={"Range": "bytes=10-19"})
    assert ranged.status == 206
    assert ranged.body == data[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(data)}"
    suffix = await fetch(url, headers={"Range": "bytes=-7"})
    assert (suffix.status, suffix.body) == (206, data[-7:])
    open_ended = await fetch(url, headers={"Range": f"bytes={len(data) - 3}-"})
    assert (open_ended.status, open_ended.body) == (206, data[-3:])
    unsatisfiable = await fetch(url, headers={"Range": f"bytes={len(data)}-"})
    assert unsatisfiable.status == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(data)}"

    cached = await fetch(url, headers={"If-None-Match": etag})
    assert (cached.status, cached.body, cached.headers["etag"]) == (304, b"", etag)
    changed = await fetch(url, headers={"If-None-Match": '"something-else"'})
    assert (changed.status, changed.body) == (200, data)


async def test_signed_url_refuses_tampering(storage: StorageProcess, prefix: str) -> None:
    if storage.kind == "s3":
        pytest.skip("moto does not check presigned signatures or expiry; see test_presigned_s3_url")
    key = prefix + "secret.png"
    await put(storage.stub, key, png_bytes(), content_type="image/png")
    url = await sign(storage.stub, key)
    split = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(split.query).items()}

    def with_query(**changes: str) -> str:
        return split._replace(query=urlencode({**query, **changes})).geturl()

    signature = query["sig"]
    forgeries = [
        with_query(sig=("0" if signature[0] != "0" else "1") + signature[1:]),
        with_query(sig=signature[:-1]),
        with_query(expires=str(int(query["expires"]) + 86400)),
        split._replace(path=split.path.replace("secret.png", "other.png")).geturl(),
        split._replace(query="").geturl(),
    ]
    for forged in forgeries:
        response = await fetch(forged)
        assert response.status == 403, forged
        assert response.headers["access-control-allow-origin"] == "*"
    assert (await fetch(url)).status == 200


async def test_expired_url_is_refused(storage: StorageProcess, prefix: str) -> None:
    if storage.kind == "s3":
        pytest.skip("moto does not check presigned signatures or expiry; see test_presigned_s3_url")
    key = prefix + "old.png"
    await put(storage.stub, key, png_bytes(), content_type="image/png")
    # Signed with the service's key an hour ago, valid for a minute.
    signer = UrlSigner(signing_key_bytes(SIGNING_KEY), f"http://127.0.0.1:{storage.http_port}")
    expired, _ = signer.sign(key, 60, now=time.time() - 3600)
    fresh, _ = signer.sign(key, 60)
    assert (await fetch(fresh)).status == 200
    response = await fetch(expired)
    assert response.status == 403
    assert b"expired" in response.body


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def sigv4_query_signature(url: str, secret_key: str) -> str:
    """The SigV4 signature S3 expects for a presigned GET (AWS "Authenticating Requests: Using Query Parameters")."""
    split = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(split.query, keep_blank_values=True) if k != "X-Amz-Signature"]
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(pairs))
    canonical_request = "\n".join(
        ["GET", split.path, canonical_query, f"host:{split.netloc}", "", "host", "UNSIGNED-PAYLOAD"]
    )
    params = dict(pairs)
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    day, region, service, _ = scope.split("/")
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    signing_key = _hmac(
        _hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), service), "aws4_request"
    )
    return hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()


async def test_presigned_s3_url(storage: StorageProcess, prefix: str) -> None:
    """S3 itself refuses tampered and expired URLs; here: ours are signed for the right key and TTL."""
    if storage.kind != "s3":
        pytest.skip("S3 presigned URLs only")
    key = prefix + "presigned.png"
    await put(storage.stub, key, png_bytes(), content_type="image/png")
    url = await sign(storage.stub, key, ttl_seconds=900)
    split = urlsplit(url)
    params = dict(parse_qsl(split.query))
    assert split.path == f"/{BUCKET}/{S3_PREFIX}{key}" or split.netloc.startswith(f"{BUCKET}.")
    assert params["X-Amz-Expires"] == "900"
    assert params["X-Amz-Credential"].startswith(AWS_ENV["AWS_ACCESS_KEY_ID"] + "/")
    signed_at = time.mktime(time.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ")) - time.timezone
    assert abs(signed_at - time.time()) < 120
    assert params["X-Amz-Signature"] == sigv4_query_signature(url, AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    # The object itself is private: without the signature it is refused.
    assert (await fetch(split._replace(query="").geturl())).status == 403


async def test_delete_prefix(storage: StorageProcess, prefix: str, request: pytest.FixtureRequest) -> None:
    shared = b"content under both prefixes"
    only_here = b"content only under the deleted prefix"
    await put(storage.stub, prefix + "job/a.txt", shared)
    await put(storage.stub, prefix + "job/pages/b.txt", only_here)
    await put(storage.stub, prefix + "job/pages/c.txt", only_here)
    await put(storage.stub, prefix + "jobs-other/a.txt", shared)

    response = await storage.stub.DeleteBlobs(storage_pb2.DeleteBlobsRequest(prefix=prefix + "job/"))
    assert response.deleted_count == 3
    for key in ("job/a.txt", "job/pages/b.txt", "job/pages/c.txt"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await storage.stub.StatBlob(storage_pb2.StatBlobRequest(key=prefix + key))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    _, chunks = await get(storage.stub, prefix + "jobs-other/a.txt")
    assert b"".join(chunks) == shared
    if storage.kind == "fs":
        names = {p.parent.name + p.name for p in object_files(storage.data_dir)}
        assert hashlib.sha256(only_here).hexdigest() not in names
        assert hashlib.sha256(shared).hexdigest() in names
    else:
        listed = s3_objects(request.getfixturevalue("moto_endpoint"), prefix)
        assert [o["Key"] for o in listed] == [S3_PREFIX + prefix + "jobs-other/a.txt"]
    again = await storage.stub.DeleteBlobs(storage_pb2.DeleteBlobsRequest(prefix=prefix + "job/"))
    assert again.deleted_count == 0


@pytest.mark.parametrize("kind", BACKENDS)
async def test_killed_mid_upload_leaves_nothing_visible(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = backend_env(kind, request)
    data_dir = tmp_path / "data"
    key = f"t/{uuid.uuid4().hex[:12]}/killed.bin"
    data = os.urandom(3 * MIB)
    first = start_storage(kind, data_dir, env, tmp_path)
    sent_enough = 768 * 1024
    never = asyncio.Event()

    async def slow_requests() -> AsyncIterator[storage_pb2.PutBlobRequest]:
        yield storage_pb2.PutBlobRequest(
            header=storage_pb2.PutBlobHeader(key=key, content_type="application/x-test")
        )
        for offset in range(0, sent_enough, 256 * 1024):
            yield storage_pb2.PutBlobRequest(chunk=data[offset : offset + 256 * 1024])
        await never.wait()  # the rest never comes: the process dies first

    try:
        call = asyncio.ensure_future(first.stub.PutBlob(slow_requests()))
        staged_dir = data_dir / "tmp"
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size >= sent_enough for p in staged_dir.glob("upload-*")):
            assert not call.done(), call
            assert time.monotonic() < deadline, "the upload never reached the server's staging directory"
            await asyncio.sleep(0.02)
        first.process.kill()
        first.process.wait()
        with pytest.raises(grpc.aio.AioRpcError):
            await call
    finally:
        await first.close()
        if first.process.poll() is None:
            first.process.kill()
            first.process.wait()
    assert first.process.returncode == -signal.SIGKILL
    # The half-written upload is still on disk, and nothing points at it.
    assert list(staged_dir.glob("upload-*"))
    assert not list((data_dir / "refs").rglob("*~ref"))
    assert not object_files(data_dir)
    if kind == "s3":
        assert s3_objects(request.getfixturevalue("moto_endpoint"), key.rsplit("/", 1)[0] + "/") == []

    second = start_storage(kind, data_dir, env, tmp_path)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await second.stub.StatBlob(storage_pb2.StatBlobRequest(key=key))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert list(staged_dir.iterdir()) == []  # cleaned at start-up
        blob = await put(second.stub, key, data, chunk_bytes=256 * 1024)
        assert blob.sha256 == hashlib.sha256(data).hexdigest()
        _, chunks = await get(second.stub, key)
        assert b"".join(chunks) == data
    finally:
        await second.close()
        stop_storage(second)
    assert second.process.returncode == 0


def test_missing_signing_key_stops_start_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_SIGNING_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "mangakai_storage"],
        env={**env, "STORAGE_BACKEND": "fs", "STORAGE_DATA_DIR": str(tmp_path), "GRPC_PORT": "0"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert b"STORAGE_SIGNING_KEY is required" in result.stderr


def webp_of(png: bytes, quality: int, max_side: int | None = None) -> bytes:
    """What the storage service should store: the PNG re-encoded as WebP (optionally shrunk)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if max_side is not None:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality, method=4, exact=False)
    return buffer.getvalue()


def noisy_png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_panel_images_get_a_webp_copy_and_a_thumbnail(storage: StorageProcess) -> None:
    job = f"jobs/{uuid.uuid4()}"
    png = noisy_png((640, 400))
    blob = await put(storage.stub, f"{job}/panels/01/v1.png", png, content_type="image/png")
    assert blob.sha256 == hashlib.sha256(png).hexdigest()

    webp_blob, webp_chunks = await get(storage.stub, f"{job}/panels/01/v1.webp")
    thumb_blob, thumb_chunks = await get(storage.stub, f"{job}/panels/01/v1.thumb.webp")
    assert webp_blob.content_type == thumb_blob.content_type == "image/webp"
    webp, thumb = b"".join(webp_chunks), b"".join(thumb_chunks)
    with Image.open(io.BytesIO(webp)) as image:
        assert (image.format, image.size) == ("WEBP", (640, 400))
    with Image.open(io.BytesIO(thumb)) as image:
        assert (image.format, image.size) == ("WEBP", (320, 200))
    # Quality 85 by default: the same bytes Pillow makes at that setting.
    assert webp == webp_of(png, 85)
    assert thumb == webp_of(png, 85, 320)
    assert len(webp) < len(png)

    # Signed like any blob, and served with its own type.
    fetched = await fetch(await sign(storage.stub, f"{job}/panels/01/v1.webp"))
    assert (fetched.status, fetched.body) == (200, webp)
    assert fetched.headers["content-type"] == "image/webp"

    # A retried upload changes nothing.
    again = await put(storage.stub, f"{job}/panels/01/v1.png", png, content_type="image/png")
    assert again == blob
    assert (await get(storage.stub, f"{job}/panels/01/v1.webp"))[0] == webp_blob


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("t/{job}/panels/01/v1.png", "image/png"),  # not a job's blob
        ("jobs/{job}/panels/01/v1.art.png", "image/png"),  # the un-lettered art: the renderer's own
        ("jobs/{job}/references/abc", "image/png"),  # an uploaded reference, not a PNG name
        ("jobs/{job}/panels/01/v1.png", "application/octet-stream"),
    ],
)
async def test_other_blobs_get_no_derivatives(storage: StorageProcess, key: str, content_type: str) -> None:
    job = uuid.uuid4()
    key = key.format(job=job)
    await put(storage.stub, key, png_bytes(), content_type=content_type)
    stem = key.rsplit(".png", 1)[0] if key.endswith(".png") else key
    for derived in (f"{stem}.webp", f"{stem}.thumb.webp"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await storage.stub.StatBlob(storage_pb2.StatBlobRequest(key=derived))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_bad_panel_image_stores_nothing(storage: StorageProcess) -> None:
    job = f"jobs/{uuid.uuid4()}"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await put(storage.stub, f"{job}/panels/01/v1.png", jpeg_bytes(), content_type="image/png")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for key in ("v1.png", "v1.webp", "v1.thumb.webp"):
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await storage.stub.StatBlob(storage_pb2.StatBlobRequest(key=f"{job}/panels/01/{key}"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_webp_quality_is_a_setting(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = {**backend_env("fs", request), "WEBP_QUALITY": "40", "THUMBNAIL_PIXELS": "64"}
    storage = start_storage("fs", tmp_path / "data", env, tmp_path)
    try:
        job = f"jobs/{uuid.uuid4()}"
        png = noisy_png((200, 100))
        await put(storage.stub, f"{job}/panels/01/v1.png", png, content_type="image/png")
        webp = b"".join((await get(storage.stub, f"{job}/panels/01/v1.webp"))[1])
        thumb = b"".join((await get(storage.stub, f"{job}/panels/01/v1.thumb.webp"))[1])
        assert webp == webp_of(png, 40)
        assert webp != webp_of(png, 85)
        assert thumb == webp_of(png, 40, 64)
    finally:
        await storage.close()
        stop_storage(storage)


async def test_delete_exact_keys(storage: StorageProcess, prefix: str) -> None:
    await put(storage.stub, prefix + "panels/01/v1.png", png_bytes(), content_type="image/png")
    await put(storage.stub, prefix + "panels/01/v2.png", png_bytes((10, 10)), content_type="image/png")
    await put(storage.stub, prefix + "panels/01/v10.png", png_bytes((12, 12)), content_type="image/png")
    response = await storage.stub.DeleteBlobs(
        storage_pb2.DeleteBlobsRequest(keys=[prefix + "panels/01/v1.png", prefix + "panels/01/missing.png"])
    )
    assert response.deleted_count == 1
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await storage.stub.StatBlob(storage_pb2.StatBlobRequest(key=prefix + "panels/01/v1.png"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    for kept in ("v2.png", "v10.png"):  # a key is exact, not a prefix of "v10.png"
        await storage.stub.StatBlob(storage_pb2.StatBlobRequest(key=prefix + "panels/01/" + kept))


@pytest.mark.parametrize(
    ("field_name", "delete_request"),
    [
        ("prefix", storage_pb2.DeleteBlobsRequest()),
        ("keys", storage_pb2.DeleteBlobsRequest(keys=[f"k/{i}" for i in range(1001)])),
        ("keys[1]", storage_pb2.DeleteBlobsRequest(keys=["ok/key", "../up"])),
    ],
)
async def test_delete_needs_valid_keys_or_a_prefix(
    storage: StorageProcess, field_name: str, delete_request: storage_pb2.DeleteBlobsRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await storage.stub.DeleteBlobs(delete_request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == [field_name]
