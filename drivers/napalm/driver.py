"""The NAPALM bridge: any installed NAPALM driver, named in a device profile, behind our contract.

NAPALM is synchronous, so every call runs in one bounded, shared thread pool and is cut by an
asyncio timeout from the profile. A call that timed out keeps its worker thread until the library
returns; the session is then considered broken (``is_open`` is False) and is closed in the
background, so the engine opens a fresh one instead of reusing a device object that another
thread may still be using.

Lifecycle mapping (``napalm.base.base.NetworkDriver`` methods)::

    open          get_network_driver(name)(hostname, username, password, timeout, optional_args).open()
    read/reread   get_config(retrieve="running")["running"]   → Snapshot(content=running, scope="running")
    load          load_merge_candidate(config=…)   (settings.load_mode: replace → load_replace_candidate)
    preview       load, compare_config(), then always discard_config()
    commit        commit_config(revert_in=confirm_timeout_s) with confirmed_commit, else commit_config()
    confirm       confirm_commit()
    cancel_commit rollback() if has_pending_commit() else False
    discard       discard_config()
    verify        get_config again; every rendered line must be present (line containment)
    restore       load_replace_candidate(config=snapshot) + commit_config()

Capabilities are declared per NAPALM driver in :data:`NAPALM_CAPABILITIES` (read from NAPALM
5.2.0's own sources); a profile can only narrow them. ``lock`` and ``validate`` are never
declared: NAPALM locks implicitly inside its calls and has no validate call.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from napalm import get_network_driver
from napalm.base.base import NetworkDriver

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
from drivers.napalm.errors import translate
from drivers.profiles import field_names, refuse_unknown, unknown_keys
from drivers.errors import ConfigurationError, DeviceTimeoutError, Phase, StateError, UnsupportedOperationError

log = logging.getLogger(__name__)

T = TypeVar("T")

SCOPE_RUNNING = "running"
LOAD_MODES = ("merge", "replace")
MAX_WORKERS = 8
"""Threads shared by every NAPALM session of the process (NAPALM calls block)."""

_FULL = Capabilities(candidate=True, confirmed_commit=True, native_rollback=True, diff=True, atomic_push=True)

NAPALM_CAPABILITIES: Mapping[str, Capabilities] = {
    # config sessions: atomic commit, `commit timer` for revert_in, rollback(), compare_config()
    "eos": _FULL,
    # candidate database: atomic commit, `commit confirmed N` (revert_in a multiple of 60 s)
    "junos": _FULL,
    # candidate via XML agent / NETCONF; commit_config(revert_in=…) raises NotImplementedError in 5.2.0
    "iosxr": Capabilities(candidate=True, native_rollback=True, diff=True, atomic_push=True),
    "iosxr_netconf": Capabilities(candidate=True, native_rollback=True, diff=True, atomic_push=True),
    # checkpoint/rollback files; a merge is applied line by line; no revert_in in 5.2.0
    "nxos": Capabilities(candidate=True, native_rollback=True, diff=True),
    "nxos_ssh": Capabilities(candidate=True, native_rollback=True, diff=True),
    # file-based candidate (needs SCP); revert_in needs the `archive` feature, whole minutes
    "ios": Capabilities(candidate=True, confirmed_commit=True, native_rollback=True, diff=True),
    # NAPALM's recorded-data driver (napalm/base/mock.py): implements all of the above calls
    "mock": Capabilities(candidate=True, confirmed_commit=True, native_rollback=True, diff=True),
}
"""What each NAPALM driver supports, before the profile narrows it."""

UNKNOWN_NAPALM_DRIVER = Capabilities(candidate=True, diff=True)
"""A community NAPALM driver not in the table: the base API every NAPALM driver implements."""

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def executor() -> ThreadPoolExecutor:
    """The one thread pool every NAPALM call runs in (created on first use)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="agw-napalm")
        return _executor


def napalm_capabilities(napalm_driver: str) -> Capabilities:
    return NAPALM_CAPABILITIES.get(napalm_driver.lower().replace("-", ""), UNKNOWN_NAPALM_DRIVER)


