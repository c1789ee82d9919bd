"""The driver SDK's exceptions: the root of the one exception tree, and everything a driver raises.

Every error raised inside the gateway or a driver derives from :class:`AgwError`. Each carries
the device it concerns (if any), the phase it happened in, and whether retrying may help. A driver
translates its library's errors (asyncssh, scrapli, pysnmp, a tool's output...) into this tree in
exactly one place, chained with ``raise ... from exc``. The gateway adds its own classes under the
same root (:mod:`gateway.errors`: journal, lookups, callers, limits) and re-exports these.

::

    AgwError                               (message, device, phase, retryable)
    ├── InputError                         bad request or change content: INVALID_ARGUMENT, every violation
    ├── StateError                         operation not allowed in this state (a snapshot the driver
    │                                      cannot read back): FAILED_PRECONDITION
    ├── ConfigurationError                 bad gateway config, inventory, profile, driver settings,
    │                                      credentials
    │   ├── DriverNotFoundError            no driver registered under that name
    │   └── DriverUnavailableError         driver found but an optional dependency is missing
    ├── RenderError                        a change did not render into what the driver sends (template,
    │                                      line, variable; NETCONF: configuration XML it cannot scope)
    └── DeviceError                        something went wrong talking to a device
        ├── ConnectError                   TCP/SSH connect or handshake failed (retryable)
        ├── AuthenticationError            the device refused the credentials
        ├── HostKeyError                   the device's SSH host key is unknown or changed (never
                                           retryable; refused before any credential is sent)
        ├── DeviceTimeoutError             an operation exceeded its timeout (retryable)
        ├── SessionLostError               the session dropped mid-operation (retryable)
        ├── LockDeniedError                the device's datastore is locked by someone else (retryable)
        │   └── DeviceBusyError            the gateway's own lock on the device did not come free in time (retryable)
        ├── DeviceRejectedError            the device refused the change; carries DeviceErrorInfo
        ├── VerificationError              read-back differs from what was pushed
        ├── UnsupportedOperationError      the driver does not declare the capability asked for
        └── DeviceReplyError               the device sent what the driver refuses to take: over a
                                           profile size limit, unsafe or too deeply nested XML
                                           (never retryable: the device would send it again)

A driver imports only the SDK (``drivers.*``), never ``gateway``. gRPC status codes for these live
in the gateway's ``gateway.api.status`` only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Phase(str, enum.Enum):
    """Where in an activation an error (or an event) happened."""

    VALIDATE = "validate"
    RENDER = "render"
    CONNECT = "connect"
    LOCK = "lock"
    SNAPSHOT = "snapshot"
    PUSH = "push"
    DIFF = "diff"
    COMMIT = "commit"
    VERIFY = "verify"
    CONFIRM = "confirm"
    UNLOCK = "unlock"
    ROLLBACK = "rollback"
    ROLLBACK_VERIFY = "rollback_verify"
    RECOVER = "recover"
    JOURNAL = "journal"


@dataclass(frozen=True)
class FieldViolation:
    """One reason a request was refused: which field and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(frozen=True)
class DeviceErrorInfo:
    """The device's own error, parsed: NETCONF rpc-error, CLI line + message, SNMP error-status."""

    message: str
    tag: str = ""  # NETCONF error-tag (e.g. invalid-value) or SNMP error-status (e.g. notWritable)
    path: str = ""  # NETCONF error-path, SNMP OID, or CLI parent context
    severity: str = "error"
    line: str = ""  # the CLI line the device rejected
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        parts = [p for p in (self.tag, self.path, self.line and f"line {self.line!r}", self.message) if p]
        return ": ".join(parts)


class AgwError(Exception):
    """Root of every error of the gateway and its drivers."""

    default_retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        phase: Phase | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.device = device
        self.phase = phase
        self.retryable = self.default_retryable if retryable is None else retryable

    def __str__(self) -> str:
        where = []
        if self.device:
            where.append(f"device {self.device}")
        if self.phase:
            where.append(f"phase {self.phase.value}")
        prefix = f"[{', '.join(where)}] " if where else ""
        return f"{prefix}{self.message}"


