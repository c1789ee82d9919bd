"""``ExampleSystemDriver``: a device's sysContact and sysLocation, through net-snmp's command-line tools.

A plausible "wrap a vendor CLI tool" plugin: every device operation runs ``snmpget`` or
``snmpset`` (net-snmp, Debian package ``snmp``) as an asyncio subprocess, with numeric OIDs and no
MIB loading (``-m ""``), bounded by the profile's timeouts (the process is killed when a timeout
passes). The community never appears on a command line: it is written to a private ``snmp.conf``
(mode 0600, in a temporary directory the session owns) that the tools read through
``SNMPCONFPATH``.

Change format (``ChangeSet.content``), YAML::

    contact: "NOC, +1 555 0100"
    location: "rack 9"

``delete`` empties the fields it names. One change is one SET PDU, which the agent applies
all-or-nothing (``atomic_push``); rollback is a SET of the snapshot's values.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

import yaml

from drivers.base import (
    Action,
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
from drivers.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    DeviceError,
    DeviceErrorInfo,
    DeviceRejectedError,
    DeviceTimeoutError,
    DriverUnavailableError,
    FieldViolation,
    InputError,
    Phase,
    SessionLostError,
)
from drivers.profiles import field_names, parse_profile, refuse_unknown, where

log = logging.getLogger(__name__)

FIELDS: Mapping[str, str] = {"contact": "1.3.6.1.2.1.1.4.0", "location": "1.3.6.1.2.1.1.6.0"}
"""The fields this driver manages and their OIDs (SNMPv2-MIB sysContact.0, sysLocation.0)."""
PROBE_OID = "1.3.6.1.2.1.1.3.0"  # sysUpTime.0


def profile_path() -> Path:
    """The device profile shipped with this package."""
    return Path(str(resources.files("agw_driver_example") / "profiles" / "example-snmp.yaml"))


def load_profile() -> DeviceProfile:
    """The shipped profile, parsed by the driver SDK's profile parser (:mod:`drivers.profiles`, the
    gateway's own), its settings checked by the driver."""
    path = profile_path()
    profile = parse_profile(yaml.safe_load(path.read_text()), source=str(path), expected_platform="example-snmp")
    ExampleSystemDriver.settings_from(profile)
    return profile


@dataclass(frozen=True, kw_only=True)
class ToolSettings:
    """The profile's ``settings``: every key a field here, any other refused (no quirks)."""

    retries: int = 0
    """snmpget/snmpset ``-r``; each try waits operation_s / (retries + 1)."""
    snmpget: str = "snmpget"
    snmpset: str = "snmpset"

    @classmethod
    def from_profile(cls, profile: DeviceProfile) -> ToolSettings:
        refuse_unknown(profile, driver=ExampleSystemDriver.name, settings=field_names(cls))
        s = profile.settings
        problems = []
        retries = s.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            problems.append(f"settings.retries: must be an integer 0..10, not {retries!r}")
        tools = {key: s.get(key, key) for key in ("snmpget", "snmpset")}
        for key, value in tools.items():
            if not isinstance(value, str) or not value:
                problems.append(f"settings.{key}: must be the tool's path or name, not {value!r}")
        if problems:
            raise ConfigurationError(f"{where(profile)}: " + "; ".join(problems))
        return cls(retries=retries, **tools)


def parse_change(change: ChangeSet) -> dict[str, str]:
    """The fields a change sets (``delete``: the fields it names, emptied). Raises InputError."""
    try:
        data = yaml.safe_load(change.content) or {}
    except yaml.YAMLError as exc:
        raise InputError([FieldViolation("content", f"not YAML: {exc}")]) from exc
    if not isinstance(data, dict) or not data:
        raise InputError([FieldViolation("content", "expected a mapping with contact and/or location")])
    violations = [FieldViolation(f"content.{k}", "unknown field (contact, location)") for k in data if k not in FIELDS]
    violations += [FieldViolation(f"content.{k}", "must be a string") for k, v in data.items()
                   if k in FIELDS and not isinstance(v, str)]
    if violations:
        raise InputError(violations)
    if change.action is Action.DELETE:
        return {k: "" for k in data}
    return {k: str(v) for k, v in data.items()}


def render_state(values: Mapping[str, str]) -> str:
    """Canonical snapshot text: one ``field = "json string"`` line per field, in FIELDS order."""
    return "\n".join(f"{k} = {json.dumps(values[k])}" for k in FIELDS if k in values)


