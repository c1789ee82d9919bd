"""Errors of the lab runner, rooted in the gateway's one exception tree.

::

    ConfigurationError (gateway.errors)
    └── LabError                     anything the lab runner refuses or fails to do
        ├── TopologyError            a topology file is invalid: names the file, field and reason
        ├── LabConflictError         a namespace/lab/user already belongs to someone else
        ├── NotRootError             the lab needs root; says what and why
        ├── ReadinessError           a daemon did not become ready: names node, daemon and log file
        └── FaultError               a fault could not be applied (unknown action, node, daemon)
"""

from __future__ import annotations

from gateway.errors import ConfigurationError, FieldViolation


class LabError(ConfigurationError):
    """Root of the lab runner's errors."""


class TopologyError(LabError):
    """A topology file is invalid. ``violations`` lists every problem, each with its field."""

    def __init__(self, file: str, violations: list[FieldViolation] | tuple[FieldViolation, ...]) -> None:
        self.file = file
        self.violations = tuple(violations)
        lines = "; ".join(f"{v.field}: {v.reason}" for v in self.violations)
        super().__init__(f"{file}: {lines}")


class LabConflictError(LabError):
    pass


class NotRootError(LabError):
    pass


class ReadinessError(LabError):
    """``failures`` holds (node, daemon, log file, reason) for every node that did not come up."""

    def __init__(self, message: str, failures: tuple[tuple[str, str, str, str], ...] = ()) -> None:
        self.failures = failures
        super().__init__(message)


class FaultError(LabError):
    pass


NOT_ROOT_MESSAGE = (
    "the lab needs root: it creates network namespaces, veth pairs, a host route and mounts, "
    "starts sshd/netconfd/FRR/snmpd that bind privileged ports (22, 161, 830) and switch users, "
    "and injects faults with nft, tc and iptables; run it as root (sudo)"
)

__all__ = [
    "NOT_ROOT_MESSAGE",
    "FaultError",
    "LabConflictError",
    "LabError",
    "NotRootError",
    "ReadinessError",
    "TopologyError",
]
