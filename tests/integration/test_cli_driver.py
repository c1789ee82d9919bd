"""The CLI driver against the lab's real FRR (vtysh over sshd) on node ``cli1``."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import yaml

from drivers.base import ChangeSet, DeviceProfile, Endpoint, Timeouts
from drivers.cli import CliDriver
from gateway.errors import DeviceRejectedError, DeviceTimeoutError
from gateway.inventory.profiles import parse_profile
from gateway.model import Action
from gateway.render.store import TemplateStore
from gateway.secrets import Credential, Secret

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
OPERATION_S = 3.0
STORE = TemplateStore(root=ROOT / "templates")


def profile() -> DeviceProfile:
    prof = parse_profile(yaml.safe_load((ROOT / "device_profiles" / "frr.yaml").read_text()), source="frr.yaml")
    return dataclasses.replace(prof, timeouts=Timeouts(connect_s=5, operation_s=OPERATION_S, commit_s=10))


def endpoint(lab: Any) -> Endpoint:
    node = lab.node("cli1")
    cred = node.credentials["cli"]
    return Endpoint(device="cli1", host=node.address, port=node.ports["cli"], platform="frr",
                    credential=Credential(ref="lab:cli1", username=cred["username"], password=Secret(cred["password"])),
                    known_hosts=str(node.known_hosts))


_RIB_READY: set[str] = set()


async def wait_for_rib(drv: CliDriver, *, timeout_s: float = 30.0) -> None:
    """Wait until staticd installs routes in zebra's RIB.

    On a freshly started FRR, staticd connects to zebra some seconds after both answer on their
    vty sockets (measured: ~10 s after `lab up`); static routes configured before that are kept
    in the config but not in the RIB, so show-command checks would fail for the lab's reason.
    """
    if drv.device in _RIB_READY:
        return
    probe = ChangeSet(service="-", action=Action.CREATE, content="ip route 192.0.2.252/30 Null0\n")
    snapshot = await drv.read(drv.scope_of(probe))
    await drv.load(probe)
    deadline = time.monotonic() + timeout_s
    try:
        while "static" not in await drv._session.send("show ip route 192.0.2.252/30", timeout_s=OPERATION_S,
                                                      phase=None):  # type: ignore[arg-type]
            assert time.monotonic() < deadline, "staticd never installed a route in zebra's RIB"
            await asyncio.sleep(0.2)
    finally:
        await drv.restore(snapshot)
    _RIB_READY.add(drv.device)


@pytest.fixture
async def driver(lab: Any) -> AsyncIterator[CliDriver]:
    drv = CliDriver(endpoint=endpoint(lab), profile=profile())
    await drv.open()
    await wait_for_rib(drv)
    yield drv
    await drv.close()


async def independent_running(lab: Any) -> str:
    """The running configuration read through a second, fresh session."""
    other = CliDriver(endpoint=endpoint(lab), profile=profile())
    await other.open()
    try:
        return (await other.read("running-config")).content
    finally:
        await other.close()


CASES = [
    ("static-route", {"prefix": "203.0.113.0/24", "nexthop": "Null0", "distance": 7},
     "ip route 203.0.113.0/24 Null0 7"),
    ("prefix-list", {"name": "PL-GW", "seq": 5, "rule": "permit", "prefix": "10.0.0.0/8", "le": 24},
     "ip prefix-list PL-GW seq 5 permit 10.0.0.0/8 le 24"),
    ("interface", {"name": "gw7", "description": "managed by agw", "enabled": False,
                   "ipv4": {"address": "192.0.2.9", "prefix_length": 24}},
     " description managed by agw"),
]


@pytest.mark.parametrize(("service", "params", "line"), CASES, ids=[c[0] for c in CASES])
async def test_push_verify_restore(lab: Any, driver: CliDriver, service: str, params: dict, line: str) -> None:
    change = STORE.render(service=service, platform="frr", action="create", parameters=params, device="cli1", payload_format="lines")
    snapshot = await driver.read(driver.scope_of(change))
    assert line not in snapshot.content
    preview = await driver.preview(change, snapshot)
    assert f"+{line}" in preview
    assert (await driver.read(driver.scope_of(change))) == snapshot  # preview sent nothing

    await driver.load(change)
    verification = await driver.verify(change, snapshot)
    assert verification.ok, verification.mismatches
    assert line in await independent_running(lab)

    await driver.restore(snapshot)
    assert (await driver.read(snapshot.scope)) == snapshot
    assert await independent_running(lab) == snapshot.content


async def test_create_then_delete_is_verified_absent(lab: Any, driver: CliDriver) -> None:
    params = {"prefix": "198.51.100.128/25", "nexthop": "blackhole"}
    create = STORE.render(service="static-route", platform="frr", action="create", parameters=params, device="cli1", payload_format="lines")
    delete = STORE.render(service="static-route", platform="frr", action="delete", parameters=params, device="cli1", payload_format="lines")
    before = await driver.read(driver.scope_of(create))
    await driver.load(create)
    assert (await driver.verify(create, before)).ok
    created = await driver.read(driver.scope_of(delete))
    # the delete's verification fails while the route is still there (a line the delete names) ...
    early = await driver.verify(delete, created)
    assert not early.ok
    assert [(m.path, m.unexpected) for m in early.mismatches if not m.path.startswith("check ")] == [
        ("ip route 198.51.100.128/25 blackhole", False)]
    await driver.load(delete)
    result = await driver.verify(delete, created)
    assert result.ok, result.mismatches
    assert result.checked > 2  # every line of the running configuration + the TTP check (absent)
    assert (await driver.read(before.scope)) == before


async def test_ttp_check_fails_when_the_route_is_not_static(lab: Any, driver: CliDriver) -> None:
    change = STORE.render(service="static-route", platform="frr", action="create",
                          parameters={"prefix": "203.0.113.0/24", "nexthop": "Null0"}, device="cli1", payload_format="lines")
    # verify without pushing: the read-back and the TTP check both miss
    result = await driver.verify(change, await driver.read(driver.scope_of(change)))
    assert not result.ok
    assert any(m.path.startswith("check ") for m in result.mismatches)


async def test_rejected_line_names_line_and_message_and_restore_leaves_device_unchanged(
        lab: Any, driver: CliDriver) -> None:
    change = ChangeSet(service="static-route", action=Action.CREATE,
                       content="ip route 203.0.113.0/24 Null0\ninterface lo\n descriptionx bad\nexit\n"
                               "ip route 198.51.100.0/25 Null0\n")
    snapshot = await driver.read(driver.scope_of(change))
    with pytest.raises(DeviceRejectedError) as caught:
        await driver.load(change)
    info = caught.value.info
    assert info is not None
    assert info.line == "descriptionx bad" and info.path == "interface lo"
    assert info.message.startswith("% Unknown command")
    running = await independent_running(lab)
    assert "ip route 203.0.113.0/24 Null0" in running  # applied before the rejected line
    assert "ip route 198.51.100.0/25 Null0" not in running  # nothing sent after it
    await driver.restore(snapshot)
    assert (await driver.read(snapshot.scope)) == snapshot
    # the session left configuration mode: exec commands still work
    assert (await driver.read(driver.scope_of(change))) == snapshot


async def test_stopped_device_times_out_then_recovers(lab: Any, driver: CliDriver) -> None:
    change = STORE.render(service="static-route", platform="frr", action="create",
                          parameters={"prefix": "203.0.113.0/24", "nexthop": "Null0"}, device="cli1", payload_format="lines")
    snapshot = await driver.read(driver.scope_of(change))
    with lab.faulted("cli1", "stop"):  # SIGSTOP zebra, staticd and sshd: vtysh hangs
        started = time.monotonic()
        with pytest.raises(DeviceTimeoutError):
            await driver.load(change)
        elapsed = time.monotonic() - started
        assert elapsed < OPERATION_S + 1.0, elapsed
        started = time.monotonic()
        with pytest.raises(DeviceTimeoutError):
            await driver.read(snapshot.scope)  # a fresh session cannot get an answer either
        assert time.monotonic() - started < 5 + OPERATION_S + 1.0
    # after cont: the driver reopens its session; rollback is verified against the snapshot
    await driver.restore(snapshot)
    assert (await driver.read(snapshot.scope)) == snapshot


async def test_parse_cache_never_hides_a_change_made_by_another_session(lab: Any, driver: CliDriver) -> None:
    """The driver's parsed-config cache is keyed by the text read: a change made behind the
    driver's back (another session) shows in its next read, verify and restore undo it."""
    line = "ip route 198.51.100.200/29 Null0"
    change = ChangeSet(service="-", action=Action.CREATE, content=line + "\n")
    snapshot = await driver.read(driver.scope_of(change))
    assert (await driver.read(snapshot.scope)) == snapshot and driver.parse_cache.hits >= 1
    other = CliDriver(endpoint=endpoint(lab), profile=profile())
    await other.open()
    try:
        await other.load(change)
    finally:
        await other.close()
    changed = await driver.read(snapshot.scope)
    assert changed != snapshot and line in changed.content
    assert (await driver.verify(change, snapshot)).ok
    await driver.restore(snapshot)  # generated undo from the current text, not from a cached tree
    assert (await driver.read(snapshot.scope)) == snapshot
    assert await independent_running(lab) == snapshot.content
