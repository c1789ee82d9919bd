"""The gateway's one exception tree.

Every error raised inside the gateway or a driver derives from :class:`AgwError`. Each carries
the device it concerns (if any), the phase it happened in, and whether retrying may help.
Third-party errors (asyncssh, scrapli, pysnmp, SQLAlchemy, ...) are translated into this tree in
exactly one place per driver or backend, chained with ``raise ... from exc``.

The root and everything a driver raises or is given live in the driver SDK, :mod:`drivers.errors`
(marked ``sdk`` below; its docstring draws its part in full, the device errors included); this
module adds the gateway's own classes (marked ``gateway``) under the same root and re-exports the
SDK's, so ``from gateway.errors import X`` works for every class of the tree.

::

    AgwError                         sdk       (message, device, phase, retryable)
    ├── InputError                   sdk       bad request or change content: INVALID_ARGUMENT, every violation
    ├── NotFoundError                gateway   unknown activation / fallout id: NOT_FOUND
    ├── ConflictError                gateway   same request_id, different content: ALREADY_EXISTS
    ├── StateError                   sdk       operation not allowed in this state: FAILED_PRECONDITION
    ├── UnauthenticatedError         gateway   no (or an unknown) caller identity: UNAUTHENTICATED
    ├── PermissionDeniedError        gateway   the caller's role or scope does not allow it: PERMISSION_DENIED
    ├── ResourceExhaustedError       gateway   a per-caller limit is reached (retry_after_s): RESOURCE_EXHAUSTED
    ├── ConfigurationError           sdk       bad gateway config, inventory, profile, driver settings,
    │                                          credentials
    │   ├── DriverNotFoundError      sdk       no driver registered under that name
    │   └── DriverUnavailableError   sdk       driver found but an optional dependency is missing
    ├── RenderError                  sdk       a change did not render into what its driver sends (names
    │                                          template, line, variable; or the XML the driver cannot scope)
    ├── ShuttingDownError            gateway   the gateway is shutting down: an open stream ends (UNAVAILABLE)
    ├── JournalError                 gateway   the journal cannot be read or written
    │   └── FencedError              gateway   this replica lost its journal lease (another takes over):
    │                                          it writes nothing more and touches no device
    └── DeviceError                  sdk       something went wrong talking to a device: ConnectError,
                                               AuthenticationError, HostKeyError, DeviceTimeoutError,
                                               SessionLostError, LockDeniedError (DeviceBusyError),
                                               DeviceRejectedError, VerificationError,
                                               UnsupportedOperationError, DeviceReplyError
                                               (drawn, with what each means, in drivers.errors)

gRPC status codes for these live in :mod:`gateway.api.status` only.
"""

from __future__ import annotations

from drivers.errors import (
    AgwError,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    DeviceBusyError,
    DeviceError,
    DeviceErrorInfo,
    DeviceRejectedError,
    DeviceReplyError,
    DeviceTimeoutError,
    DriverNotFoundError,
    DriverUnavailableError,
    FieldViolation,
    HostKeyError,
    InputError,
    LockDeniedError,
    Phase,
    RenderError,
    SessionLostError,
    StateError,
    UnsupportedOperationError,
    VerificationError,
)


class NotFoundError(AgwError):
    pass


class ConflictError(AgwError):
    pass


class UnauthenticatedError(AgwError):
    """The call carries no identity the gateway knows (no client certificate, or none the policy names)."""


class PermissionDeniedError(AgwError):
    """The caller is known, but its role or scope does not allow this call; the message names
    the role or scope needed."""


class ResourceExhaustedError(AgwError):
    """A per-caller limit is reached; ``retry_after_s`` says when trying again makes sense."""

    default_retryable = True

    def __init__(self, message: str, *, retry_after_s: float = 1.0, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class JournalError(AgwError):
    default_retryable = True


class ShuttingDownError(AgwError):
    """This gateway is shutting down: an open Watch or Subscribe stream ends with it at once (it
    would otherwise hold the shutdown for its whole grace period). Retryable: UNAVAILABLE; the
    caller watches again, or resumes its subscription from its cursor, on another replica or after
    the restart."""

    default_retryable = True


class FencedError(JournalError):
    """This gateway no longer holds the journal's lease (:mod:`gateway.journal.lease`): another
    gateway may have taken its work over, so it writes nothing and touches no device any more."""

    default_retryable = False


__all__ = [
    "AgwError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "FencedError",
    "ConnectError",
    "DeviceBusyError",
    "DeviceError",
    "DeviceErrorInfo",
    "DeviceRejectedError",
    "DeviceReplyError",
    "DeviceTimeoutError",
    "DriverNotFoundError",
    "DriverUnavailableError",
    "FieldViolation",
    "HostKeyError",
    "InputError",
    "JournalError",
    "LockDeniedError",
    "NotFoundError",
    "PermissionDeniedError",
    "Phase",
    "RenderError",
    "ResourceExhaustedError",
    "SessionLostError",
    "ShuttingDownError",
    "StateError",
    "UnauthenticatedError",
    "UnsupportedOperationError",
    "VerificationError",
]
