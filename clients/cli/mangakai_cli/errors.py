"""Turning a failed gRPC call into one readable line and an exit code.

The gateway attaches `google.rpc.Status` details to its errors (AIP-193):
`BadRequest` field violations for a bad request and `RetryInfo` for a quota.
They travel in the `grpc-status-details-bin` trailer and are decoded here.
"""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError

# googleapis-common-protos ships .pyi stubs but no py.typed marker.
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped, unused-ignore]
from grpc_status import rpc_status

EXIT_FAILURE = 1
EXIT_USAGE = 2


def describe(error: grpc.aio.AioRpcError, *, gateway: str | None = None) -> str:
    """One line: the code name, the message, each field violation and any retry delay."""
    code: grpc.StatusCode = error.code()
    message = (error.details() or "").strip()
    line = f"{code.name}: {message}" if message else code.name
    status = _rich_status(error)
    if status is not None:
        violations = [
            f"{v.field}: {v.description}" if v.field else v.description
            for bad_request in _details(status, error_details_pb2.BadRequest)
            for v in bad_request.field_violations
        ]
        # The gateway's message often already spells the violations out; say each once.
        missing = [v for v in violations if v not in message]
        if missing:
            line += " (" + "; ".join(missing) + ")"
        for retry in _details(status, error_details_pb2.RetryInfo):
            if retry.HasField("retry_delay"):
                seconds = retry.retry_delay.ToTimedelta().total_seconds()
                line += f"; retry in {seconds:g} s"
    if code == grpc.StatusCode.UNAVAILABLE and gateway:
        line += f" (is the gateway running at {gateway}?)"
    return line


def exit_code(error: grpc.aio.AioRpcError) -> int:
    """2 for a request the gateway rejected as invalid, 1 for any other failure."""
    return EXIT_USAGE if error.code() == grpc.StatusCode.INVALID_ARGUMENT else EXIT_FAILURE


def _rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    if not hasattr(error, "trailing_metadata"):
        return None
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)
    except (ValueError, DecodeError):
        # Details that do not match the call's status are ignored rather than trusted.
        return None
    return status


_Detail = TypeVar("_Detail", error_details_pb2.BadRequest, error_details_pb2.RetryInfo)


def _details(status: status_pb2.Status, kind: type[_Detail]) -> list[_Detail]:
    found: list[_Detail] = []
    for packed in status.details:
        # types-protobuf types Message.DESCRIPTOR as Descriptor | upb Descriptor but
        # Any.Is as taking only the former; both are the same descriptor at run time.
        if packed.Is(kind.DESCRIPTOR):  # type: ignore[arg-type]
            detail = kind()
            packed.Unpack(detail)
            found.append(detail)
    return found
