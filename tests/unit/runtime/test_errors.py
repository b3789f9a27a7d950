"""Which status a caller sees for an exception: transient infrastructure errors are retryable."""

from __future__ import annotations

import asyncpg
import grpc
import nats.errors
import nats.js.errors
import pytest
from google.rpc import error_details_pb2

from mangakai_runtime.errors import status_of


def _retry_seconds(status: object) -> float | None:
    for detail in status.details:  # type: ignore[attr-defined]
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToMilliseconds()) / 1000
    return None


@pytest.mark.parametrize(
    "error",
    [
        nats.errors.TimeoutError(),
        nats.errors.NoRespondersError(),
        nats.errors.ConnectionClosedError(),
        nats.js.errors.ServiceUnavailableError(
            code=503, description="JetStream system temporarily unavailable"
        ),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_briefly_missing_backing_store_is_unavailable_with_retry_info(error: BaseException) -> None:
    code, status = status_of(error, "/mangakai.v1.JobService/WatchJob")
    assert code == grpc.StatusCode.UNAVAILABLE
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert "internal" not in status.message
    assert _retry_seconds(status) == 1.0


def test_a_bug_is_internal_and_tells_nothing() -> None:
    code, status = status_of(KeyError("secret"), "/mangakai.v1.JobService/GetJob")
    assert code == grpc.StatusCode.INTERNAL
    assert status.message == "internal error"
    assert _retry_seconds(status) is None
