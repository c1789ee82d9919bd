"""SNMP transport and session: a pysnmp target plus auth data, and GET/SET with hard timeouts.

pysnmp's command generators are driven directly with numeric OIDs and pyasn1 values, so no MIB
is ever resolved (the hlapi ``get_cmd``/``set_cmd`` wrappers resolve every varbind through the
MIB view: slower, and it loads MIB modules).

Engines are shared: one :class:`SnmpEngine` per event loop for all v2c targets, and one per
distinct v3 credential (pysnmp's USM table is keyed by user name, so two devices with the same
user name and different keys must not share an engine). An engine costs ~45 ms to build and is
warm after its first request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.hlapi.v3arch.asyncio import CommunityData, UdpTransportTarget, UsmUserData
from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
from pysnmp.entity import config as snmp_config

from drivers.checks import TooMuch
from drivers.snmp import codec
from drivers.snmp.errors import translate
from drivers.snmp.varbinds import Varbind
from drivers.errors import ConfigurationError, Phase
from drivers.secrets import Credential

log = logging.getLogger(__name__)

AUTH_PROTOCOLS: dict[str, Any] = {
    "MD5": snmp_config.USM_AUTH_HMAC96_MD5,
    "SHA": snmp_config.USM_AUTH_HMAC96_SHA,
    "SHA1": snmp_config.USM_AUTH_HMAC96_SHA,
    "SHA224": snmp_config.USM_AUTH_HMAC128_SHA224,
    "SHA256": snmp_config.USM_AUTH_HMAC192_SHA256,
    "SHA384": snmp_config.USM_AUTH_HMAC256_SHA384,
    "SHA512": snmp_config.USM_AUTH_HMAC384_SHA512,
}
PRIV_PROTOCOLS: dict[str, Any] = {
    "DES": snmp_config.USM_PRIV_CBC56_DES,
    "3DES": snmp_config.USM_PRIV_CBC168_3DES,
    "AES": snmp_config.USM_PRIV_CFB128_AES,
    "AES128": snmp_config.USM_PRIV_CFB128_AES,
    "AES192": snmp_config.USM_PRIV_CFB192_AES,  # key extension as most vendors do it ("Reeder")
    "AES256": snmp_config.USM_PRIV_CFB256_AES,
    "AES192C": snmp_config.USM_PRIV_CFB192_AES,
    "AES256C": snmp_config.USM_PRIV_CFB256_AES,
    "AES192-BLUMENTHAL": snmp_config.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES256-BLUMENTHAL": snmp_config.USM_PRIV_CFB256_AES_BLUMENTHAL,
}
SECURITY_MODES = ("v2c", "v3")
PROBE_OID = "1.3.6.1.2.1.1.3.0"  # sysUpTime.0: every agent has it

_LCD = CommandGeneratorLcdConfigurator()
_ENGINES: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SnmpEngine]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True, kw_only=True)
class SnmpOptions:
    """Where and how to talk to one agent. Timeouts are absolute per operation (all retries)."""

    host: str
    port: int = 161
    security: str = "v3"
    """Wanted security: ``v3`` (used when the credential has a user name and keys) or ``v2c``."""
    retries: int = 1
    connect_timeout_s: float = 10.0
    operation_timeout_s: float = 10.0


def engine_for(key: str) -> SnmpEngine:
    """The shared engine of this event loop for one auth key (``v2c`` or ``v3:<fingerprint>``)."""
    loop = asyncio.get_running_loop()
    per_loop = _ENGINES.setdefault(loop, {})
    engine = per_loop.get(key)
    if engine is None:
        engine = SnmpEngine()
        per_loop[key] = engine
        log.debug("new SNMP engine %s for this event loop", key.split(":")[0])
    return engine


def close_engines() -> None:
    """Close every engine of the running loop (tests and benchmarks call this at the end)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for engine in _ENGINES.pop(loop, {}).values():
        try:
            engine.close_dispatcher()
        except Exception:  # noqa: BLE001 - closing must never raise
            log.debug("closing an SNMP engine failed", exc_info=True)


