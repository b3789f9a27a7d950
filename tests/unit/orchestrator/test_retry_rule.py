"""The orchestrator retries a renderer call only when the renderer says so, or never answered."""

from __future__ import annotations

import grpc
import pytest
from grpc_status import rpc_status

from mangakai_orchestrator.runner import retry_delay
from mangakai_runtime.errors import Aborted, ResourceExhausted, ServiceError, Unavailable


def _answer(error: ServiceError) -> grpc.aio.AioRpcError:
    """The error a caller sees when the renderer raised `error` (status details included)."""
    status = rpc_status.to_status(error.to_status())
    return grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), status.details
    )


def _unanswered(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "connection reset")


def test_a_gemini_failure_the_renderer_already_retried_is_final() -> None:
    assert retry_delay(_answer(Aborted("Gemini error 500", reason="GEMINI_UNAVAILABLE")), 0) is None


def test_a_retry_info_delay_is_obeyed() -> None:
    delay = retry_delay(_answer(ResourceExhausted("quota", retry_after=3.0)), 0)
    assert delay is not None and 3.0 <= delay <= 3.25
    delay = retry_delay(_answer(Unavailable("store away", reason="X", retry_after=1.0)), 5)
    assert delay is not None and 1.0 <= delay <= 1.25


def test_an_application_unavailable_without_retry_info_is_final() -> None:
    assert retry_delay(_answer(Unavailable("no", reason="SOMETHING")), 0) is None


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_a_call_the_renderer_never_answered_is_tried_again_with_backoff(code: grpc.StatusCode) -> None:
    first = retry_delay(_unanswered(code), 0)
    later = retry_delay(_unanswered(code), 4)
    assert first is not None and 0.25 <= first <= 0.5
    assert later is not None and 4.0 <= later <= 8.0


def test_other_codes_are_final() -> None:
    assert retry_delay(_unanswered(grpc.StatusCode.INVALID_ARGUMENT), 0) is None
    assert retry_delay(_unanswered(grpc.StatusCode.INTERNAL), 0) is None