@dataclass(frozen=True, kw_only=True)
class NapalmSettings:
    """The driver's part of ``DeviceProfile.settings``: every key a field here, any other refused.
    The bridge takes no quirks."""

    napalm_driver: str
    optional_args: Mapping[str, Any] = field(default_factory=dict)
    load_mode: str = "merge"

    @classmethod
    def from_profile(cls, settings: Mapping[str, Any], *, platform: str, source: str = "") -> "NapalmSettings":
        """Parse and check ``settings``; an unknown key or a bad value raises ConfigurationError
        naming the profile's file (``source``; else its platform) and the field."""
        name = settings.get("napalm_driver")
        args = settings.get("optional_args", {}) or {}
        mode = settings.get("load_mode", "merge")
        problems = unknown_keys("settings", settings, field_names(cls), driver="napalm")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"settings.napalm_driver: must name a NAPALM driver (eos, junos, ios, mock...), got {name!r}")
        if not isinstance(args, Mapping):
            problems.append(f"settings.optional_args: must be a mapping, got {type(args).__name__}")
        if mode not in LOAD_MODES:
            problems.append(f"settings.load_mode: must be one of {', '.join(LOAD_MODES)}, got {mode!r}")
        if problems:
            raise ConfigurationError(f"{source or f'device profile {platform!r}'}: " + "; ".join(problems))
        return cls(napalm_driver=str(name).strip(), optional_args=dict(args), load_mode=mode)


def config_lines(text: str) -> list[str]:
    """The meaningful lines of a text configuration: stripped, without blanks and comment lines."""
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith(("!", "#"))]


_NEGATIONS = ("no ", "delete ")


def check_lines(change: ChangeSet, running: str) -> tuple[int, tuple[Mismatch, ...]]:
    """Line containment: each rendered line is in ``running`` (for a delete: its negated line is not).

    Only lines are compared, not their parents: a line present under another section passes.
    """
    present = set(config_lines(running))
    mismatches: list[Mismatch] = []
    lines = config_lines(change.content)
    for line in lines:
        if change.action is Action.DELETE:
            target = next((line[len(p):].strip() for p in _NEGATIONS if line.startswith(p)), line)
            if target in present:
                mismatches.append(Mismatch(path=target, expected=None, actual=target))
        elif line.startswith(_NEGATIONS):
            target = next(line[len(p):].strip() for p in _NEGATIONS if line.startswith(p))
            if target in present:
                mismatches.append(Mismatch(path=target, expected=None, actual=target))
        elif line not in present:
            mismatches.append(Mismatch(path=line, expected=line, actual=None))
    return len(lines), tuple(mismatches)


