"""The one place where gateway errors become gRPC status codes and messages.

=========================  ==========================================================
error                      status
=========================  ==========================================================
InputError                 INVALID_ARGUMENT, every violation as "field: reason"
                           (+ google.rpc.BadRequest details when grpcio-status is installed)
RenderError                INVALID_ARGUMENT (the parameters did not render)
NotFoundError              NOT_FOUND
ConflictError              ALREADY_EXISTS
StateError                 FAILED_PRECONDITION
UnauthenticatedError       UNAUTHENTICATED
PermissionDeniedError      PERMISSION_DENIED (the message names the role or scope needed)
ResourceExhaustedError     RESOURCE_EXHAUSTED (+ google.rpc.RetryInfo with the retry delay)
ConfigurationError         FAILED_PRECONDITION
DeviceReplyError           ABORTED (the device's reply was refused: retrying sends it again)
HostKeyError               FAILED_PRECONDITION (the device's SSH host key is unknown or changed:
                           nothing helps until a person checks it and updates known_hosts)
DeviceError                UNAVAILABLE if retryable, else ABORTED
JournalError               UNAVAILABLE
other AgwError             UNAVAILABLE if retryable, else FAILED_PRECONDITION
anything else              INTERNAL, generic message; the traceback is logged with an id
=========================  ==========================================================

The status message and details are bounded (they travel in HTTP/2 trailers, ~8 KiB): at most
``MAX_VIOLATIONS_SHOWN`` violations are listed, then "... and N more".
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Iterable, NoReturn

import grpc
import grpc.aio

from gateway.errors import (
    AgwError,
    ConfigurationError,
    ConflictError,
    DeviceError,
    DeviceReplyError,
    FieldViolation,
    HostKeyError,
    InputError,
    JournalError,
    NotFoundError,
    PermissionDeniedError,
    RenderError,
    ResourceExhaustedError,
    StateError,
    UnauthenticatedError,
)

try:  # optional: rich error details (google.rpc.BadRequest)
    from google.rpc import code_pb2, error_details_pb2, status_pb2
    from grpc_status import rpc_status
except ImportError:  # pragma: no cover - depends on the installed extras
    rpc_status = None

log = logging.getLogger(__name__)

MAX_VIOLATIONS_SHOWN = 20
MAX_REASON_CHARS = 120
MAX_MESSAGE_CHARS = 2000
_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class Mapped:
    code: grpc.StatusCode
    message: str
    violations: tuple[FieldViolation, ...] = ()
    retry_after_s: float | None = None


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _violations_message(violations: tuple[FieldViolation, ...]) -> str:
    shown = [_clip(str(v), MAX_REASON_CHARS) for v in violations[:MAX_VIOLATIONS_SHOWN]]
    more = len(violations) - len(shown)
    text = "; ".join(shown) or "invalid request"
    if more > 0:
        text += f"; ... and {more} more"
    return "invalid request: " + text


def map_error(exc: BaseException) -> Mapped:
    """The status for ``exc``. Unexpected errors are logged here with their traceback."""
    if isinstance(exc, InputError):
        v = exc.violations[:MAX_VIOLATIONS_SHOWN]
        return Mapped(grpc.StatusCode.INVALID_ARGUMENT, _violations_message(exc.violations), v)
    if isinstance(exc, RenderError):
        return Mapped(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, NotFoundError):
        return Mapped(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, ConflictError):
        return Mapped(grpc.StatusCode.ALREADY_EXISTS, str(exc))
    if isinstance(exc, UnauthenticatedError):
        return Mapped(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    if isinstance(exc, PermissionDeniedError):
        return Mapped(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    if isinstance(exc, ResourceExhaustedError):
        return Mapped(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), retry_after_s=exc.retry_after_s)
    if isinstance(exc, (StateError, ConfigurationError)):
        return Mapped(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, DeviceReplyError):
        return Mapped(grpc.StatusCode.ABORTED, str(exc))
    if isinstance(exc, HostKeyError):
        return Mapped(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, DeviceError):
        code = grpc.StatusCode.UNAVAILABLE if exc.retryable else grpc.StatusCode.ABORTED
        return Mapped(code, str(exc))
    if isinstance(exc, JournalError):
        return Mapped(grpc.StatusCode.UNAVAILABLE, str(exc))
    if isinstance(exc, AgwError):
        code = grpc.StatusCode.UNAVAILABLE if exc.retryable else grpc.StatusCode.FAILED_PRECONDITION
        return Mapped(code, str(exc))
    incident = uuid.uuid4().hex[:12]
    log.error("unexpected error (incident %s)", incident, exc_info=exc)
    return Mapped(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}; see the gateway log)")


def _trailing_metadata(mapped: Mapped) -> tuple[tuple[str, str | bytes], ...]:
    if rpc_status is None or not (mapped.violations or mapped.retry_after_s is not None):
        return ()
    st = status_pb2.Status(code=mapped.code.value[0], message=_clip(mapped.message, MAX_MESSAGE_CHARS))
    if mapped.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=_clip(v.reason, MAX_REASON_CHARS))
                for v in mapped.violations
            ]
        )
        st.details.add().Pack(bad)
    if mapped.retry_after_s is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(int(max(0.0, mapped.retry_after_s) * 1e9))
        st.details.add().Pack(retry)
    return tuple(rpc_status.to_status(st).trailing_metadata)


def retry_after_s(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> float | None:
    """Client side: the retry delay carried as google.rpc.RetryInfo, if any."""
    if rpc_status is None or not trailing_metadata:
        return None
    for key, value in trailing_metadata:
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        st = status_pb2.Status()
        try:
            st.ParseFromString(value)
        except Exception:  # noqa: BLE001 - malformed details: no hint
            return None
        for detail in st.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return info.retry_delay.ToNanoseconds() / 1e9
    return None


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> NoReturn:
    """End the call with the status for ``exc``."""
    mapped = map_error(exc)
    await context.abort(mapped.code, _clip(mapped.message, MAX_MESSAGE_CHARS), _trailing_metadata(mapped))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def bad_request_details(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> list[FieldViolation]:
    """Client side: the field violations carried as google.rpc.BadRequest details, if any."""
    if rpc_status is None or not trailing_metadata:
        return []
    out: list[FieldViolation] = []
    for key, value in trailing_metadata:
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        st = status_pb2.Status()
        try:
            st.ParseFromString(value)
        except Exception:  # noqa: BLE001 - malformed details: show none rather than fail
            return []
        for detail in st.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                out.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return out


__all__ = ["MAX_VIOLATIONS_SHOWN", "Mapped", "abort", "bad_request_details", "map_error", "retry_after_s"]
