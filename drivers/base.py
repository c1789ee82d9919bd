"""The southbound contract: one change lifecycle for every driver.

A driver speaks one protocol to one device over one session. The engine drives it through the
same lifecycle whatever the protocol, and reads the driver's declared :class:`Capabilities`
*before* it plans — it never discovers a capability by catching an error::

    open ─► [lock] ─► read(scope_of(change)) (snapshot) ─► load ─► [validate]
        ─► [commit (confirmed, persist-id)] ─► verify(change, snapshot) ─► [confirm] ─► [unlock] ─► close
    on failure:  staged, not committed     ─► discard
                 pending confirmed commit ─► cancel_commit
                 applied                   ─► restore(snapshot, undo)
                 then read(scope) again and compare with the snapshot (verified rollback)

``scope_of`` is pure (no device access): the part of the device a change touches, as plain text
the driver reads with ``read``; the engine keeps it (in the snapshot) to read the same part again
after the change, in a rollback and after a gateway restart.

Layers below a driver: transport (bytes) → session (framing, request/reply, timeouts) → driver
(these operations) → platform data (``device_profiles/<platform>.yaml``, given as
:class:`DeviceProfile`, its ``settings`` and ``quirks`` parsed by :meth:`Driver.settings_from`).
Every operation honours its timeout from :class:`Timeouts`, and raises only errors from
:mod:`drivers.errors` (third-party errors are translated in one place per driver).

This module, :mod:`drivers.errors`, :mod:`drivers.secrets`, :mod:`drivers.profiles` and
:mod:`drivers.incidents` are the driver SDK: a driver (built-in or a plugin) imports nothing from
``gateway``.

Drivers are found through the ``agw.drivers`` entry-point group (see :mod:`drivers.registry`).
"""

from __future__ import annotations

import abc
import difflib
import enum
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping

from drivers.errors import DeviceErrorInfo, UnsupportedOperationError, Phase
from drivers.secrets import Credential


class Action(str, enum.Enum):
    """What a task does to its service instance (the engine, the journal and the API use it too:
    :mod:`gateway.model` re-exports it)."""

    CREATE = "create"
    MODIFY = "modify"
    DELETE = "delete"


class PayloadFormat(str, enum.Enum):
    """What a driver sends to its device, declared by the driver (never by a profile).

    The gateway renders a service template in the environment this format calls for, and checks
    every rendered payload before anything is sent (:mod:`gateway.render.payload`):

    * ``xml``: one NETCONF ``<config>`` document; values autoescaped, and each value is text or an
      attribute value, never markup;
    * ``lines``: configuration lines (SSH CLI); one value never spans or adds a line;
    * ``varbinds``: a YAML list of ``{oid, type, value}`` (SNMP); one value is one scalar of one
      varbind;
    * ``yaml``: a YAML document of the driver's own shape (a plugin's structured data); one value
      is one scalar value, never a key.
    """

    XML = "xml"
    LINES = "lines"
    VARBINDS = "varbinds"
    YAML = "yaml"


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What a driver can do natively on a platform. The engine emulates the rest."""

    lock: bool = False
    """Exclusive lock of the configuration datastore for the length of a change."""
    candidate: bool = False
    """Changes are staged by ``load`` and take effect only on ``commit``."""
    confirmed_commit: bool = False
    """``commit`` can arm a device-side revert timer that ``confirm`` disarms."""
    persist_id: bool = False
    """The armed timer survives the session, so a restarted gateway can confirm or cancel it."""
    validate: bool = False
    """The device can validate a staged change before commit."""
    native_rollback: bool = False
    """The device can roll back to a previous configuration by itself."""
    diff: bool = False
    """The device can produce a native diff of a staged change."""
    atomic_push: bool = False
    """One ``load``+``commit`` is applied all-or-nothing by the device."""

    def restricted_to(self, other: "Capabilities") -> "Capabilities":
        """The capabilities both declare (a profile can only narrow what a driver supports)."""
        return Capabilities(**{f.name: getattr(self, f.name) and getattr(other, f.name) for f in fields(self)})

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name))


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Per-operation timeouts, in seconds. Absolute, never multipliers."""

    connect_s: float = 10.0
    operation_s: float = 10.0
    commit_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Automatic retries of a task on a retryable error: timeouts, refused or dropped connections,
    a device busy or its lock denied. Before its push (connect, lock, snapshot: nothing sent to the
    device yet) the steps are tried again; after a push whose answer was lost, the gateway first
    reconnects and reads the device, and pushes again only when nothing was applied
    (``gateway/engine/retries.py``). Exponential backoff with jitter: attempt n waits between half
    and all of ``min(max_delay_s, initial_delay_s * 2**(n-1))``; no attempt starts after
    ``deadline_s`` from the first. ``attempts`` counts the first: 1 (the default) means no retry.
    An activation may give its own values, field by field, within the same caps."""

    attempts: int = 1
    initial_delay_s: float = 0.5
    max_delay_s: float = 5.0
    deadline_s: float = 30.0


MAX_RETRY_ATTEMPTS = 20
"""The hard cap of :attr:`RetryPolicy.attempts`, for a profile and for an activation alike."""
MAX_RETRY_S = 3600.0
"""The hard cap of each duration of a :class:`RetryPolicy` (an hour)."""


@dataclass(frozen=True, kw_only=True)
class DeviceProfile:
    """A platform, as data: which driver, what it can do, its quirks and driver settings."""

    platform: str
    driver: str
    capabilities: Capabilities
    timeouts: Timeouts = field(default_factory=Timeouts)
    confirm_timeout_s: int = 120
    """Device-side revert timer armed by a confirmed commit."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Automatic retries before the push (see :class:`RetryPolicy`)."""
    quirks: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Driver-specific data: prompts, error patterns, transport options..."""
    description: str = ""
    source: str = ""
    """The file the profile was read from (named in every error about it)."""
    device_managed: tuple[str, ...] = ()
    """What the device fills in or changes by itself inside a read scope (defaults, derived leaves,
    counters), in the driver's own path syntax: a difference there is never an unexpected change.
    NETCONF: glob patterns on paths (``/ietf-interfaces:interfaces/interface[*]/oper-status``);
    CLI: regular expressions on a line with its parents (``interface lo > ip address .*``);
    SNMP: OIDs or OID prefixes (``1.3.6.1.2.1.1.3.0``)."""


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where one device is reached with one protocol, with credentials already resolved."""

    device: str
    host: str
    port: int
    platform: str
    credential: Credential
    known_hosts: str = ""
    """SSH drivers: the known_hosts file (absolute path) holding the device's host key, named by
    the inventory. Empty with ``host_key_check`` on: the driver refuses to connect."""
    host_key_check: bool = True
    """SSH drivers: False only when the inventory turns the check off for this device."""