class NapalmDriver(Driver):
    """Any NAPALM driver (``settings.napalm_driver``) through the gateway's change lifecycle."""

    name: ClassVar[str] = "napalm"
    payload_format: ClassVar[PayloadFormat] = PayloadFormat.LINES
    supported: ClassVar[Capabilities] = Capabilities(
        candidate=True, confirmed_commit=True, native_rollback=True, diff=True, atomic_push=True)

    def __init__(self, *, endpoint: Endpoint, profile: DeviceProfile) -> None:
        self.settings = self.settings_from(profile)
        super().__init__(endpoint=endpoint, profile=profile)
        self._device: NetworkDriver | None = None
        self._broken = False

    @classmethod
    def settings_from(cls, profile: DeviceProfile) -> NapalmSettings:
        refuse_unknown(profile, driver=cls.name, settings=field_names(NapalmSettings))
        return NapalmSettings.from_profile(profile.settings, platform=profile.platform, source=profile.source)

    @classmethod
    def capabilities_for(cls, profile: DeviceProfile) -> Capabilities:
        """The profile's claims within what this NAPALM driver supports; ``candidate`` is required."""
        settings = cls.settings_from(profile)
        caps = profile.capabilities.restricted_to(cls.supported).restricted_to(
            napalm_capabilities(settings.napalm_driver))
        if not caps.candidate:
            raise ConfigurationError(
                f"device profile {profile.platform!r}: NAPALM applies a change only on commit_config, so the "
                f"profile must declare capabilities.candidate: true")
        return caps

    @property
    def napalm_driver(self) -> str:
        return self.settings.napalm_driver

    # -- session -------------------------------------------------------------------------
    async def open(self) -> None:
        cred = self.endpoint.credential
        args: dict[str, Any] = dict(self.settings.optional_args)
        if self.endpoint.port:
            args.setdefault("port", self.endpoint.port)
        args.update({k: v.reveal() for k, v in cred.extra.items()})  # e.g. IOS enable `secret`
        password = cred.password.reveal() if cred.password is not None else ""
        timeout_s = self.profile.timeouts.connect_s

        def connect() -> NetworkDriver:
            cls = get_network_driver(self.napalm_driver)
            device = cls(self.endpoint.host, cred.username, password, timeout=max(1, math.ceil(timeout_s)),
                         optional_args=args)
            device.open()
            return device

        self._broken = False
        self._device = await self._run(Phase.CONNECT, timeout_s, connect)
        log.debug("opened NAPALM %s session to %s (%s)", self.napalm_driver, self.device, self.endpoint.host)

    async def close(self) -> None:
        device, self._device = self._device, None
        if device is None:
            return
        try:
            await self._run(Phase.UNLOCK, self.profile.timeouts.operation_s, device.close)
        except Exception as exc:  # close never raises
            log.debug("closing NAPALM session to %s: %s", self.device, exc)

    @property
    def is_open(self) -> bool:
        return self._device is not None and not self._broken

    # -- change lifecycle ----------------------------------------------------------------
    def scope_of(self, change: ChangeSet) -> str:
        return SCOPE_RUNNING

    async def read(self, scope: str) -> Snapshot:
        if scope != SCOPE_RUNNING:
            raise StateError(f"not a NAPALM scope ({scope[:40]!r}, expected {SCOPE_RUNNING!r})",
                             device=self.device, phase=Phase.SNAPSHOT)
        return Snapshot(content=await self._running(Phase.SNAPSHOT), scope=SCOPE_RUNNING)

    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        """Stage, ask the device for its diff, and always discard the staged change."""
        if not self.capabilities.diff:
            missing = [line for line in config_lines(change.content) if line not in set(config_lines(snapshot.content))]
            return "".join(f"+{line}\n" for line in missing)
        dev = self._require(Phase.DIFF)
        try:
            await self._load(dev, change.content, Phase.DIFF)
            diff: str = await self._call(Phase.DIFF, self._op_s, dev.compare_config)  # NAPALM: a str
        except BaseException:
            if self.is_open:
                try:
                    await self._call(Phase.DIFF, self._op_s, dev.discard_config)
                except Exception as exc:  # the first error is the one to report
                    log.warning("discarding a failed preview on %s: %s", self.device, exc)
            raise
        await self._call(Phase.DIFF, self._op_s, dev.discard_config)
        return diff

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        return "".join(difflib.unified_diff(
            before.content.splitlines(keepends=True), after.content.splitlines(keepends=True),
            fromfile="running (before)", tofile="running (after)"))

    async def load(self, change: ChangeSet) -> None:
        await self._load(self._require(Phase.PUSH), change.content, Phase.PUSH)

    async def discard(self) -> None:
        dev = self._require(Phase.ROLLBACK)
        await self._call(Phase.ROLLBACK, self._op_s, dev.discard_config)

    async def commit(self, *, confirm_timeout_s: int | None = None, persist_id: str | None = None) -> None:
        dev = self._require(Phase.COMMIT)
        if confirm_timeout_s is None:
            await self._call(Phase.COMMIT, self._commit_s, dev.commit_config)
            return
        if not self.capabilities.confirmed_commit:
            raise UnsupportedOperationError(
                f"a confirmed commit was asked, but NAPALM driver {self.napalm_driver!r} on platform "
                f"{self.profile.platform!r} does not declare confirmed_commit; nothing was committed",
                device=self.device, phase=Phase.COMMIT)
        await self._call(Phase.COMMIT, self._commit_s, functools.partial(dev.commit_config, revert_in=confirm_timeout_s))
        log.debug("confirmed commit on %s, reverts in %d s unless confirmed", self.device, confirm_timeout_s)

    async def confirm(self, *, persist_id: str | None = None) -> None:
        if not self.capabilities.confirmed_commit:
            self._unsupported("confirmed_commit", Phase.CONFIRM)
        dev = self._require(Phase.CONFIRM)
        await self._call(Phase.CONFIRM, self._commit_s, dev.confirm_commit)

    async def cancel_commit(self, *, persist_id: str | None = None) -> bool:
        if not self.capabilities.confirmed_commit:
            self._unsupported("confirmed_commit", Phase.ROLLBACK)
        dev = self._require(Phase.ROLLBACK)
        if not await self._call(Phase.ROLLBACK, self._op_s, dev.has_pending_commit):
            return False
        await self._call(Phase.ROLLBACK, self._commit_s, dev.rollback)
        return True

    async def verify(self, change: ChangeSet, before: Snapshot) -> Verification:
        """Every rendered line must be in the running configuration (containment: NAPALM's
        platforms differ too much for the exact model of :mod:`drivers.cli.exact`; ``before`` is
        not compared)."""
        running = await self._running(Phase.VERIFY)
        checked, mismatches = check_lines(change, running)
        detail = "; ".join(str(m) for m in mismatches) if mismatches else f"{checked} line(s) found in running"
        return Verification(ok=not mismatches, checked=checked, mismatches=mismatches, detail=detail,
                            readback=Snapshot(content=running, scope=SCOPE_RUNNING))

    async def restore(self, snapshot: Snapshot, undo: str | None = None) -> None:
        """Replace the running configuration with the snapshot and commit it."""
        if snapshot.scope != SCOPE_RUNNING:
            raise StateError(f"not a NAPALM snapshot (scope {snapshot.scope!r})", device=self.device,
                             phase=Phase.ROLLBACK)
        dev = self._require(Phase.ROLLBACK)
        try:
            await self._call(Phase.ROLLBACK, self._op_s,
                             functools.partial(dev.load_replace_candidate, config=snapshot.content))
        except Exception:
            if self.is_open:
                try:
                    await self._call(Phase.ROLLBACK, self._op_s, dev.discard_config)
                except Exception as exc:
                    log.warning("discarding a failed restore on %s: %s", self.device, exc)
            raise
        await self._call(Phase.ROLLBACK, self._commit_s, dev.commit_config)

    # -- helpers -------------------------------------------------------------------------
    @property
    def _op_s(self) -> float:
        return self.profile.timeouts.operation_s

    @property
    def _commit_s(self) -> float:
        return self.profile.timeouts.commit_s

    async def _running(self, phase: Phase) -> str:
        dev = self._require(phase)
        got = await self._call(phase, self._op_s, functools.partial(dev.get_config, retrieve="running"))
        running = got.get("running") if isinstance(got, Mapping) else None
        if not isinstance(running, str):
            raise StateError(f"NAPALM {self.napalm_driver!r} get_config returned no running configuration",
                             device=self.device, phase=phase)
        return running

    async def _load(self, dev: NetworkDriver, content: str, phase: Phase) -> None:
        method = dev.load_replace_candidate if self.settings.load_mode == "replace" else dev.load_merge_candidate
        await self._call(phase, self._op_s, functools.partial(method, config=content))

    def _require(self, phase: Phase) -> NetworkDriver:
        if self._device is None or self._broken:
            raise StateError(f"the NAPALM session to {self.device} is not open", device=self.device, phase=phase)
        return self._device

    async def _call(self, phase: Phase, timeout_s: float, fn: Callable[[], T]) -> T:
        self._require(phase)
        return await self._run(phase, timeout_s, fn)

    async def _run(self, phase: Phase, timeout_s: float, fn: Callable[[], T]) -> T:
        """Run a blocking NAPALM call in the shared pool, cut after ``timeout_s``; translate its errors."""
        work = executor().submit(fn)  # concurrent Future: it outlives a cut await
        future = asyncio.wrap_future(work)
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                return await future
        except asyncio.CancelledError:
            self._abandon(phase)
            raise
        except Exception as exc:
            if deadline.expired():
                self._abandon(phase)
                if phase is Phase.CONNECT:  # the connect may still succeed later: close what it opens
                    work.add_done_callback(_close_late_session)
                raise DeviceTimeoutError(
                    f"NAPALM {self.napalm_driver!r}: no answer within {timeout_s:g} s in phase {phase.value}; "
                    f"the session is dropped", device=self.device, phase=phase) from exc
            raise translate(exc, device=self.device, phase=phase, napalm_driver=self.napalm_driver,
                            secrets=self.endpoint.credential.secrets()) from exc

    def _abandon(self, phase: Phase) -> None:
        """A call was cut while its thread still runs: never reuse this device object."""
        self._broken = True
        device, self._device = self._device, None
        log.warning("NAPALM call on %s abandoned in phase %s; closing the session in the background",
                    self.device, phase.value)
        if device is not None:
            executor().submit(_close_quietly, device)


def _close_late_session(future: "Future[Any]") -> None:
    if not future.cancelled() and future.exception() is None and isinstance(future.result(), NetworkDriver):
        executor().submit(_close_quietly, future.result())


def _close_quietly(device: NetworkDriver) -> None:
    try:
        device.close()
    except Exception as exc:
        log.debug("closing an abandoned NAPALM session: %s", exc)


__all__ = ["NAPALM_CAPABILITIES", "NapalmDriver", "NapalmSettings", "check_lines", "config_lines", "executor",
           "napalm_capabilities"]
