"""Requests whose bytes do not decode: INVALID_ARGUMENT naming the field, never UNKNOWN.

grpc.aio runs a method's request deserializer before any code of ours runs
around the servicer, and answers an exception raised there with UNKNOWN
"Unexpected <class '...DecodeError'>". `RequestDecodingInterceptor` gives every
method a deserializer that hands the call an `UndecodableRequest` instead, and
raises it as INVALID_ARGUMENT inside the call, where the error interceptor maps
it like any other bad request. The field is found by walking the wire
format: a string field that is not UTF-8, or the field where the bytes stop
making sense.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from mangakai_runtime.errors import FieldViolation, InvalidArgument
from mangakai_runtime.handlers import guarded, typed


@dataclass(frozen=True)
class UndecodableRequest:
    """What a call gets instead of a request whose bytes are not a valid message."""

    violation: FieldViolation


class _Truncated(Exception):
    """The bytes end inside a field."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Truncated
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _problem(data: bytes, descriptor: Descriptor, prefix: str) -> FieldViolation | None:
    """The first field of `data` that cannot be decoded as `descriptor`, if the walk finds one."""
    pos, name = 0, prefix.rstrip(".")
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire_type = key >> 3, key & 7
            field = descriptor.fields_by_number.get(number)
            name = f"{prefix}{field.name}" if field is not None else name
            if wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type in (1, 5):
                pos += 8 if wire_type == 1 else 4
            elif wire_type == 2:
                length, pos = _varint(data, pos)
                chunk, pos = data[pos : pos + length], pos + length
                if len(chunk) < length:
                    raise _Truncated
                inner = _field_problem(chunk, field, name) if field is not None else None
                if inner is not None:
                    return inner
            else:
                return FieldViolation(name, "is not a valid protobuf encoding (unsupported wire type)")
            if pos > len(data):
                raise _Truncated
    except _Truncated:
        if not name:
            return FieldViolation(
                "", f"the bytes are not a {descriptor.full_name} message (they end mid-field)"
            )
        return FieldViolation(name, "is not a valid protobuf encoding (the message ends inside a field)")
    return None


def _field_problem(chunk: bytes, field: FieldDescriptor, name: str) -> FieldViolation | None:
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return FieldViolation(name, "is not valid UTF-8")
    elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
        return _problem(chunk, field.message_type, f"{name}.")
    return None


def describe(data: bytes, descriptor: Descriptor) -> FieldViolation:
    """Why `data`, which protobuf refused, is not a `descriptor` message, naming the field when possible."""
    return _problem(data, descriptor, "") or FieldViolation(
        "", f"the request is not a valid {descriptor.full_name} message"
    )


def lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer` (a generated `Message.FromString`) returning an UndecodableRequest instead of raising."""
    if deserializer is None:
        return None
    descriptor: Descriptor | None = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    if descriptor is None:
        return deserializer
    message: Descriptor = descriptor

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            # DecodeError, or a ValueError/RuntimeError from upb for the same reasons.
            return UndecodableRequest(describe(data, message))

    return deserialize


def reject_undecodable(request: Any) -> None:
    """Raises INVALID_ARGUMENT for a request that did not decode."""
    if isinstance(request, UndecodableRequest):
        raise InvalidArgument([request.violation])


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    """Gives every method a lenient deserializer; an undecodable request is raised as INVALID_ARGUMENT.

    Must come after `ErrorInterceptor` in the server's list, so that the raise happens inside it.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return guarded(
            handler,
            _unguarded,
            deserializer=lenient(typed(handler).request_deserializer),
            check=reject_undecodable,
        )


@asynccontextmanager
async def _unguarded(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    yield