@dataclass(frozen=True, kw_only=True)
class ChangeSet:
    """A rendered change for one device, as its service template produced it."""

    service: str
    action: Action
    content: str
    """The rendered payload: NETCONF <config> XML, CLI lines, SNMP varbinds (YAML)..."""
    undo: str | None = None
    """An explicitly rendered undo, when the service ships an undo template."""
    checks: tuple[str, ...] = ()
    """The service's rendered operational checks (YAML texts, :mod:`drivers.checks`): ``verify``
    runs each, polling until its condition holds or its wait ends, after the exact read-back."""


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """The part of a device's state that a change touches, in a canonical text form.

    Two snapshots of the same scope are equal exactly when the device state they read is equal.
    ``scope`` is whatever the driver needs to read the same part again (a subtree filter, a list
    of OIDs...); both fields are plain text so the journal can store them.
    """

    content: str
    scope: str


@dataclass(frozen=True, kw_only=True)
class Mismatch:
    path: str
    expected: str | None
    """What the device should hold there (None: nothing)."""
    actual: str | None
    """What it holds (None: nothing)."""
    unexpected: bool = False
    """The change did not name this path: it differs from the pre-change snapshot by itself
    (an out-of-band change, a side effect); ``expected`` is then the snapshot's value."""

    def __str__(self) -> str:
        if self.unexpected:
            return f"{self.path}: changed though the change did not name it (was {self.expected!r}, now {self.actual!r})"
        return f"{self.path}: expected {self.expected!r}, found {self.actual!r}"


@dataclass(frozen=True, kw_only=True)
class Verification:
    """The result of reading back a change (or a rollback) from the device."""

    ok: bool
    checked: int
    mismatches: tuple[Mismatch, ...] = ()
    detail: str = ""
    readback: Snapshot | None = None
    """The state read back for the check, same scope as ``read(change)`` (saves the engine a read)."""


