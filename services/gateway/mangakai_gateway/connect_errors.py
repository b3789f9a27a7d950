"""Errors of the Connect listener: the same code, message and google.rpc details as over gRPC."""

from __future__ import annotations

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from google.rpc import status_pb2
from protobuf.wkt import Any as AnyDetail

from mangakai_runtime.errors import status_of


def _code(code: grpc.StatusCode) -> Code:
    return Code.CANCELED if code == grpc.StatusCode.CANCELLED else Code[code.name]


def _from_status(status: status_pb2.Status, code: grpc.StatusCode) -> ConnectError:
    details = [ErrorDetail(AnyDetail(type_url=d.type_url, value=d.value)) for d in status.details]
    return ConnectError(_code(code), status.message, details)


def connect_error(exc: Exception, method: str) -> ConnectError:
    """The ConnectError a caller gets for an exception raised by the API (the same status as over gRPC)."""
    if isinstance(exc, ConnectError):
        return exc
    code, status = status_of(exc, method)
    return _from_status(status, code)
