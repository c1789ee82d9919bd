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
ConfigurationError         FAILED_PRECONDITION, generic message with an incident id (the text
                           stays in the log: it names credential references and files)
DeviceReplyError           ABORTED (the device's reply was refused: retrying sends it again)
HostKeyError               FAILED_PRECONDITION (the device's SSH host key is unknown or changed:
                           nothing helps until a person checks it and updates known_hosts)
DeviceError                UNAVAILABLE if retryable, else ABORTED
JournalError               UNAVAILABLE, generic message with an incident id (database text
                           and the journal path stay in the log)
other AgwError             UNAVAILABLE if retryable, else FAILED_PRECONDITION
anything else              INTERNAL, generic message; the traceback is logged with an id
=========================  ==========================================================

What a caller may see of an error is decided in :mod:`gateway.incidents`. A malformed request
(one that does not even deserialize) is answered INVALID_ARGUMENT by
:mod:`gateway.api.interceptors`, before any servicer runs.

The status message and details are bounded: they travel in HTTP/2 trailers, and a stock client
refuses a header block over 8 KiB (``grpc.max_metadata_size``). The message is at most
``MAX_MESSAGE_WIRE_BYTES`` once percent-encoded as gRPC sends it, the serialized details at most
``MAX_DETAILS_BYTES`` (base64 on the wire: 4/3 of that): field names and reasons are clipped, at
most ``MAX_VIOLATIONS_SHOWN`` violations are listed — fewer when they do not fit — then "... and N
more". Control characters in a message are escaped (ESC becomes the text ``\\x1b``): no terminal
sequence reaches a client's screen through a status.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable, NoReturn

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
from gateway.incidents import public_text

try:  # optional: rich error details (google.rpc.BadRequest)
    from google.rpc import code_pb2, error_details_pb2, status_pb2
    from grpc_status import rpc_status
    _RICH_DETAILS = True
except ImportError:  # pragma: no cover - depends on the installed extras
    _RICH_DETAILS = False

log = logging.getLogger(__name__)

MAX_VIOLATIONS_SHOWN = 20
MAX_FIELD_CHARS = 120
MAX_REASON_CHARS = 120
MAX_MESSAGE_CHARS = 2000
MAX_MESSAGE_WIRE_BYTES = 1536
"""The grpc-message trailer, percent-encoded (a non-ASCII or control byte takes 3)."""
MAX_DETAILS_BYTES = 3072
"""The serialized google.rpc.Status of grpc-status-details-bin (4 KiB once base64-encoded)."""
MAX_VIOLATION_PART_WIRE_BYTES = 300
"""A violation's field, and its reason, each at most this many wire bytes (non-ASCII costs more)."""
_DETAILS_KEY = "grpc-status-details-bin"
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Mapped:
    code: grpc.StatusCode
    message: str
    violations: tuple[FieldViolation, ...] = ()
    retry_after_s: float | None = None


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _clip_middle(text: str, n: int) -> str:
    """Clipped in the middle: a field path keeps its start and its end."""
    if len(text) <= n:
        return text
    head = (n - 1) // 2
    return text[:head] + "…" + text[len(text) - (n - 1 - head):]


def printable(text: str) -> str:
    """``text`` with control characters, line/paragraph separators and bidi controls escaped."""
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


def wire_bytes(text: str) -> int:
    """The size of ``text`` as a grpc-message value (percent-encoded UTF-8)."""
    raw = text.encode("utf-8", "replace")
    return len(raw) + 2 * sum(1 for b in raw if b < 0x20 or b > 0x7E or b == 0x25)


def clip_message(text: str, limit: int = MAX_MESSAGE_WIRE_BYTES) -> str:
    """``text`` made printable and clipped to ``limit`` wire bytes (and MAX_MESSAGE_CHARS)."""
    return _clip_wire(_clip(printable(text), MAX_MESSAGE_CHARS), limit)


def _clip_wire(text: str, limit: int) -> str:
    if wire_bytes(text) <= limit:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits with its "…" (9 wire bytes)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if wire_bytes(text[:mid]) + 9 <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def _shown(v: FieldViolation) -> FieldViolation:
    field = _clip_wire(_clip_middle(printable(v.field), MAX_FIELD_CHARS), MAX_VIOLATION_PART_WIRE_BYTES)
    reason = _clip_wire(_clip(printable(v.reason), MAX_REASON_CHARS), MAX_VIOLATION_PART_WIRE_BYTES)
    return FieldViolation(field, reason)


def _violations_message(shown: tuple[FieldViolation, ...], total: int) -> str:
    more = total - len(shown)
    if not shown:
        return f"invalid request: {total} violations (too long to list)" if total else "invalid request"
    text = "; ".join(str(v) for v in shown)
    if more > 0:
        text += f"; ... and {more} more"
    return "invalid request: " + text


def _fit_violations(violations: tuple[FieldViolation, ...]) -> tuple[str, tuple[FieldViolation, ...]]:
    """The message and the violations to show: as many as fit both trailer budgets."""
    candidates = tuple(_shown(v) for v in violations[:MAX_VIOLATIONS_SHOWN])
    best: tuple[str, tuple[FieldViolation, ...]] = (_violations_message((), len(violations)), ())
    for k in range(1, len(candidates) + 1):
        shown = candidates[:k]
        message = _violations_message(shown, len(violations))
        if wire_bytes(message) > MAX_MESSAGE_WIRE_BYTES or _details_bytes(message, shown) > MAX_DETAILS_BYTES:
            break
        best = (message, shown)
    return best


def _details_bytes(message: str, shown: tuple[FieldViolation, ...]) -> int:
    if not _RICH_DETAILS:
        return 0
    return _status_proto(grpc.StatusCode.INVALID_ARGUMENT, message, shown, None).ByteSize()


def map_error(exc: BaseException) -> Mapped:
    """The status for ``exc``. What a caller may not see is logged with an incident id
    (:mod:`gateway.incidents`)."""
    if isinstance(exc, InputError):
        message, shown = _fit_violations(exc.violations)
        return Mapped(grpc.StatusCode.INVALID_ARGUMENT, message, shown)
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
    if isinstance(exc, StateError):
        return Mapped(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, ConfigurationError):
        return Mapped(grpc.StatusCode.FAILED_PRECONDITION, public_text(exc))
    if isinstance(exc, DeviceReplyError):
        return Mapped(grpc.StatusCode.ABORTED, str(exc))
    if isinstance(exc, HostKeyError):
        return Mapped(grpc.StatusCode.FAILED_PRECONDITION, public_text(exc))
    if isinstance(exc, DeviceError):
        code = grpc.StatusCode.UNAVAILABLE if exc.retryable else grpc.StatusCode.ABORTED
        return Mapped(code, str(exc))
    if isinstance(exc, JournalError):
        return Mapped(grpc.StatusCode.UNAVAILABLE, public_text(exc))
    if isinstance(exc, AgwError):
        code = grpc.StatusCode.UNAVAILABLE if exc.retryable else grpc.StatusCode.FAILED_PRECONDITION
        return Mapped(code, str(exc))
    return Mapped(grpc.StatusCode.INTERNAL, public_text(exc))


def _status_proto(code: grpc.StatusCode, message: str, violations: tuple[FieldViolation, ...],
                  retry_after_s: float | None) -> "status_pb2.Status":
    st = status_pb2.Status(code=code.value[0], message=message)
    if violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.reason) for v in violations
            ]
        )
        st.details.add().Pack(bad)
    if retry_after_s is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(int(max(0.0, retry_after_s) * 1e9))
        st.details.add().Pack(retry)
    return st