class Driver(abc.ABC):
    """One session to one device, speaking one protocol. Not safe for concurrent use:
    the engine serializes all work on a device."""

    name: ClassVar[str]
    """The entry-point name this driver registers under (``netconf``, ``cli``...)."""
    payload_format: ClassVar[PayloadFormat]
    """What ``load`` sends: the format templates for this driver's platforms render in."""
    supported: ClassVar[Capabilities]
    """Everything this driver can do on the best platform; profiles narrow it."""
    check_kinds: ClassVar[frozenset[str]] = frozenset()
    """The kinds of service check (:data:`drivers.checks.KINDS`: ``cli``, ``netconf``, ``snmp``)
    this driver's ``verify`` runs. The planner refuses a service whose rendered checks are of
    another kind, before anything is journaled; the default runs none."""

    def __init__(self, *, endpoint: Endpoint, profile: DeviceProfile) -> None:
        self.endpoint = endpoint
        self.profile = profile
        self.capabilities = self.capabilities_for(profile)

    @classmethod
    def capabilities_for(cls, profile: DeviceProfile) -> Capabilities:
        """What the engine may use on this platform: the profile's claims within ``supported``."""
        return profile.capabilities.restricted_to(cls.supported)

    @property
    def device(self) -> str:
        return self.endpoint.device

    @classmethod
    def settings_from(cls, profile: DeviceProfile) -> object:
        """Pure, no device: the profile's ``settings`` and ``quirks`` as this driver's frozen
        dataclass. A key the driver does not know, or a bad value, raises
        :class:`~drivers.errors.ConfigurationError` naming ``profile.source``, the key and the known
        ones (:func:`drivers.profiles.refuse_unknown`). The gateway calls it for every profile when
        it starts, so a typo stops the start. The default: the driver takes no settings and no
        quirks (``settings.render_format`` is always accepted: the gateway checks it)."""
        from drivers.profiles import NoSettings, refuse_unknown  # drivers.profiles imports this module

        refuse_unknown(profile, driver=cls.name)
        return NoSettings()

    @classmethod
    def check_change(cls, change: ChangeSet, profile: DeviceProfile) -> None:
        """Pure, no device: raise :class:`~drivers.errors.InputError` when this driver could not
        send ``change`` (a NETCONF list entry without its key, an SNMP type it does not know...).
        The planner calls it after rendering, so such a change is refused before anything is
        journaled. The default accepts everything."""
        return None

    # -- session -------------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and authenticate, within ``timeouts.connect_s``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the session. Never raises."""

    @property
    @abc.abstractmethod
    def is_open(self) -> bool:
        """True while the session can still be used (for the session pool)."""

    # -- change lifecycle ----------------------------------------------------------------
    async def lock(self) -> None:
        self._unsupported("lock", Phase.LOCK)

    async def unlock(self) -> None:
        self._unsupported("lock", Phase.UNLOCK)

    @abc.abstractmethod
    def scope_of(self, change: ChangeSet) -> str:
        """Pure, no device access: the scope ``change`` touches (what :meth:`read` reads), as
        text the driver understands again later (a subtree filter, a list of OIDs...)."""

    @abc.abstractmethod
    async def read(self, scope: str) -> Snapshot:
        """Read the running state of ``scope`` now, in canonical form (snapshot before a change,
        read-back after it, re-read in a rollback or after a restart)."""

    @abc.abstractmethod
    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        """The diff ``change`` would make, computed without changing the running state (on the
        device with a ``diff`` capability, else from the snapshot)."""

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        """A human-readable diff between two snapshots of the same scope. Pure. The default is a
        unified diff of their canonical texts; a driver may show something more native."""
        return "".join(difflib.unified_diff(before.content.splitlines(keepends=True),
                                            after.content.splitlines(keepends=True),
                                            fromfile=f"{self.device} (before)", tofile=f"{self.device} (after)"))

    @abc.abstractmethod
    async def load(self, change: ChangeSet) -> None:
        """Stage the change (``candidate``) or apply it (no candidate)."""

    async def validate(self, change: ChangeSet) -> None:
        """Ask the device to validate the staged change (``validate`` capability)."""
        self._unsupported("validate", Phase.VALIDATE)

    async def discard(self) -> None:
        self._unsupported("candidate", Phase.ROLLBACK)

    async def commit(self, *, confirm_timeout_s: int | None = None, persist_id: str | None = None) -> None:
        self._unsupported("candidate", Phase.COMMIT)

    async def confirm(self, *, persist_id: str | None = None) -> None:
        self._unsupported("confirmed_commit", Phase.CONFIRM)

    async def cancel_commit(self, *, persist_id: str | None = None) -> bool:
        """Revert a pending confirmed commit. False when none was pending (it already reverted)."""
        self._unsupported("confirmed_commit", Phase.ROLLBACK)
        return False

    @abc.abstractmethod
    async def verify(self, change: ChangeSet, before: Snapshot) -> Verification:
        """Read the scope back and prove the device holds exactly ``before`` with ``change`` applied;
        then run the change's checks (:mod:`drivers.checks`, of a kind in :attr:`check_kinds`),
        each failed one a :class:`Mismatch` ``check <name>`` with what it observed.

        Every rendered value must be there (or gone, for a delete), and nothing else in the scope
        may differ from ``before`` (the pre-change snapshot), except what the profile lists as
        ``device_managed``. Each difference is a :class:`Mismatch`: a leaf or line missing, changed,
        or added that the change did not name (``expected=None``)."""

    @abc.abstractmethod
    async def restore(self, snapshot: Snapshot, undo: str | None = None) -> None:
        """Put the scope of ``snapshot`` back as it was (generated undo, replace, SET back...).
        ``undo``: the change's explicitly rendered undo (``ChangeSet.undo``), when its service
        ships one; the driver may send it first, and must still bring the scope back to the
        snapshot."""

    # -- helpers -------------------------------------------------------------------------
    def _unsupported(self, capability: str, phase: Phase) -> None:
        raise UnsupportedOperationError(
            f"driver {self.name!r} does not declare the {capability!r} capability on platform "
            f"{self.profile.platform!r}",
            device=self.device,
            phase=phase,
        )


__all__ = [
    "Action",
    "Capabilities",
    "ChangeSet",
    "DeviceErrorInfo",
    "DeviceProfile",
    "Driver",
    "Endpoint",
    "Mismatch",
    "MAX_RETRY_ATTEMPTS",
    "MAX_RETRY_S",
    "PayloadFormat",
    "RetryPolicy",
    "Snapshot",
    "Timeouts",
    "Verification",
]