def build_auth(credential: Credential, security: str) -> tuple[Any, str, str]:
    """(pysnmp auth data, engine key, mode) from a resolved credential.

    v3 authPriv (or authNoPriv without a privacy key) when the credential has a user name and
    an auth key, unless ``security`` is ``v2c``; else v2c with the community.
    """
    if security not in SECURITY_MODES:
        raise ConfigurationError(f"SNMP settings.security must be one of {', '.join(SECURITY_MODES)}, got {security!r}")
    if security == "v3" and credential.username and credential.auth_key:
        auth_name = (credential.auth_protocol or "SHA").upper()
        priv_name = (credential.priv_protocol or "AES").upper() if credential.priv_key else ""
        if auth_name not in AUTH_PROTOCOLS:
            raise ConfigurationError(
                f"credential {credential.ref}: unknown SNMP auth_protocol {auth_name!r}; one of {', '.join(AUTH_PROTOCOLS)}")
        if priv_name and priv_name not in PRIV_PROTOCOLS:
            raise ConfigurationError(
                f"credential {credential.ref}: unknown SNMP priv_protocol {priv_name!r}; one of {', '.join(PRIV_PROTOCOLS)}")
        auth_key = credential.auth_key.reveal()
        priv_key = credential.priv_key.reveal() if credential.priv_key else None
        fingerprint = hashlib.sha256(
            "\0".join((credential.username, auth_name, auth_key, priv_name, priv_key or "")).encode()).hexdigest()[:16]
        auth = UsmUserData(
            credential.username,
            auth_key,
            priv_key,
            authProtocol=AUTH_PROTOCOLS[auth_name],
            privProtocol=PRIV_PROTOCOLS[priv_name] if priv_name else snmp_config.USM_PRIV_NONE,
        )
        return auth, f"v3:{fingerprint}", "v3"
    if credential.community:
        return CommunityData(credential.community.reveal(), mpModel=1), "v2c", "v2c"
    raise ConfigurationError(
        f"credential {credential.ref}: SNMP needs a community (v2c) or a username and auth_key (v3)")