def _trailing_metadata(mapped: Mapped, message: str) -> tuple[tuple[str, str | bytes], ...]:
    """grpc-status-details-bin for ``mapped`` (``message``: the status message as sent)."""
    if not _RICH_DETAILS or not (mapped.violations or mapped.retry_after_s is not None):
        return ()
    violations = tuple(_shown(v) for v in mapped.violations[:MAX_VIOLATIONS_SHOWN])
    st = _status_proto(mapped.code, message, violations, mapped.retry_after_s)
    while violations and st.ByteSize() > MAX_DETAILS_BYTES:  # a Mapped not built by map_error
        violations = violations[:-1]
        st = _status_proto(mapped.code, message, violations, mapped.retry_after_s)
    return tuple(rpc_status.to_status(st).trailing_metadata)


def retry_after_s(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> float | None:
    """Client side: the retry delay carried as google.rpc.RetryInfo, if any."""
    if not _RICH_DETAILS or not trailing_metadata:
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
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):  # False: a detail of another type
                return info.retry_delay.ToNanoseconds() / 1e9
    return None


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    """End the call with the status for ``exc``."""
    mapped = map_error(exc)
    message = clip_message(mapped.message)
    await context.abort(mapped.code, message, _trailing_metadata(mapped, message))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


async def abort_malformed(context: grpc.aio.ServicerContext[Any, Any], type_name: str, reason: str) -> NoReturn:
    """End a call whose request did not deserialize: INVALID_ARGUMENT, "the request is not a
    valid <type>: <reason>" (+ a BadRequest violation on the field ``request``)."""
    mapped = Mapped(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {type_name}: {reason}",
                    (FieldViolation("request", reason),))
    message = clip_message(mapped.message)
    await context.abort(mapped.code, message, _trailing_metadata(mapped, message))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def bad_request_details(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> list[FieldViolation]:
    """Client side: the field violations carried as google.rpc.BadRequest details, if any."""
    if not _RICH_DETAILS or not trailing_metadata:
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
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):  # False: a detail of another type
                out.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return out


__all__ = [
    "MAX_DETAILS_BYTES",
    "MAX_MESSAGE_WIRE_BYTES",
    "MAX_VIOLATIONS_SHOWN",
    "Mapped",
    "abort",
    "abort_malformed",
    "bad_request_details",
    "clip_message",
    "map_error",
    "printable",
    "retry_after_s",
    "wire_bytes",
]
