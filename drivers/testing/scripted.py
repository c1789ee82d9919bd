"""A scripted driver over an in-memory device network, for engine tests (no lab, no root).

:class:`ScriptedNetwork` holds every device's configuration: ``key = value`` pairs whose key is
``<section>.<leaf>`` (``if.ge1 = up``). It outlives sessions and engines, so what one session did is
what the next one (a restarted gateway) reads. A change is ``lines`` text, one edit a line::

    if.ge1 = up          set a key
    no if.ge1            delete it

A change's scope is the sections it names (``if`` — comma-separated when several); ``read`` gives
the scope's pairs as sorted ``key = value`` lines. Capabilities come from the profile, so one class
plays a NETCONF-like device (``lock``, ``candidate``, ``validate``, ``confirmed_commit``,
``persist_id``) or a CLI-like one (none: ``load`` is live at once). Semantics: the candidate is
staged until ``commit`` and dropped by ``discard``; the datastore lock belongs to one session and
writes from another are ``LockDeniedError``; a confirmed commit arms a revert timer that fires when
the test calls :meth:`ScriptedNetwork.expire_timers`, that ``confirm`` disarms and ``cancel_commit``
reverts at once (by persist-id from any session, else only from its own). When a session ends
(``close`` or :meth:`ScriptedNetwork.kill_sessions`) its lock is released, a candidate it staged
under that lock is discarded, and its confirmed commit without persist-id reverts (RFC 6241). As
netconfd does, ``lock`` is refused while another session's confirmed commit is pending.

Use it::

    net = ScriptedNetwork({"r1": {"if.ge1": "down"}})
    registry.register("scripted", net.driver_class())    # profiles name driver "scripted"
    net.fail("r1", "load", DeviceRejectedError("bad value"))   # the next load is refused
    net.hang("r1", "commit")                     # the next commit never answers
    net.bug("r1", "verify")                      # RuntimeError: a driver bug
    net.mismatch("r1")                           # the next verify reports a mismatch
    net.drift("r1", {"if.ge1": "admin"}, at="verify")   # someone else edits the device
    reached = net.crash_at("r1", "commit")       # commit takes effect, then hangs; reached is set
    net.kill_sessions()                          # the gateway process died (sessions dropped)

Each fault hits ``times`` calls (``None``: all) after letting ``skip`` pass, ``before`` the operation
acts (default) or ``after`` it took effect. ``net.calls`` logs ``(device, op)`` and ``net.restores``
every ``restore(snapshot, undo)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import inspect
import itertools
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from drivers.base import (Capabilities, ChangeSet, DeviceProfile, Driver, Endpoint, Mismatch, PayloadFormat, Snapshot,
                          Verification)
from drivers.errors import (AgwError, ConnectError, DeviceErrorInfo, DeviceRejectedError, FieldViolation, InputError,
                            LockDeniedError, Phase, SessionLostError)

Operation = Literal["open", "lock", "unlock", "read", "preview", "load", "validate", "discard", "commit",
                    "confirm", "cancel_commit", "verify", "restore"]
Config = dict[str, str]
Edit = tuple[str, str | None]  # key, value (None: delete)

PHASES: dict[str, Phase] = {
    "open": Phase.CONNECT, "lock": Phase.LOCK, "unlock": Phase.UNLOCK, "read": Phase.SNAPSHOT,
    "preview": Phase.DIFF, "load": Phase.PUSH, "validate": Phase.VALIDATE, "discard": Phase.ROLLBACK,
    "commit": Phase.COMMIT, "confirm": Phase.CONFIRM, "cancel_commit": Phase.ROLLBACK, "verify": Phase.VERIFY,
    "restore": Phase.ROLLBACK,
}
_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_/:.-]+)+$")


def parse(content: str) -> list[Edit]:
    """The edits of a change; :class:`ValueError` naming the first line that is not one."""
    edits: list[Edit] = []
    for line in content.splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("no "):
            key, value = text[3:].strip(), None
        else:
            key, sep, rest = (part.strip() for part in text.partition("="))
            value = rest if sep else ""
            if not sep:
                raise ValueError(line)
        if not _KEY.match(key):
            raise ValueError(line)
        edits.append((key, value))
    return edits


def section(key: str) -> str:
    return key.split(".", 1)[0]


def apply(config: Mapping[str, str], edits: list[Edit]) -> Config:
    out = dict(config)
    for key, value in edits:
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def render(config: Mapping[str, str], scope: str) -> str:
    """The canonical text of ``scope`` (comma-separated sections) in ``config``."""
    sections = set(scope.split(","))
    return "\n".join(f"{k} = {v}" for k, v in sorted(config.items()) if section(k) in sections)


def pairs(content: str) -> Config:
    """Canonical text back to a mapping."""
    return {k: v for k, v in parse(content) if v is not None}


@dataclass
class Fault:
    """What happens to one device operation (see the module docstring)."""

    op: Operation
    error: BaseException | None = None
    hang: bool = False
    mismatch: bool = False
    drift: Mapping[str, str | None] | None = None
    hook: Callable[[], Any] | None = None
    after: bool = False
    partial: bool = False
    """``load`` only: the change's first line takes effect before the fault hits (a push that fails midway)."""
    skip: int = 0
    times: int | None = 1
    seen: int = 0
    hits: int = 0

    def due(self) -> bool:
        self.seen += 1
        hit = self.seen > self.skip and (self.times is None or self.hits < self.times)
        self.hits += hit
        return hit