class SnmpSession:
    """GET and SET against one agent. One request at a time is the driver's business."""

    def __init__(self, *, device: str, options: SnmpOptions, credential: Credential) -> None:
        self.device = device
        self.options = options
        self._auth, self._engine_key, self.mode = build_auth(credential, options.security)
        self._engine: SnmpEngine | None = None
        self._addr_op = ""
        self._addr_connect = ""

    @property
    def is_open(self) -> bool:
        return self._engine is not None

    async def open(self) -> None:
        """Configure the target and probe the agent (v3: engine discovery) within connect_timeout_s."""
        opts = self.options
        try:
            self._engine = engine_for(self._engine_key)
            self._addr_connect = await self._target(opts.connect_timeout_s)
            self._addr_op = await self._target(opts.operation_timeout_s)
        except Exception as exc:  # noqa: BLE001 - translated
            self._engine = None
            raise translate(device=self.device, phase=Phase.CONNECT, operation="connect",
                            timeout_s=opts.connect_timeout_s, exc=exc) from exc
        try:
            await self._request(cmdgen.GetCommandGenerator(), codec.get_request([PROBE_OID]), [PROBE_OID],
                                operation="probe GET", phase=Phase.CONNECT, addr=self._addr_connect,
                                timeout_s=opts.connect_timeout_s)
        except BaseException:
            self._engine = None
            raise
        log.debug("SNMP %s session to %s ready", self.mode, self.device)

    def close(self) -> None:
        self._engine = None

    async def _target(self, timeout_s: float) -> str:
        opts = self.options
        per_try_s = max(0.05, timeout_s / (opts.retries + 1))
        target = await UdpTransportTarget.create((opts.host, opts.port), timeout=per_try_s, retries=opts.retries)
        assert self._engine is not None
        addr_name, _params = _LCD.configure(self._engine, self._auth, target, b"")
        return str(addr_name)

    async def get(self, oids: Sequence[str], *, phase: Phase) -> list[Varbind]:
        reply = await self._request(cmdgen.GetCommandGenerator(), codec.get_request(oids), oids,
                                    operation="GET", phase=phase)
        try:
            return codec.decode_reply(oids, reply)
        except ValueError as exc:
            raise translate(device=self.device, phase=phase, operation="GET", timeout_s=0, exc=exc) from exc

    async def walk(self, columns: Sequence[str], *, phase: Phase, max_rows: int) -> list[list[Varbind]]:
        """GETNEXT the subtrees under ``columns`` together (a table's columns, one PDU a row):
        per column, its varbinds in order. More than ``max_rows`` in a column raises
        :class:`~drivers.checks.TooMuch`; an agent that does not move forward ends its column."""
        results: list[list[Varbind]] = [[] for _ in columns]
        current = list(columns)
        active = list(range(len(columns)))
        while active:
            oids = [current[i] for i in active]
            reply = await self._request(cmdgen.NextCommandGeneratorSingleRun(), codec.get_request(oids), oids,
                                        operation="GETNEXT", phase=phase)
            try:
                got = [codec.from_wire(name, value) for name, value in reply]
            except ValueError as exc:
                raise translate(device=self.device, phase=phase, operation="GETNEXT", timeout_s=0, exc=exc) from exc
            if len(got) != len(oids):
                raise translate(device=self.device, phase=phase, operation="GETNEXT", timeout_s=0,
                                exc=codec.ReplyError(f"the agent answered {len(got)} varbinds for {len(oids)}"))
            still = []
            for i, vb in zip(active, got):
                if vb.is_exception or not vb.oid.startswith(columns[i] + ".") or not _after(vb.oid, current[i]):
                    continue  # past the column (or an agent going backwards): the column is done
                results[i].append(vb)
                if len(results[i]) > max_rows:
                    raise TooMuch(f"more than {max_rows} rows under {columns[i]}")
                current[i] = vb.oid
                still.append(i)
            active = still
        return results

    async def set(self, varbinds: Sequence[Varbind], *, phase: Phase) -> None:
        await self._request(cmdgen.SetCommandGenerator(), codec.to_wire(varbinds), [vb.oid for vb in varbinds],
                            operation="SET", phase=phase)

    async def _request(
        self,
        generator: Any,
        pairs: list[tuple[Any, Any]],
        oids: Sequence[str],
        *,
        operation: str,
        phase: Phase,
        addr: str | None = None,
        timeout_s: float | None = None,
    ) -> list[tuple[Any, Any]]:
        engine = self._engine
        if engine is None:
            raise translate(device=self.device, phase=phase, operation=operation, timeout_s=0,
                            exc=ConnectionError("the SNMP session is not open"))
        limit_s = self.options.operation_timeout_s if timeout_s is None else timeout_s
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, Any, Any, Any]] = loop.create_future()

        def on_reply(_engine: Any, _handle: Any, indication: Any, status: Any, index: Any, varbinds: Any,
                     _ctx: Any) -> None:
            if not future.done():
                future.set_result((indication, status, index, varbinds))

        try:
            generator.send_varbinds(engine, addr or self._addr_op, None, b"", pairs, on_reply, None)
            indication, status, index, varbinds = await asyncio.wait_for(future, limit_s)
        except Exception as exc:  # noqa: BLE001 - translated, the one place
            raise translate(device=self.device, phase=phase, operation=operation, timeout_s=limit_s,
                            exc=exc) from exc
        if indication is not None or (status and int(status)):
            raise translate(device=self.device, phase=phase, operation=operation, timeout_s=limit_s,
                            indication=indication, status=int(status or 0), index=int(index or 0), oids=oids)
        return list(varbinds)


def _after(oid: str, previous: str) -> bool:
    return tuple(int(p) for p in oid.split(".")) > tuple(int(p) for p in previous.split("."))


__all__ = ["AUTH_PROTOCOLS", "PRIV_PROTOCOLS", "SnmpOptions", "SnmpSession", "build_auth", "close_engines",
           "engine_for"]
