"""The NETCONF driver: the change lifecycle of :mod:`drivers.base` over our own asyncssh session.

Layers: :mod:`.transport` (SSH channel) → :mod:`.framing` (pure) → :mod:`.session` (hello,
message-ids, timeouts) → :mod:`.rpc` (pure builders/parser) and :mod:`.xmlconfig` (pure scope,
verify, canonical text, restore) → this module. Third-party and session errors become
:mod:`drivers.errors` in exactly one place, :func:`translate` (used through ``_guard``). The
profile's ``settings`` and ``quirks`` are read in :mod:`.settings`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

import asyncssh
from lxml import etree

from drivers.base import (
    Capabilities,
    ChangeSet,
    DeviceProfile,
    Driver,
    Endpoint,
    PayloadFormat,
    Snapshot,
    Verification,
)
from drivers import checks as svc_checks
from drivers import hostkeys
from drivers.netconf import exact, oper, restore, rpc, xmlconfig
from drivers.netconf.framing import FramingError
from drivers.netconf.session import (
    NetconfSession,
    ProtocolError,
    ReplyRefused,
    RpcTimeout,
    SessionClosed,
    SessionOptions,
)
from drivers.netconf.settings import NetconfSettings, settings_for
from drivers.netconf.xmlsafe import UnsafeXmlError
from drivers.netconf.transport import HostKeyRefused, SshOptions
from drivers.errors import (
    AgwError,
    AuthenticationError,
    ConnectError,
    DeviceError,
    DeviceReplyError,
    DeviceTimeoutError,
    FieldViolation,
    HostKeyError,
    InputError,
    Phase,
    RenderError,
    SessionLostError,
    UnsupportedOperationError,
)
from drivers.incidents import incident, internal_text

log = logging.getLogger(__name__)

CANDIDATE_CAP = "urn:ietf:params:netconf:capability:candidate:1.0"
_LOCK = rpc.lock("candidate")
_UNLOCK = rpc.unlock("candidate")


@dataclass(frozen=True)
class Analysis:
    """Everything derived from one rendered ``<config>`` (cached: the engine asks several times)."""

    payload: bytes
    scope: str
    filter: bytes


@functools.lru_cache(maxsize=512)
def analyse(content: str, list_keys: xmlconfig.ListKeys) -> Analysis:
    root = xmlconfig.parse_config(content)
    scope, filter_ = xmlconfig.scope_texts(root, list_keys)
    return Analysis(payload=xmlconfig.edit_payload(root), scope=scope, filter=filter_)


@functools.lru_cache(maxsize=512)
def _scope_filter(scope: str) -> bytes:
    return xmlconfig.filter_content(scope)


def translate(exc: BaseException, *, device: str, phase: Phase) -> AgwError:
    """The one place where third-party and session errors become gateway errors."""
    connecting = phase is Phase.CONNECT
    if isinstance(exc, AgwError):
        return exc
    if isinstance(exc, (RpcTimeout, TimeoutError)):
        return DeviceTimeoutError(f"no answer from the device: {exc}", device=device, phase=phase)
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthenticationError(f"the device refused the credentials: {exc.reason}", device=device, phase=phase)
    if isinstance(exc, HostKeyRefused):
        return HostKeyError.refused(device=device, host=exc.host, port=exc.port, changed=exc.changed,
                                    fingerprint=exc.offered, known_hosts=exc.known_hosts, phase=phase)
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):  # revoked key, bad certificate...
        return HostKeyError(f"host key not verifiable: {exc.reason}", device=device, phase=phase)
    if isinstance(exc, asyncssh.ChannelOpenError):
        return ConnectError(f"netconf subsystem refused: {exc.reason}", device=device, phase=phase)
    if isinstance(exc, ReplyRefused) and exc.limit_bytes is not None:
        return DeviceReplyError(
            f"the device sent a NETCONF message larger than {exc.limit_bytes} bytes, the limit set by "
            f"max_reply_bytes in the settings of its device profile; the session was aborted",
            device=device, phase=phase, retryable=False,
        )
    if isinstance(exc, (ReplyRefused, UnsafeXmlError)):
        return DeviceReplyError(str(exc), device=device, phase=phase, retryable=False)
    if isinstance(exc, (ProtocolError, FramingError, etree.XMLSyntaxError)):
        return SessionLostError(f"NETCONF protocol error: {exc}", device=device, phase=phase, retryable=not connecting)
    if isinstance(exc, (SessionClosed, asyncssh.DisconnectError, asyncssh.ConnectionLost)):
        cls = ConnectError if connecting else SessionLostError
        text = exc.reason if isinstance(exc, asyncssh.Error) else str(exc)
        return cls(f"session lost: {text}", device=device, phase=phase)
    if isinstance(exc, OSError):
        cls = ConnectError if connecting else SessionLostError
        return cls(f"{type(exc).__name__}: {exc.strerror or exc}", device=device, phase=phase)
    if isinstance(exc, xmlconfig.ConfigXmlError):
        return RenderError(f"configuration XML: {exc}", device=device, phase=phase)
    if isinstance(exc, asyncssh.Error):
        return ConnectError(f"SSH error: {exc.reason}", device=device, phase=phase)
    # a bug, not the device: its text stays in the log (drivers.incidents), the caller gets the incident id
    log.error("unexpected error on %s during %s (incident %s)", device, phase.value, incident(exc, logger=log))
    return DeviceError(f"unexpected error in the NETCONF driver: {internal_text(exc, logger=log)}", device=device,
                       phase=phase, retryable=False)


class _Guard:
    """``with driver._guard(phase):`` — any non-gateway exception leaves as ``translate(exc)``
    (raised ``from exc``); gateway errors and BaseExceptions (CancelledError) pass untouched.
    A plain class: cheaper than a generator-based context manager on every RPC."""

    __slots__ = ("driver", "phase")

    def __init__(self, driver: Driver, phase: Phase) -> None:
        self.driver = driver
        self.phase = phase

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None or isinstance(exc, AgwError) or not isinstance(exc, Exception):
            return False
        raise translate(exc, device=self.driver.device, phase=self.phase) from exc


class NetconfDriver(Driver):
    name = "netconf"
    payload_format = PayloadFormat.XML
    supported = Capabilities(
        lock=True,
        candidate=True,
        confirmed_commit=True,
        persist_id=True,
        validate=True,
        diff=False,
        native_rollback=False,
        atomic_push=True,
    )
    check_kinds = frozenset({svc_checks.NETCONF})

    def __init__(self, *, endpoint: Endpoint, profile: DeviceProfile) -> None:
        super().__init__(endpoint=endpoint, profile=profile)
        self.settings = self.settings_from(profile)
        self._armed_persist_id: str | None = None  # persist-id of the confirmed commit this session armed
        cred = endpoint.credential
        self._ssh = SshOptions(
            host=endpoint.host,
            port=endpoint.port,
            username=cred.username,
            password=cred.password,
            private_key_path=cred.private_key_path,
            host_key_check=endpoint.host_key_check,
            known_hosts=endpoint.known_hosts,
            connect_timeout_s=profile.timeouts.connect_s,
            keepalive_interval_s=self.settings.keepalive_interval_s,
            ciphers=self.settings.ssh_ciphers,
        )
        self._session_options = SessionOptions(
            hello_timeout_s=profile.timeouts.connect_s, hello_settle_ms=self.settings.hello_settle_ms,
            max_reply_bytes=self.settings.max_reply_bytes,
        )
        self._conn_options: asyncssh.SSHClientConnectionOptions | None = None
        self._session: NetconfSession | None = None
        self._locked = False
        self._operation_s = profile.timeouts.operation_s
        self._commit_s = profile.timeouts.commit_s

    @classmethod
    def settings_from(cls, profile: DeviceProfile) -> NetconfSettings:
        return settings_for(profile)

    @classmethod
    def check_change(cls, change: ChangeSet, profile: DeviceProfile) -> None:
        """The rendered ``<config>`` must be one this driver can scope, push and verify."""
        try:
            analyse(change.content, settings_for(profile).list_keys)
        except xmlconfig.ConfigXmlError as exc:
            raise InputError([FieldViolation("content", f"configuration XML: {exc}")]) from None
        default = svc_checks.default_wait(profile)
        for i, text in enumerate(change.checks):
            try:
                check = svc_checks.parse(text, index=i, default=default)
            except svc_checks.CheckError:
                continue  # the planner names it (drivers.checks.plan_checks)
            if check is not None and isinstance(check.query, svc_checks.NetconfQuery):
                try:
                    oper.filter_bytes(check.query.get)
                except oper.FilterError as exc:
                    raise InputError([FieldViolation(f"service {change.service!r} checks[{i}] ({check.name})",
                                                     f"get: {exc}")]) from None

    # -- errors: the one translation point ----------------------------------------------------
    def _guard(self, phase: Phase) -> _Guard:
        return _Guard(self, phase)

    # -- session ------------------------------------------------------------------------------
    async def open(self) -> None:
        if self.is_open:
            return
        with self._guard(Phase.CONNECT):
            ep = self.endpoint  # no known_hosts file named, or an unreadable one: refused before connecting
            hostkeys.known_hosts_for(ep.device, ep.known_hosts, check=ep.host_key_check)
            if self._conn_options is None:
                self._conn_options = self._ssh.connection_options()
            session = await NetconfSession.connect(
                self._ssh, options=self._session_options, conn_options=self._conn_options
            )
            if self.capabilities.candidate and not session.has_capability(CANDIDATE_CAP):
                await session.close()
                raise UnsupportedOperationError(
                    "the profile declares a candidate datastore but the device does not advertise :candidate",
                    device=self.device,
                    phase=Phase.CONNECT,
                )
            self._session = session
            self._locked = False
            log.info("netconf session %s open to %s (chunked=%s)", session.session_id, self.device, session.chunked)

    async def close(self) -> None:
        session, self._session = self._session, None
        self._locked = False
        if session is not None:
            await session.close()

    @property
    def is_open(self) -> bool:
        return self._session is not None and self._session.is_open

    @property
    def server_capabilities(self) -> frozenset[str]:
        return self._session.server_capabilities if self._session else frozenset()

    async def _rpc(
        self, body: bytes, *, operation: str, phase: Phase, timeout_s: float | None = None, want_data: bool = False
    ) -> rpc.Reply:
        """Send one RPC and raise on rpc-error. Callers run inside ``_guard``."""
        if self._session is None:
            raise SessionLostError("no open session", device=self.device, phase=phase)
        timeout = self._operation_s if timeout_s is None else timeout_s
        reply = rpc.parse_reply(await self._session.rpc(body, timeout_s=timeout), want_data=want_data)
        if not reply.ok or reply.warnings:
            rpc.raise_for_reply(reply, operation=operation, device=self.device, phase=phase)
        return reply

    def _analysis(self, change: ChangeSet) -> Analysis:
        return analyse(change.content, self.settings.list_keys)

    async def _read(self, filter_: bytes, *, source: str = "running", phase: Phase) -> etree._Element | None:
        reply = await self._rpc(rpc.get_config(source=source, subtree=filter_), operation="get-config", phase=phase, want_data=True)
        return reply.data

    # -- change lifecycle -----------------------------------------------------------------------
    async def lock(self) -> None:
        with self._guard(Phase.LOCK):
            await self._rpc(_LOCK, operation="lock", phase=Phase.LOCK)
            self._locked = True

    async def unlock(self) -> None:
        with self._guard(Phase.UNLOCK):
            await self._rpc(_UNLOCK, operation="unlock", phase=Phase.UNLOCK)
            self._locked = False

    def scope_of(self, change: ChangeSet) -> str:
        """The subtree filter selecting each list entry (by its keys) and each leaf the rendered
        ``<config>`` touches (:mod:`.xmlconfig`)."""
        with self._guard(Phase.SNAPSHOT):
            return self._analysis(change).scope

    async def read(self, scope: str) -> Snapshot:
        with self._guard(Phase.SNAPSHOT):
            data = await self._read(_scope_filter(scope), phase=Phase.SNAPSHOT)
            return Snapshot(content=xmlconfig.canonical(data, self.settings.list_keys), scope=scope)

    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        """Stage in the candidate, read the candidate's scope, diff, discard. Running is untouched."""
        with self._guard(Phase.DIFF):
            a = self._analysis(change)
            took_lock = not self._locked
            if took_lock:
                await self.lock()
            try:
                await self._rpc(rpc.edit_config(a.payload), operation="edit-config", phase=Phase.DIFF)
                data = await self._read(a.filter, source="candidate", phase=Phase.DIFF)
            finally:
                if self.is_open:
                    await self._rpc(rpc.discard_changes(), operation="discard-changes", phase=Phase.DIFF)
                    if took_lock:
                        await self.unlock()
            after = xmlconfig.canonical(data, self.settings.list_keys)
            return restore.diff(snapshot.content, after, before_name="running", after_name="candidate")

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        return restore.diff(before.content, after.content)

    async def load(self, change: ChangeSet) -> None:
        with self._guard(Phase.PUSH):
            a = self._analysis(change)
            await self._rpc(rpc.edit_config(a.payload), operation="edit-config", phase=Phase.PUSH)

    async def validate(self, change: ChangeSet) -> None:
        """Validate the change. With quirk ``validate_drops_candidate`` the rendered config is
        validated inline, never ``<validate><source><candidate/>`` (which loses the change)."""
        with self._guard(Phase.VALIDATE):
            if self.settings.validate_drops_candidate:
                body = rpc.validate(config=self._analysis(change).payload)
            else:
                body = rpc.validate(source="candidate")
            await self._rpc(body, operation="validate", phase=Phase.VALIDATE)

    async def discard(self) -> None:
        with self._guard(Phase.ROLLBACK):
            await self._rpc(rpc.discard_changes(), operation="discard-changes", phase=Phase.ROLLBACK)

    async def commit(self, *, confirm_timeout_s: int | None = None, persist_id: str | None = None) -> None:
        """Commit; with ``confirm_timeout_s`` a confirmed commit (persisted under ``persist_id``,
        which alone implies the profile's ``confirm_timeout_s``)."""
        with self._guard(Phase.COMMIT):
            if persist_id is not None and confirm_timeout_s is None:
                confirm_timeout_s = self.profile.confirm_timeout_s
            # a second confirmed commit under the same persist-id (two tasks of one activation on
            # this device) is a follow-up: it must name the pending one, or the device refuses it
            follow_up = persist_id is not None and persist_id == self._armed_persist_id
            body = rpc.commit(confirm_timeout_s=confirm_timeout_s, persist=persist_id,
                              persist_id=persist_id if follow_up else None)
            await self._rpc(body, operation="commit", phase=Phase.COMMIT, timeout_s=self._commit_s)
            self._armed_persist_id = persist_id if confirm_timeout_s is not None else None

    async def confirm(self, *, persist_id: str | None = None) -> None:
        with self._guard(Phase.CONFIRM):
            await self._rpc(
                rpc.commit(persist_id=persist_id),
                operation="confirming commit",
                phase=Phase.CONFIRM,
                timeout_s=self._commit_s,
            )
            self._armed_persist_id = None

    async def cancel_commit(self, *, persist_id: str | None = None) -> bool:
        with self._guard(Phase.ROLLBACK):
            if self._session is None:
                raise SessionLostError("no open session", device=self.device, phase=Phase.ROLLBACK)
            raw = await self._session.rpc(
                rpc.cancel_commit(persist_id=persist_id), timeout_s=self._commit_s
            )
            self._armed_persist_id = None
            reply = rpc.parse_reply(raw)
            if not reply.ok and all(
                any(rpc.error_matches(e, rule) for rule in self.settings.no_pending_commit_errors)
                for e in reply.errors
            ):
                log.info("no confirmed commit pending on %s: %s", self.device, reply.errors[0])
                return False
            rpc.raise_for_reply(reply, operation="cancel-commit", device=self.device, phase=Phase.ROLLBACK)
            return True

    async def verify(self, change: ChangeSet, before: Snapshot) -> Verification:
        """Read the scope back; it must equal ``before`` with the edit applied (:mod:`.exact`)."""
        with self._guard(Phase.VERIFY):
            a = self._analysis(change)
            data = await self._read(a.filter, phase=Phase.VERIFY)
            lk = self.settings.list_keys
            nodes, leaves, content = xmlconfig.readback(data, lk)
            expected = exact.expected_state(before.content, a.payload, lk)
            checked, mismatches = exact.compare(expected, exact.state_of(nodes, leaves),
                                                managed=self.profile.device_managed)
            unexpected = sum(1 for m in mismatches if m.unexpected)
            detail = (f"{checked} leaves compared with the snapshot plus the change: "
                      + (f"{len(mismatches)} differ ({unexpected} not named by the change)" if mismatches else "all equal"))
            details = [detail]
            checked += await svc_checks.run_all(svc_checks.parse_all(change, self.profile, svc_checks.NETCONF),
                                                self._run_check, mismatches=mismatches, details=details)
            return Verification(ok=not mismatches, checked=checked, mismatches=tuple(mismatches),
                                detail="; ".join(details), readback=Snapshot(content=content, scope=a.scope))

    async def _run_check(self, check: svc_checks.Check) -> svc_checks.Outcome:
        """``<get>`` the check's filter until its condition holds or its wait ends."""
        query = check.query
        assert isinstance(query, svc_checks.NetconfQuery)  # parse_all gave NETCONF checks only
        body = rpc.get(subtree=oper.filter_bytes(query.get))

        async def probe() -> list[dict[str, str]]:
            reply = await self._rpc(body, operation=f"get ({check.name})", phase=Phase.VERIFY, want_data=True)
            return oper.xml_records(reply.data)

        return await svc_checks.run(check, probe)

    async def restore(self, snapshot: Snapshot, undo: str | None = None) -> None:
        """Discard anything staged, edit the snapshot's scope back into the candidate, commit.
        The edit is computed from the snapshot and the device's current state: ``undo`` is not
        needed (and not used)."""
        current = await self.read(snapshot.scope)
        if current.content == snapshot.content:
            return  # nothing to put back
        with self._guard(Phase.ROLLBACK):
            payload = restore.restore_config(
                snapshot.content, snapshot.scope, self.settings.list_keys, current=current.content
            )
            await self._rpc(rpc.discard_changes(), operation="discard-changes", phase=Phase.ROLLBACK)
            await self._rpc(rpc.edit_config(payload), operation="edit-config (restore)", phase=Phase.ROLLBACK)
            await self._rpc(
                rpc.commit(), operation="commit (restore)", phase=Phase.ROLLBACK, timeout_s=self._commit_s
            )


__all__ = ["NetconfDriver", "NetconfSettings", "analyse", "translate"]
