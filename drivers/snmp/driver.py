"""The SNMP driver: a change is a list of varbinds, applied by one SET PDU.

Lifecycle on SNMP (no lock, no candidate, no confirmed commit; one SET is all-or-nothing,
RFC 3416 §4.2.5, hence ``atomic_push``)::

    open     configure the target, probe sysUpTime.0 (v3: engine discovery) within connect_s
    read     GET of the change's OIDs                    → Snapshot(content=lines, scope=OIDs)
    preview  diff of the snapshot against the snapshot with the change applied (no SET)
    load     one SET of every rendered varbind
    verify   GET of the same OIDs, each value compared   → Verification (+ readback)
    restore  one SET of the snapshot's values            (noSuchObject/noSuchInstance: refused)
"""

from __future__ import annotations

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
    Snapshot,
    Verification,
)
from drivers.snmp.session import SECURITY_MODES, SnmpOptions, SnmpSession
from drivers.snmp.varbinds import (
    SnapshotFormatError,
    Varbind,
    diff_snapshots,
    diff_varbinds,
    format_scope,
    format_snapshot,
    intended,
    parse_scope,
    parse_snapshot,
    parse_varbinds,
)
from gateway.errors import (
    ConfigurationError,
    DeviceErrorInfo,
    DeviceRejectedError,
    InputError,
    Phase,
    StateError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SnmpSettings:
    """The driver's part of ``DeviceProfile.settings``."""

    security: str = "v3"
    retries: int = 1

    @classmethod
    def from_profile(cls, settings: Mapping[str, Any], *, platform: str) -> "SnmpSettings":
        security = str(settings.get("security", "v3"))
        retries = settings.get("retries", 1)
        if security not in SECURITY_MODES:
            raise ConfigurationError(
                f"device profile {platform!r}: settings.security must be one of {', '.join(SECURITY_MODES)}, "
                f"got {security!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise ConfigurationError(f"device profile {platform!r}: settings.retries must be an integer 0..10, "
                                     f"got {retries!r}")
        return cls(security=security, retries=retries)


class SnmpDriver(Driver):
    """SNMP v2c / v3 (USM authPriv) over UDP with pysnmp 7, numeric OIDs only."""

    name: ClassVar[str] = "snmp"
    supported: ClassVar[Capabilities] = Capabilities(atomic_push=True)

    def __init__(self, *, endpoint: Endpoint, profile: DeviceProfile) -> None:
        super().__init__(endpoint=endpoint, profile=profile)
        self.settings = SnmpSettings.from_profile(profile.settings, platform=profile.platform)
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
    async def read(self, change: ChangeSet) -> Snapshot:
        oids = [vb.oid for vb in self._varbinds(change, Phase.SNAPSHOT)]
        return await self._read(oids, Phase.SNAPSHOT)

    async def reread(self, snapshot: Snapshot) -> Snapshot:
        try:
            oids = parse_scope(snapshot.scope)
        except SnapshotFormatError as exc:
            raise StateError(str(exc), device=self.device, phase=Phase.ROLLBACK_VERIFY) from exc
        return await self._read(oids, Phase.ROLLBACK_VERIFY)

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

    async def verify(self, change: ChangeSet) -> Verification:
        varbinds = self._varbinds(change, Phase.VERIFY)
        oids = [vb.oid for vb in varbinds]
        got = await self._require(Phase.VERIFY).get(oids, phase=Phase.VERIFY)
        actual = {vb.oid: vb for vb in got}
        mismatches = tuple(
            Mismatch(path=vb.oid, expected=vb.text, actual=actual[vb.oid].text)
            for vb in varbinds
            if actual[vb.oid].text != vb.text
        )
        readback = Snapshot(content=format_snapshot(got), scope=format_scope(oids))
        detail = "; ".join(str(m) for m in mismatches) if mismatches else f"{len(varbinds)} value(s) read back equal"
        return Verification(ok=not mismatches, checked=len(varbinds), mismatches=mismatches, detail=detail,
                            readback=readback)

    async def restore(self, snapshot: Snapshot) -> None:
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


__all__ = ["SnmpDriver", "SnmpSettings"]
