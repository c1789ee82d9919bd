"""NetconfDriver against the lab's real netconfd (node ``nc1``)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path
from typing import AsyncIterator

import pytest
import yaml

from drivers.base import Capabilities, ChangeSet, DeviceProfile, Endpoint, Snapshot, Timeouts
from drivers.netconf import NetconfDriver, rpc
from gateway.errors import DeviceRejectedError, DeviceTimeoutError, LockDeniedError, SessionLostError
from gateway.model import Action
from gateway.secrets import Credential, Secret

pytestmark = [pytest.mark.lab]

PROFILE = Path(__file__).parents[2] / "device_profiles" / "netconfd.yaml"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
SYS = "urn:ietf:params:xml:ns:yang:ietf-system"
TYPE = '<type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>'


def profile(**timeouts: float) -> DeviceProfile:
    d = yaml.safe_load(PROFILE.read_text())
    t = {**d["timeouts"], **timeouts}
    return DeviceProfile(
        platform=d["platform"], driver=d["driver"], capabilities=Capabilities(**d["capabilities"]),
        timeouts=Timeouts(**t), confirm_timeout_s=d["confirm_timeout_s"], quirks=d["quirks"],
        settings=d["settings"],
    )


def iface(name: str, *, description: str | None = None, enabled: str = "true", ip: str | None = None,
          op: str = "") -> ChangeSet:
    body = ""
    if description is not None:
        body = f"<description>{description}</description>{TYPE}<enabled>{enabled}</enabled>"
    if ip:
        body += f'<ipv4 xmlns="{IP}"><address><ip>{ip}</ip><prefix-length>24</prefix-length></address></ipv4>'
    attr = f' nc:operation="{op}"' if op else ""
    content = (f'<config xmlns="{NC}" xmlns:nc="{NC}"><interfaces xmlns="{IF}"><interface{attr}><name>{name}</name>'
               f"{body}</interface></interfaces></config>")
    return ChangeSet(service="interface", action=Action.DELETE if op else Action.CREATE, content=content)


def system(contact: str, location: str) -> ChangeSet:
    return ChangeSet(service="system", action=Action.MODIFY, content=(
        f'<config xmlns="{NC}"><system xmlns="{SYS}"><contact>{contact}</contact>'
        f"<location>{location}</location></system></config>"))


@pytest.fixture(scope="module")
def node(lab):  # type: ignore[no-untyped-def]
    return lab.node("nc1")


def make(node, **timeouts: float) -> NetconfDriver:  # type: ignore[no-untyped-def]
    cred = node.credentials["netconf"]
    return NetconfDriver(
        endpoint=Endpoint(device=node.name if hasattr(node, "name") else "nc1", host=node.address,
                          port=node.ports["netconf"], platform="netconfd",
                          credential=Credential(ref="lab", username=cred["username"], password=Secret(cred["password"])),
                          known_hosts=str(node.known_hosts)),
        profile=profile(**timeouts),
    )


@pytest.fixture
async def drv(node) -> AsyncIterator[NetconfDriver]:  # type: ignore[no-untyped-def]
    d = make(node)
    await d.open()
    yield d
    await d.close()


@pytest.fixture
def name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


async def independent_read(node, change: ChangeSet, before: Snapshot):  # type: ignore[no-untyped-def]
    """A verification through a session of its own (not the one that made the change)."""
    d = make(node)
    await d.open()
    try:
        return await d.verify(change, before)
    finally:
        await d.close()


async def apply(d: NetconfDriver, change: ChangeSet) -> None:
    await d.lock()
    try:
        await d.load(change)
        await d.commit()
    finally:
        await d.unlock()


async def test_lock_is_exclusive(node, drv: NetconfDriver) -> None:  # type: ignore[no-untyped-def]
    other = make(node)
    await other.open()
    try:
        await drv.lock()
        with pytest.raises(LockDeniedError) as ei:
            await other.lock()
        assert ei.value.info is not None and ei.value.info.tag == "lock-denied"
        await drv.unlock()
        await other.lock()
        await other.unlock()
    finally:
        await other.close()


async def test_create_modify_delete_verified(node, drv: NetconfDriver, name: str) -> None:  # type: ignore[no-untyped-def]
    create = iface(name, description="first", ip="192.0.2.1")
    before = await drv.read(drv.scope_of(create))
    await apply(drv, create)
    v = await drv.verify(create, before)
    assert v.ok and v.checked == 6, v.mismatches  # name, description, type, enabled, ip, prefix-length
    assert (await independent_read(node, create, before)).ok
    assert v.readback is not None and "192.0.2.1" in v.readback.content

    modify = iface(name, description="second", enabled="false", ip="192.0.2.1")
    created = await drv.read(drv.scope_of(modify))
    await apply(drv, modify)
    assert (await independent_read(node, modify, created)).ok
    stale = await drv.verify(create, before)  # the old description and enabled value are gone
    assert not stale.ok
    assert {(m.path.rsplit("/", 1)[-1], m.unexpected) for m in stale.mismatches} == {
        ("description", False), ("enabled", False)}

    delete = iface(name, op="delete")
    modified = await drv.read(drv.scope_of(delete))
    await apply(drv, delete)
    v = await independent_read(node, delete, modified)
    assert v.ok and v.checked == 6  # every leaf the entry had is gone
    assert "<interface>" not in (await drv.read(drv.scope_of(delete))).content


async def test_system_contact_and_location(node, drv: NetconfDriver) -> None:  # type: ignore[no-untyped-def]
    change = system(f"noc-{uuid.uuid4().hex[:6]}", "rack 7")
    before = await drv.read(drv.scope_of(change))
    await apply(drv, change)
    assert (await independent_read(node, change, before)).ok
    await drv.restore(before)
    assert (await drv.read(before.scope)).content == before.content


async def test_confirmed_commit_persists_across_sessions_then_confirm(node, drv: NetconfDriver, name: str) -> None:  # type: ignore[no-untyped-def]
    change = iface(name, description="persisted")
    pid = f"p-{name}"
    before = await drv.read(drv.scope_of(change))
    await drv.lock()
    await drv.load(change)
    await drv.commit(confirm_timeout_s=60, persist_id=pid)
    await drv.unlock()
    await drv.close()  # without persist this would revert at once
    d2 = make(node)
    await d2.open()
    try:
        assert (await d2.verify(change, before)).ok
        await d2.confirm(persist_id=pid)
        assert await d2.cancel_commit(persist_id=pid) is False  # nothing pending any more
        assert (await d2.verify(change, before)).ok
        await apply(d2, iface(name, op="delete"))
    finally:
        await d2.close()


async def test_cancel_commit_restores(drv: NetconfDriver, name: str) -> None:
    change = iface(name, description="to-cancel")
    before = await drv.read(drv.scope_of(change))
    await drv.lock()
    await drv.load(change)
    await drv.commit(confirm_timeout_s=60, persist_id=f"c-{name}")
    assert (await drv.verify(change, before)).ok
    assert await drv.cancel_commit(persist_id=f"c-{name}") is True
    await drv.unlock()
    assert (await drv.read(before.scope)).content == before.content


async def test_unconfirmed_commit_reverts_by_itself(drv: NetconfDriver, name: str) -> None:
    change = iface(name, description="short-lived")
    before = await drv.read(drv.scope_of(change))
    await drv.lock()
    await drv.load(change)
    await drv.commit(confirm_timeout_s=2, persist_id=f"r-{name}")
    await drv.unlock()
    assert (await drv.verify(change, before)).ok
    await asyncio.sleep(4)
    assert (await drv.read(before.scope)).content == before.content
    assert await drv.cancel_commit(persist_id=f"r-{name}") is False


async def test_invalid_value_is_rejected_with_parsed_error(drv: NetconfDriver, name: str) -> None:
    bad = iface(name, description="x", enabled="notabool")
    await drv.lock()
    try:
        with pytest.raises(DeviceRejectedError) as ei:
            await drv.load(bad)
            await drv.commit()
        info = ei.value.info
        assert info is not None and info.tag == "invalid-value"
        assert "enabled" in info.path and info.message
        assert ei.value.device and ei.value.phase is not None
        await drv.discard()
    finally:
        await drv.unlock()
    assert "<interface>" not in (await drv.read(drv.scope_of(bad))).content


async def test_verify_catches_the_validate_quirk(drv: NetconfDriver, name: str) -> None:
    change = iface(name, description="lost-by-validate")
    before = await drv.read(drv.scope_of(change))
    await drv.lock()
    try:
        await drv.load(change)
        # by hand, what the driver never does under quirk validate_drops_candidate:
        await drv._rpc(rpc.validate(source="candidate"), operation="validate", phase=None)  # type: ignore[arg-type]  # noqa: SLF001
        await drv.commit()  # says ok ...
    finally:
        await drv.unlock()
    v = await drv.verify(change, before)  # ... but nothing changed
    assert not v.ok
    assert any(m.path.endswith(f"interface[name='{name}']/description") for m in v.mismatches)


async def test_driver_validate_does_not_lose_the_change(drv: NetconfDriver, name: str) -> None:
    change = iface(name, description="validated")
    before = await drv.read(drv.scope_of(change))
    await drv.lock()
    try:
        await drv.load(change)
        await drv.validate(change)  # inline <config>, because of the quirk
        await drv.commit()
    finally:
        await drv.unlock()
    assert (await drv.verify(change, before)).ok
    await apply(drv, iface(name, op="delete"))


async def test_preview_leaves_running_unchanged(drv: NetconfDriver, name: str) -> None:
    change = iface(name, description="previewed")
    before = await drv.read(drv.scope_of(change))
    diff = await drv.preview(change, before)
    assert "+      <description>previewed</description>" in diff
    assert (await drv.read(before.scope)).content == before.content
    await drv.lock()  # the preview released its lock and discarded the candidate
    await drv.commit()  # nothing staged: running stays as it was
    await drv.unlock()
    assert (await drv.read(before.scope)).content == before.content


async def test_restore_from_snapshot(drv: NetconfDriver, name: str) -> None:
    await apply(drv, iface(name, description="original", ip="198.51.100.1"))
    other = f"{name}b"
    change_a = iface(name, description="changed", ip="198.51.100.2")
    both = ChangeSet(service="interface", action=Action.MODIFY, content=change_a.content.replace(
        "</interface></interfaces>", f"</interface><interface><name>{other}</name><description>brand-new</description>"
        f"{TYPE}</interface></interfaces>"))
    before = await drv.read(drv.scope_of(both))
    await apply(drv, both)
    v = await drv.verify(both, before)
    assert v.ok and v.readback is not None and "brand-new" in v.readback.content
    await drv.lock()
    await drv.restore(before)
    await drv.unlock()
    after = await drv.read(before.scope)
    assert after.content == before.content, drv.diff(before, after)
    await apply(drv, iface(name, op="delete"))


def netconfd_pid(address: str, port: int) -> int:
    """The netconfd behind the sshd listening on address:port (via sshd's Subsystem socket path)."""
    procs = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                # sshd rewrites its title ("sshd: /usr/sbin/sshd -f CONF [listener]"): split on blanks too
                procs[int(p.name)] = (p / "cmdline").read_bytes().replace(b"\0", b" ").split()
            except OSError:
                continue
    for argv in procs.values():
        if argv and argv[0].rstrip(b":").endswith(b"sshd") and b"-f" in argv:
            conf = Path(argv[argv.index(b"-f") + 1].decode())
            try:
                text = conf.read_text()
            except OSError:
                continue
            if f"ListenAddress {address}:{port}" not in text:
                continue
            sock = text.split(f"--ncxserver-sockname={port}@", 1)[1].split()[0]
            for pid, nargv in procs.items():
                if nargv and nargv[0].endswith(b"netconfd") and f"--ncxserver-sockname={sock}".encode() in nargv:
                    return pid
    raise LookupError(f"no netconfd found behind {address}:{port}")


async def test_hung_device_times_out_and_kills_the_session(node) -> None:  # type: ignore[no-untyped-def]
    pid = netconfd_pid(node.address, node.ports["netconf"])
    d = make(node, operation_s=2.0, connect_s=3.0)
    await d.open()
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeoutError) as ei:
            await d.lock()
        elapsed = time.monotonic() - t0
        assert 1.9 <= elapsed < 3.0, elapsed
        assert ei.value.retryable and not d.is_open
        with pytest.raises(SessionLostError):
            await d.unlock()
        t0 = time.monotonic()
        d2 = make(node, connect_s=2.0)
        with pytest.raises(DeviceTimeoutError):
            await d2.open()  # sshd answers, the hello never comes
        assert time.monotonic() - t0 < 3.0
    finally:
        os.kill(pid, signal.SIGCONT)
        await d.close()
    d3 = make(node)
    await d3.open()
    await d3.lock()
    await d3.unlock()
    await d3.close()