@dataclass
class PendingCommit:
    rollback_to: Config
    persist_id: str | None
    session: int
    timeout_s: int


@dataclass
class Device:
    running: Config
    candidate: Config | None = None
    lock_owner: int | None = None
    pending: PendingCommit | None = None
    faults: list[Fault] = field(default_factory=list)


class ScriptedNetwork:
    """Devices by name, their faults, and the sessions open to them."""

    def __init__(self, devices: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.devices: dict[str, Device] = {}
        self.sessions: dict[int, str] = {}  # live session id -> device
        self.calls: list[tuple[str, str]] = []
        self.restores: list[tuple[str, Snapshot, str | None]] = []
        self._ids = itertools.count(1)
        for name, config in (devices or {}).items():
            self.add(name, config)

    def add(self, device: str, config: Mapping[str, str] | None = None) -> None:
        self.devices[device] = Device(running=dict(config or {}))

    def driver_class(self, name: str = "scripted") -> type["ScriptedDriver"]:
        """A :class:`ScriptedDriver` subclass bound to this network, registered under ``name``."""
        class Bound(ScriptedDriver):
            pass

        Bound.network, Bound.name = self, name
        Bound.__name__ = Bound.__qualname__ = f"ScriptedDriver_{name}"
        return Bound

    # -- the devices, as a test sees them -----------------------------------------------------
    def config(self, device: str) -> Config:
        return dict(self.devices[device].running)

    def text(self, device: str, scope: str) -> str:
        return render(self.devices[device].running, scope)

    def set(self, device: str, changes: Mapping[str, str | None]) -> None:
        """An out-of-band edit of the running configuration (``None`` deletes)."""
        self.devices[device].running = apply(self.devices[device].running, list(changes.items()))

    def pending(self, device: str) -> PendingCommit | None:
        return self.devices[device].pending

    def ops(self, device: str) -> list[str]:
        return [op for d, op in self.calls if d == device]

    def expire_timers(self, device: str | None = None) -> int:
        """Fire the confirmed-commit timers (of ``device``, else all): each reverts. How many did."""
        fired = 0
        for name, dev in self.devices.items():
            if dev.pending is not None and device in (None, name):
                dev.running, dev.pending = dev.pending.rollback_to, None
                fired += 1
        return fired

    def kill_sessions(self, device: str | None = None) -> None:
        """Every session (to ``device``) dies, as when the gateway's process does."""
        for sid, name in list(self.sessions.items()):
            if device in (None, name):
                self.end_session(sid)

    def end_session(self, sid: int) -> None:
        name = self.sessions.pop(sid, None)
        if name is None:
            return
        dev = self.devices[name]
        if dev.lock_owner == sid:
            dev.lock_owner, dev.candidate = None, None
        if dev.pending is not None and dev.pending.session == sid and dev.pending.persist_id is None:
            dev.running, dev.pending = dev.pending.rollback_to, None

    # -- faults -------------------------------------------------------------------------------
    def fault(self, device: str, fault: Fault) -> Fault:
        self.devices[device].faults.append(fault)
        return fault

    def fail(self, device: str, op: Operation, error: BaseException, **kw: Any) -> Fault:
        """Raise ``error`` (a :mod:`drivers.errors` error, retryable or not; ``device`` and
        ``phase`` are filled in when missing)."""
        return self.fault(device, Fault(op, error=error, **kw))

    def hang(self, device: str, op: Operation, **kw: Any) -> Fault:
        return self.fault(device, Fault(op, hang=True, **kw))

    def bug(self, device: str, op: Operation, error: BaseException | None = None, **kw: Any) -> Fault:
        """A driver bug: a non-AgwError escapes the driver."""
        return self.fault(device, Fault(op, error=error or RuntimeError(f"scripted driver bug in {op}"), **kw))

    def mismatch(self, device: str, **kw: Any) -> Fault:
        return self.fault(device, Fault("verify", mismatch=True, **kw))

    def drift(self, device: str, changes: Mapping[str, str | None], *, at: Operation, **kw: Any) -> Fault:
        return self.fault(device, Fault(at, drift=dict(changes), **kw))

    def on(self, device: str, op: Operation, hook: Callable[[], Any], **kw: Any) -> Fault:
        """Call ``hook`` (sync or async) at ``op``."""
        return self.fault(device, Fault(op, hook=hook, **kw))

    def crash_at(self, device: str, op: Operation, *, after: bool = True, **kw: Any) -> asyncio.Event:
        """The gateway "dies" at ``op`` (after it took effect, by default): the event is set and the
        operation never returns; the test then stops the engine (and :meth:`kill_sessions`)."""
        reached = asyncio.Event()
        self.fault(device, Fault(op, hook=reached.set, hang=True, after=after, **kw))
        return reached

    def clear(self, device: str | None = None) -> None:
        for name, dev in self.devices.items():
            if device in (None, name):
                dev.faults.clear()


class ScriptedDriver(Driver):
    """One session to one device of :attr:`network` (use :meth:`ScriptedNetwork.driver_class`)."""

    name: ClassVar[str] = "scripted"
    payload_format: ClassVar[PayloadFormat] = PayloadFormat.LINES
    supported: ClassVar[Capabilities] = Capabilities(lock=True, candidate=True, confirmed_commit=True,
                                                     persist_id=True, validate=True)
    network: ClassVar[ScriptedNetwork]

    def __init__(self, *, endpoint: Endpoint, profile: DeviceProfile) -> None:
        super().__init__(endpoint=endpoint, profile=profile)
        self.sid = 0
        self._mismatch = False  # a mismatch fault hit this verify

    @classmethod
    def check_change(cls, change: ChangeSet, profile: DeviceProfile) -> None:
        for text in (change.content, change.undo or ""):
            try:
                parse(text)
            except ValueError as exc:
                raise InputError([FieldViolation("content", f"not a scripted edit: {exc.args[0]!r}")]) from None

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def dev(self) -> Device:
        return self.network.devices[self.device]

    async def _faults(self, op: Operation, *, after: bool, partial: Callable[[], None] | None = None) -> None:
        due = [f for f in list(self.dev.faults) if f.op == op and f.after == after and f.due()]
        for f in due:
            self._mismatch |= f.mismatch
            if f.drift is not None:
                self.network.set(self.device, f.drift)
            if f.partial and partial is not None:
                partial()
            if f.hook is not None and inspect.isawaitable(result := f.hook()):
                await result
            if f.hang:
                await asyncio.Event().wait()
            if f.error is not None:
                if isinstance(f.error, AgwError):
                    f.error.device, f.error.phase = f.error.device or self.device, f.error.phase or PHASES[op]
                raise f.error

    @contextlib.asynccontextmanager
    async def _op(self, op: Operation, *, capability: str = "", write: bool = False,
                  partial: Callable[[], None] | None = None) -> AsyncIterator[Device]:
        """One operation: capability check, log, faults before, the body, faults after."""
        if capability and not getattr(self.capabilities, capability):
            self._unsupported(capability, PHASES[op])
        self.network.calls.append((self.device, op))
        if self.sid not in self.network.sessions:
            raise SessionLostError(f"{op}: the session is closed", device=self.device, phase=PHASES[op])
        await self._faults(op, after=False, partial=partial)
        owner = self.dev.lock_owner
        if write and owner is not None and owner != self.sid:
            raise LockDeniedError(f"{op}: the datastore is locked by session {owner}", device=self.device,
                                  phase=PHASES[op], info=DeviceErrorInfo("locked", tag="in-use"))
        yield self.dev
        await self._faults(op, after=True)

    def _edits(self, content: str, op: str) -> list[Edit]:
        try:
            return parse(content)
        except ValueError as exc:
            raise DeviceRejectedError(f"{op}: syntax error", device=self.device, phase=PHASES[op],
                                      info=DeviceErrorInfo("syntax error", line=exc.args[0])) from None

    def _ours(self, pending: PendingCommit, persist_id: str | None) -> bool:
        return pending.persist_id == persist_id if pending.persist_id is not None else pending.session == self.sid

    def _rejected(self, message: str, phase: Phase, tag: str) -> DeviceRejectedError:
        return DeviceRejectedError(message, device=self.device, phase=phase, info=DeviceErrorInfo(message, tag=tag))

    # -- session --------------------------------------------------------------------------------
    async def open(self) -> None:
        if self.device not in self.network.devices:
            raise ConnectError(f"no device {self.device!r} in the scripted network", device=self.device,
                               phase=Phase.CONNECT)
        self.network.calls.append((self.device, "open"))
        await self._faults("open", after=False)
        self.sid = next(self.network._ids)
        self.network.sessions[self.sid] = self.device
        await self._faults("open", after=True)

    async def close(self) -> None:
        self.network.end_session(self.sid)

    @property
    def is_open(self) -> bool:
        return self.sid in self.network.sessions

    # -- lifecycle -----------------------------------------------------------------------------
    async def lock(self) -> None:
        async with self._op("lock", capability="lock") as dev:
            if dev.lock_owner is not None:
                raise LockDeniedError(f"lock held by session {dev.lock_owner}", device=self.device, phase=Phase.LOCK,
                                      info=DeviceErrorInfo("lock denied", tag="lock-denied"))
            if dev.pending is not None and dev.pending.session != self.sid:  # as netconfd does
                raise LockDeniedError("cannot perform the operation with confirmed-commit pending",
                                      device=self.device, phase=Phase.LOCK,
                                      info=DeviceErrorInfo("in-use", tag="in-use"))
            dev.lock_owner = self.sid

    async def unlock(self) -> None:
        async with self._op("unlock", capability="lock") as dev:
            if dev.lock_owner != self.sid:
                raise self._rejected("unlock: this session holds no lock", Phase.UNLOCK, "operation-failed")
            dev.lock_owner = None

    def scope_of(self, change: ChangeSet) -> str:
        try:
            edits = parse(change.content)
        except ValueError:
            edits = []
        return ",".join(sorted({section(k) for k, _ in edits})) or "-"

    async def read(self, scope: str) -> Snapshot:
        async with self._op("read") as dev:
            snapshot = Snapshot(content=render(dev.running, scope), scope=scope)
        return snapshot

    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        after = render(apply(pairs(snapshot.content), self._edits(change.content, "preview")), snapshot.scope)
        async with self._op("preview"):
            pass
        return self.diff(snapshot, Snapshot(content=after, scope=snapshot.scope)) or "(no change)"

    async def load(self, change: ChangeSet) -> None:
        edits = self._edits(change.content, "load")

        def write(these: list[Edit]) -> None:
            dev = self.dev
            if self.capabilities.candidate:
                dev.candidate = apply(dev.running if dev.candidate is None else dev.candidate, these)
            else:
                dev.running = apply(dev.running, these)

        async with self._op("load", write=True, partial=lambda: write(edits[:1])):
            write(edits)

    async def validate(self, change: ChangeSet) -> None:
        async with self._op("validate", capability="validate"):
            self._edits(change.content, "validate")

    async def discard(self) -> None:
        async with self._op("discard", capability="candidate", write=True) as dev:
            dev.candidate = None

    async def commit(self, *, confirm_timeout_s: int | None = None, persist_id: str | None = None) -> None:
        async with self._op("commit", capability="candidate", write=True) as dev:
            new = dev.running if dev.candidate is None else dev.candidate
            if confirm_timeout_s is not None:
                if not self.capabilities.confirmed_commit:
                    self._unsupported("confirmed_commit", Phase.COMMIT)
                persist = persist_id if self.capabilities.persist_id else None
                if dev.pending is None:
                    dev.pending = PendingCommit(dict(dev.running), persist, self.sid, confirm_timeout_s)
                elif self._ours(dev.pending, persist):  # a follow-up confirmed commit: the timer restarts
                    dev.pending.timeout_s = confirm_timeout_s
                else:
                    raise self._rejected("commit: another confirmed commit is pending", Phase.COMMIT, "in-use")
            elif dev.pending is not None and self._ours(dev.pending, persist_id):
                dev.pending = None  # a plain commit confirms
            dev.running, dev.candidate = dict(new), None

    async def confirm(self, *, persist_id: str | None = None) -> None:
        async with self._op("confirm", capability="confirmed_commit") as dev:
            if dev.pending is not None and self._ours(dev.pending, persist_id):
                dev.pending = None
            elif persist_id is not None:
                raise self._rejected(f"confirm: no confirmed commit with persist-id {persist_id!r}", Phase.CONFIRM,
                                     "invalid-value")

    async def cancel_commit(self, *, persist_id: str | None = None) -> bool:
        async with self._op("cancel_commit", capability="confirmed_commit") as dev:
            pid = persist_id if self.capabilities.persist_id else None
            pending = dev.pending if dev.pending is not None and self._ours(dev.pending, pid) else None
            if pending is not None:
                dev.running, dev.pending, dev.candidate = pending.rollback_to, None, None
        return pending is not None

    async def verify(self, change: ChangeSet, before: Snapshot) -> Verification:
        edits = self._edits(change.content, "verify")
        named = {k for k, _ in edits}
        async with self._op("verify") as dev:
            expected, actual = apply(pairs(before.content), edits), pairs(render(dev.running, before.scope))
            mismatches = [Mismatch(path=k, expected=expected.get(k), actual=actual.get(k), unexpected=k not in named)
                          for k in sorted(set(expected) | set(actual)) if expected.get(k) != actual.get(k)]
            if self._mismatch:
                self._mismatch, key = False, min(named, default="-")
                mismatches.append(Mismatch(path=key, expected=expected.get(key), actual="<scripted mismatch>"))
            readback = Snapshot(content=render(dev.running, before.scope), scope=before.scope)
        return Verification(ok=not mismatches, checked=len(named), mismatches=tuple(mismatches), readback=readback)

    async def restore(self, snapshot: Snapshot, undo: str | None = None) -> None:
        async with self._op("restore", write=True) as dev:
            self.network.restores.append((self.device, snapshot, undo))
            config = apply(dev.running, self._edits(undo, "restore")) if undo else dict(dev.running)
            sections = set(snapshot.scope.split(","))
            dev.running = {k: v for k, v in config.items() if section(k) not in sections} | pairs(snapshot.content)
            dev.candidate = None

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        return "".join(difflib.unified_diff([f"{line}\n" for line in before.content.splitlines()],
                                            [f"{line}\n" for line in after.content.splitlines()],
                                            fromfile=f"{self.device} (before)", tofile=f"{self.device} (after)"))


__all__ = ["Fault", "Operation", "PendingCommit", "ScriptedDriver", "ScriptedNetwork", "apply", "parse", "render"]