def parse_state(content: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in content.splitlines():
        key, _, value = line.partition(" = ")
        out[key] = json.loads(value)
    return out


def parse_get_output(text: str) -> dict[str, str]:
    """``snmpget -On -Oq -Ox`` output → {numeric OID: decoded string}. Hex output may wrap lines."""
    values: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("."):
            oid, _, rest = line.partition(" ")
            current = oid.lstrip(".")
            values[current] = [rest]
        elif current is not None:
            values[current].append(line)
    out: dict[str, str] = {}
    for oid, parts in values.items():
        raw = " ".join(parts).strip()
        if raw.startswith("No Such"):
            raise ValueError(f"{oid}: {raw}")
        hexes = raw.strip('"').split()
        out[oid] = bytes(int(h, 16) for h in hexes).decode("utf-8", errors="replace")
    return out


class ExampleSystemDriver(Driver):
    """sysContact/sysLocation over SNMP v2c, by running ``snmpget``/``snmpset``."""

    name: ClassVar[str] = "example-snmp"
    payload_format: ClassVar[PayloadFormat] = PayloadFormat.YAML
    supported: ClassVar[Capabilities] = Capabilities(atomic_push=True)

    @classmethod
    def settings_from(cls, profile: DeviceProfile) -> ToolSettings:
        return ToolSettings.from_profile(profile)

    @classmethod
    def check_change(cls, change: ChangeSet, profile: DeviceProfile) -> None:
        parse_change(change)

    def __init__(self, *, endpoint: Endpoint, profile: DeviceProfile) -> None:
        super().__init__(endpoint=endpoint, profile=profile)
        self.settings = self.settings_from(profile)
        self._confdir: str | None = None

    # -- the one place where tool output and process errors become gateway errors -----------
    async def _run(self, tool: str, args: list[str], *, timeout_s: float, phase: Phase) -> str:
        if self._confdir is None:
            raise SessionLostError("the session is not open", device=self.device, phase=phase)
        per_try_s = max(timeout_s / (self.settings.retries + 1), 0.1)
        argv = [tool, "-m", "", "-On", "-Oq", "-Ox", "-t", f"{per_try_s:.2f}", "-r", str(self.settings.retries),
                f"udp:{self.endpoint.host}:{self.endpoint.port}", *args]
        env = {**os.environ, "SNMPCONFPATH": self._confdir, "SNMP_PERSISTENT_DIR": self._confdir, "MIBS": ""}
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE, env=env)
        except FileNotFoundError as exc:
            raise DriverUnavailableError(f"{tool!r} not found: install net-snmp's tools (apt-get install snmp)",
                                         device=self.device, phase=phase) from exc
        try:
            out_b, err_b = await asyncio.wait_for(proc.communicate(), timeout=timeout_s + 0.5)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise DeviceTimeoutError(f"{Path(tool).name} did not finish within {timeout_s:g} s",
                                     device=self.device, phase=phase) from exc
        out, err = out_b.decode(errors="replace"), self._mask(err_b.decode(errors="replace"))
        if proc.returncode == 0 and "Error in packet" not in err:
            return out
        if "Timeout: No Response" in err:
            cls = ConnectError if phase is Phase.CONNECT else DeviceTimeoutError
            raise cls(f"no answer from the agent within {timeout_s:g} s", device=self.device, phase=phase)
        if "Authentication failure" in err or "Unknown user name" in err:
            raise AuthenticationError("the agent refused the credentials", device=self.device, phase=phase)
        if "Error in packet" in err:
            info = self._packet_error(err)
            raise DeviceRejectedError(f"SNMP request refused: {info}", device=self.device, phase=phase, info=info)
        raise DeviceError(f"{Path(tool).name} failed (exit {proc.returncode}): {err.strip()[:200]}",
                          device=self.device, phase=phase)

    @staticmethod
    def _packet_error(err: str) -> DeviceErrorInfo:
        reason, failed = "", ""
        for line in err.splitlines():
            if line.startswith("Reason:"):
                reason = line.removeprefix("Reason:").strip()
            elif line.startswith("Failed object:"):
                failed = line.removeprefix("Failed object:").strip().replace("iso.", "1.", 1).lstrip(".")
        tag, _, message = reason.partition(" ")
        return DeviceErrorInfo(message=message.strip("() ") or reason, tag=tag, path=failed)

    def _mask(self, text: str) -> str:
        community = self.endpoint.credential.community
        secret = community.reveal() if community is not None else ""
        return text.replace(secret, "***") if secret else text

    # -- session ---------------------------------------------------------------------------
    async def open(self) -> None:
        community = self.endpoint.credential.community
        if community is None:
            raise AuthenticationError("example-snmp needs a community in the credential", device=self.device,
                                      phase=Phase.CONNECT)
        confdir = tempfile.mkdtemp(prefix="agw-example-snmp-")
        conf = Path(confdir) / "snmp.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"defVersion 2c\ndefCommunity {community.reveal()}\n")
        self._confdir = confdir
        try:
            await self._run(self.settings.snmpget, [PROBE_OID], timeout_s=self.profile.timeouts.connect_s,
                            phase=Phase.CONNECT)
        except BaseException:
            await self.close()
            raise
        log.debug("example-snmp session to %s open", self.device)

    async def close(self) -> None:
        confdir, self._confdir = self._confdir, None
        if confdir is not None:
            shutil.rmtree(confdir, ignore_errors=True)

    @property
    def is_open(self) -> bool:
        return self._confdir is not None

    # -- reads -----------------------------------------------------------------------------
    async def _get(self, fields: list[str], phase: Phase) -> dict[str, str]:
        out = await self._run(self.settings.snmpget, [FIELDS[f] for f in fields],
                              timeout_s=self.profile.timeouts.operation_s, phase=phase)
        try:
            by_oid = parse_get_output(out)
            return {f: by_oid[FIELDS[f]] for f in fields}
        except (KeyError, ValueError) as exc:
            raise DeviceError(f"unexpected snmpget output: {exc}", device=self.device, phase=phase) from exc

    async def _set(self, values: Mapping[str, str], phase: Phase) -> None:
        args: list[str] = []
        for f, v in values.items():
            args += [FIELDS[f], "s", v]
        await self._run(self.settings.snmpset, args, timeout_s=self.profile.timeouts.operation_s, phase=phase)

    @staticmethod
    def _scope(snapshot: Snapshot) -> list[str]:
        return [f for f in snapshot.scope.split(",") if f]

    def scope_of(self, change: ChangeSet) -> str:
        """Every field this driver manages: the scope a change is verified in (see ``verify``)."""
        parse_change(change)
        return ",".join(FIELDS)

    async def read(self, scope: str) -> Snapshot:
        fields = [f for f in scope.split(",") if f]
        unknown = [f for f in fields if f not in FIELDS]
        if unknown or not fields:
            raise InputError([FieldViolation("scope", f"unknown field(s) {unknown!r} (contact, location)")])
        return Snapshot(content=render_state(await self._get(fields, Phase.SNAPSHOT)), scope=scope)

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        return "".join(difflib.unified_diff((before.content + "\n").splitlines(keepends=True),
                                            (after.content + "\n").splitlines(keepends=True), "before", "after"))

    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        """Computed from the snapshot: what the SET would leave (no device access)."""
        after = {**parse_state(snapshot.content), **parse_change(change)}
        return self.diff(snapshot, Snapshot(content=render_state(after), scope=snapshot.scope))

    # -- writes ----------------------------------------------------------------------------
    async def load(self, change: ChangeSet) -> None:
        """One SET PDU with every field: the agent applies it all or refuses it all (e.g. wrongLength)."""
        await self._set(parse_change(change), Phase.PUSH)

    async def verify(self, change: ChangeSet, before: Snapshot) -> Verification:
        """Exact: every field must hold the snapshot's value with the change applied; a field the
        change did not name that changed anyway is an unexpected difference."""
        wanted = parse_change(change)
        expected = {**parse_state(before.content), **wanted}
        fields = self._scope(before)
        got = await self._get(fields, Phase.VERIFY)
        mismatches = tuple(Mismatch(path=FIELDS[f], expected=expected.get(f), actual=got[f], unexpected=f not in wanted)
                           for f in fields if got[f] != expected.get(f))
        return Verification(ok=not mismatches, checked=len(fields), mismatches=mismatches,
                            readback=Snapshot(content=render_state(got), scope=",".join(fields)))

    async def restore(self, snapshot: Snapshot, undo: str | None = None) -> None:
        await self._set(parse_state(snapshot.content), Phase.ROLLBACK)
