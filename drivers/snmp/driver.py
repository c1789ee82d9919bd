"""The SNMP driver: a change is a list of varbinds, applied by one SET PDU.

Lifecycle on SNMP (no lock, no candidate, no confirmed commit; one SET is all-or-nothing,
RFC 3416 §4.2.5, hence ``atomic_push``)::

    open     configure the target, probe sysUpTime.0 (v3: engine discovery) within connect_s
    read     GET of the change's scope                   → Snapshot(content=lines, scope=OIDs)
    preview  diff of the snapshot against the snapshot with the change applied (no SET)
    load     one SET of every rendered varbind
    verify   GET of the scope: it must equal the snapshot with the change applied, exactly
    restore  one SET of the snapshot's values            (noSuchObject/noSuchInstance: refused)

The **scope** of a change is its OIDs plus, for each, the other members of the profile's
``scope_groups`` it belongs to (data: the writable scalars of a MIB group, e.g. sysContact,
sysName and sysLocation), so a side effect on a sibling, or an out-of-band SET of one, fails the
verification instead of passing unseen. OIDs the profile lists as ``device_managed`` (prefixes)
may differ by themselves.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from drivers.base import (
    Capabilities,
    ChangeSet,
    DeviceProfile,
    Driver,
    Endpoint,
    Mismatch,
    PayloadFormat,
    Snapshot,
    Verification,
)
from drivers import checks as svc_checks
from drivers.snmp.session import SECURITY_MODES, SnmpOptions, SnmpSession
from drivers.snmp.varbinds import (
    SnapshotFormatError,
    Varbind,
    diff_snapshots,
    diff_varbinds,
    format_scope,
    format_snapshot,
    intended,
    normalize_oid,
    parse_scope,
    parse_snapshot,
    parse_varbinds,
    sort_oids,
)
from drivers.errors import (
    ConfigurationError,
    DeviceErrorInfo,
    DeviceRejectedError,
    InputError,
    Phase,
    StateError,
)
from drivers.profiles import field_names, refuse_unknown, unknown_keys

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SnmpSettings:
    """The driver's part of ``DeviceProfile.settings``: every key a field here, any other refused.
    The SNMP driver takes no quirks."""

    security: str = "v3"
    retries: int = 1
    scope_groups: tuple[frozenset[str], ...] = ()
    """OIDs read and verified together: a change to one member reads all of them."""

    def scope(self, oids: list[str]) -> list[str]:
        wanted = set(oids)
        for group in self.scope_groups:
            if group & wanted:
                wanted |= group
        return sort_oids(wanted)

    @classmethod
    def from_profile(cls, settings: Mapping[str, Any], *, platform: str, source: str = "") -> "SnmpSettings":
        """Parse and check ``settings``; an unknown key or a bad value raises ConfigurationError
        naming the profile's file (``source``; else its platform) and the field."""
        where = source or f"device profile {platform!r}"
        unknown = unknown_keys("settings", settings, field_names(cls), driver="snmp")
        if unknown:
            raise ConfigurationError(f"{where}: " + "; ".join(unknown))
        security = str(settings.get("security", "v3"))
        retries = settings.get("retries", 1)
        groups: list[frozenset[str]] = []
        raw_groups = settings.get("scope_groups", [])
        if not isinstance(raw_groups, list) or not all(isinstance(g, list) and g for g in raw_groups):
            raise ConfigurationError(f"{where}: settings.scope_groups must be a list of non-empty lists of OIDs")
        for i, group in enumerate(raw_groups):
            try:
                groups.append(frozenset(normalize_oid(str(o)) for o in group))
            except ValueError as exc:
                raise ConfigurationError(f"{where}: settings.scope_groups[{i}]: {exc}") from None
        if security not in SECURITY_MODES:
            raise ConfigurationError(
                f"{where}: settings.security must be one of {', '.join(SECURITY_MODES)}, got {security!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise ConfigurationError(f"{where}: settings.retries must be an integer 0..10, got {retries!r}")
        return cls(security=security, retries=retries, scope_groups=tuple(groups))


class SnmpDriver(Driver):
    """SNMP v2c / v3 (USM authPriv) over UDP with pysnmp 7, numeric OIDs only."""

    name: ClassVar[str] = "snmp"
    payload_format: ClassVar[PayloadFormat] = PayloadFormat.VARBINDS
    supported: ClassVar[Capabilities] = Capabilities(atomic_push=True)
    check_kinds: ClassVar[frozenset[str]] = frozenset({svc_checks.SNMP})

    @classmethod
    def settings_from(cls, profile: DeviceProfile) -> SnmpSettings:
        refuse_unknown(profile, driver=cls.name, settings=field_names(SnmpSettings))
        return SnmpSettings.from_profile(profile.settings, platform=profile.platform, source=profile.source)

    @classmethod
    def check_change(cls, change: ChangeSet, profile: DeviceProfile) -> None:
        parse_varbinds(change.content, field="content")

    def __init__(self, *, endpoint: Endpoint, profile: DeviceProfile) -> None:
        super().__init__(endpoint=endpoint, profile=profile)
        self.settings = self.settings_from(profile)
        self._options = SnmpOptions(
            host=endpoint.host,
            port=endpoint.port,
            security=self.settings.security,
            retries=self.settings.retries,
            connect_timeout_s=profile.timeouts.connect_s,
            operation_timeout_s=profile.timeouts.operation_s,
        )
        self._session: SnmpSession | None = None

    # -- session -------------------------------------------------------------------------
    async def open(self) -> None:
        session = SnmpSession(device=self.device, options=self._options, credential=self.endpoint.credential)
        await session.open()
        self._session = session
        log.debug("opened SNMP %s session to %s (%s:%s)", session.mode, self.device, self.endpoint.host,
                  self.endpoint.port)

    async def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session = None

    @property
    def is_open(self) -> bool:
        return self._session is not None and self._session.is_open

    @property
    def security_mode(self) -> str:
        """``v2c`` or ``v3``: what the open session speaks."""
        return self._require(Phase.CONNECT).mode

    # -- change lifecycle ----------------------------------------------------------------
    def scope_of(self, change: ChangeSet) -> str:
        """The change's OIDs and the other members of their profile ``scope_groups``."""
        oids = [vb.oid for vb in self._varbinds(change, Phase.SNAPSHOT)]
        return format_scope(self.settings.scope(oids))

    async def read(self, scope: str) -> Snapshot:
        try:
            oids = parse_scope(scope)
        except SnapshotFormatError as exc:
            raise StateError(str(exc), device=self.device, phase=Phase.SNAPSHOT) from exc
        return await self._read(oids, Phase.SNAPSHOT)

    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        varbinds = self._varbinds(change, Phase.DIFF)
        before = self._parse_snapshot(snapshot, Phase.DIFF)
        return diff_varbinds(before, intended(before, varbinds))

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        try:
            return diff_snapshots(before.content, after.content)
        except SnapshotFormatError as exc:
            raise StateError(str(exc), device=self.device, phase=Phase.DIFF) from exc

    async def load(self, change: ChangeSet) -> None:
        varbinds = self._varbinds(change, Phase.PUSH)
        await self._require(Phase.PUSH).set(varbinds, phase=Phase.PUSH)
        log.debug("SET %d varbinds on %s", len(varbinds), self.device)

    async def verify(self, change: ChangeSet, before: Snapshot) -> Verification:
        """GET the scope: every OID must hold ``before`` with the change applied."""
        varbinds = self._varbinds(change, Phase.VERIFY)
        named = {vb.oid for vb in varbinds}
        want = intended(self._parse_snapshot(before, Phase.VERIFY), varbinds)
        oids = sort_oids(set(self.settings.scope(list(named))) | set(want))
        got = await self._require(Phase.VERIFY).get(oids, phase=Phase.VERIFY)
        actual = {vb.oid: vb for vb in got}
        mismatches = []
        for oid in oids:
            w, a = want.get(oid), actual.get(oid)
            if (w.text if w else None) == (a.text if a else None) or self._managed(oid):
                continue
            mismatches.append(Mismatch(path=oid, expected=w.text if w else None, actual=a.text if a else None,
                                       unexpected=oid not in named))
        readback = Snapshot(content=format_snapshot(got), scope=format_scope(oids))
        details = ["; ".join(str(m) for m in mismatches) if mismatches
                   else f"{len(oids)} value(s) read back equal to the snapshot plus the change"]
        checked = len(oids)
        checked += await svc_checks.run_all(svc_checks.parse_all(change, self.profile, svc_checks.SNMP),
                                            lambda check: svc_checks.run(check, functools.partial(self._probe, check)),
                                            mismatches=mismatches, details=details)
        return Verification(ok=not mismatches, checked=checked, mismatches=tuple(mismatches),
                            detail="; ".join(details), readback=readback)

    async def _probe(self, check: svc_checks.Check) -> list[dict[str, str]]:
        """One poll of an SNMP check: its GET or its walk, as records (:mod:`drivers.checks`)."""
        query = check.query
        assert isinstance(query, svc_checks.SnmpQuery)  # parse_all gave SNMP checks only
        session = self._require(Phase.VERIFY)
        if query.get:
            got = await session.get([oid for _, oid in query.get], phase=Phase.VERIFY)
            if query.per_oid:
                return [{"oid": vb.oid, "value": plain(vb)} for vb in got]
            return [{name: plain(vb) for (name, _), vb in zip(query.get, got)}]
        columns = [oid for _, oid in query.walk]
        found = await session.walk(columns, phase=Phase.VERIFY, max_rows=svc_checks.MAX_RECORDS)
        rows: dict[str, dict[str, str]] = {}
        for (name, column), vbs in zip(query.walk, found):
            for vb in vbs:
                index = vb.oid[len(column) + 1:]
                row = rows.setdefault(index, {"index": index})
                row[name] = plain(vb)
                if len(query.walk) == 1:
                    row["oid"] = vb.oid
        return sorted(rows.values(), key=lambda r: tuple(int(p) for p in r["index"].split(".")))

    def _managed(self, oid: str) -> bool:
        return any(oid == p or oid.startswith(p + ".") for p in self.profile.device_managed)

    async def restore(self, snapshot: Snapshot, undo: str | None = None) -> None:
        """One SET of the snapshot's values (``undo`` is not needed: the snapshot holds them)."""
        before = self._parse_snapshot(snapshot, Phase.ROLLBACK)
        missing = [vb for vb in before.values() if vb.is_exception]
        if missing:
            first = missing[0]
            raise DeviceRejectedError(
                f"cannot restore {first.oid}: it was {first.type} before the change, and SNMP cannot delete "
                f"an object by SET ({len(missing)} such OID(s): {', '.join(vb.oid for vb in missing)})",
                device=self.device,
                phase=Phase.ROLLBACK,
                info=DeviceErrorInfo(message="the object did not exist before the change", tag=first.type,
                                     path=first.oid),
            )
        await self._require(Phase.ROLLBACK).set(list(before.values()), phase=Phase.ROLLBACK)
        log.debug("restored %d varbinds on %s", len(before), self.device)

    # -- helpers -------------------------------------------------------------------------
    async def _read(self, oids: list[str], phase: Phase) -> Snapshot:
        got = await self._require(phase).get(oids, phase=phase)
        return Snapshot(content=format_snapshot(got), scope=format_scope(oids))

    def _varbinds(self, change: ChangeSet, phase: Phase) -> tuple[Varbind, ...]:
        try:
            return parse_varbinds(change.content, field=f"{change.service}.content")
        except InputError as exc:
            raise InputError(exc.violations, device=self.device, phase=phase) from exc

    def _parse_snapshot(self, snapshot: Snapshot, phase: Phase) -> dict[str, Varbind]:
        try:
            return parse_snapshot(snapshot.content)
        except SnapshotFormatError as exc:
            raise StateError(str(exc), device=self.device, phase=phase) from exc

    def _require(self, phase: Phase) -> SnmpSession:
        if self._session is None:
            raise StateError(f"the SNMP session to {self.device} is not open", device=self.device, phase=phase)
        return self._session


def plain(vb: Varbind) -> str:
    """A value as a check compares it: text of an OCTET STRING (hex ``0x..`` when not UTF-8),
    the number of an integer, the exception's name (``noSuchInstance``)."""
    if vb.is_exception:
        return vb.type
    if isinstance(vb.value, bytes):
        try:
            return vb.value.decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + vb.value.hex()
    return str(vb.value)


__all__ = ["SnmpDriver", "SnmpSettings", "plain"]