class InputError(AgwError):
    """The request is invalid. ``violations`` lists every problem found, not only the first."""

    def __init__(self, violations: list[FieldViolation] | tuple[FieldViolation, ...], **kw: object) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(str(v) for v in self.violations) or "invalid request", **kw)  # type: ignore[arg-type]


class StateError(AgwError):
    pass


class ConfigurationError(AgwError):
    pass


class DriverNotFoundError(ConfigurationError):
    pass


class DriverUnavailableError(ConfigurationError):
    """A driver's optional dependency is missing; the message names the extra to install."""


class RenderError(AgwError):
    pass


class DeviceError(AgwError):
    """An error talking to a device. ``info`` holds the device's own parsed error, if any."""

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        phase: Phase | None = None,
        retryable: bool | None = None,
        info: DeviceErrorInfo | None = None,
    ) -> None:
        super().__init__(message, device=device, phase=phase, retryable=retryable)
        self.info = info


class ConnectError(DeviceError):
    default_retryable = True


class AuthenticationError(DeviceError):
    pass


class HostKeyError(DeviceError):
    """The SSH host key the device offered is not in the known_hosts file named for it: ``unknown``
    (the file holds no key for host:port) or ``changed`` (it holds another one). Raised after the
    key exchange, before authentication: no credential was sent. Never retryable (the device
    would offer the same key again); a person checks the key and updates the file."""

    UNKNOWN = "unknown host key"
    CHANGED = "host key changed"

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        phase: Phase | None = None,
        retryable: bool | None = None,
        info: DeviceErrorInfo | None = None,
        problem: str = "",
        host: str = "",
        port: int = 0,
        fingerprint: str = "",
        known_hosts: str = "",
    ) -> None:
        super().__init__(message, device=device, phase=phase, retryable=False, info=info)
        self.problem = problem
        """:attr:`UNKNOWN` or :attr:`CHANGED` (empty: the library did not say)."""
        self.host, self.port = host, port
        self.fingerprint = fingerprint
        """The key the device offered (``ssh-ed25519 SHA256:...``); empty when not known."""
        self.known_hosts = known_hosts

    @classmethod
    def refused(cls, *, device: str, host: str, port: int, changed: bool, fingerprint: str, known_hosts: str,
                phase: Phase = Phase.CONNECT) -> "HostKeyError":
        """The error with its standard message (every SSH driver raises this one)."""
        problem = cls.CHANGED if changed else cls.UNKNOWN
        offered = fingerprint or "a key whose fingerprint could not be read"
        entry = host if port == 22 else f"[{host}]:{port}"
        if changed:
            what = (f"but {known_hosts} holds another key for {entry} (the device was re-keyed or re-installed, "
                    "or something in the middle answers for it: check the new key out of band before replacing "
                    "the old line)")
        else:
            what = f"and {known_hosts} holds no key for {entry} (check the key out of band, then add a line for {entry})"
        return cls(
            f"{problem} for device {device} ({host}:{port}): it offered {offered}, {what}. Refused before "
            "authentication: no credentials were sent",
            device=device, phase=phase, problem=problem, host=host, port=port, fingerprint=fingerprint,
            known_hosts=known_hosts,
        )


class DeviceTimeoutError(DeviceError):
    default_retryable = True


class SessionLostError(DeviceError):
    default_retryable = True


class LockDeniedError(DeviceError):
    default_retryable = True


class DeviceBusyError(LockDeniedError):
    """The device is busy with other work of this gateway and its lock did not come free within
    the wait limit: nothing was sent; retry later."""


class DeviceRejectedError(DeviceError):
    pass


class VerificationError(DeviceError):
    pass


class UnsupportedOperationError(DeviceError):
    pass


class DeviceReplyError(DeviceError):
    """The device's reply was refused (too large for the profile's limit, a DOCTYPE, nested too
    deep, an output too long): the message names the limit and the profile setting."""


__all__ = [
    "AgwError",
    "AuthenticationError",
    "ConfigurationError",
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
    "LockDeniedError",
    "Phase",
    "RenderError",
    "SessionLostError",
    "StateError",
    "UnsupportedOperationError",
    "VerificationError",
]
