"""Service checks against the lab (issue 12): operational state a service waits for after commit
and before confirm, for each driver, through a real gateway.

Each test makes a veth pair in a device's namespace (``ethN`` and its peer ``ethNp``, names the
netconfd SIL reports). ``ethN`` is up, its peer down, so ``ethN``'s operational state is not up
until the test brings the peer up — before the submit (the check passes), never (it fails at its
timeout and the change is rolled back, the observed state in the result), or a few seconds after
the change is seen on the device (the check passes only by polling):

* NETCONF: r1's netconfd (``oper-state: true``) serves ietf-interfaces ``interfaces-state`` of its
  namespace; the ``interface`` service's ``oper_status`` check ``<get>``s it;
* CLI: cli1's FRR, the ``interface`` service's check runs ``show interface NAME json``;
* SNMP: snmp1's snmpd, the ``interface-alias`` service's check walks IF-MIB ifDescr+ifOperStatus.

The device is read back with clients of its own (ncclient, vtysh, snmpget), never the gateway.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import grpc
import pytest

from gateway.model import TaskState
from gateway.results import ActivationResult, ActivationState, TaskResult
from tests.integration.gateway_harness import Client, InProcessGateway, interface_xml, make_profiles, submit_request

pytestmark = [pytest.mark.lab]

LINK_UP_AFTER_S = 2.5
"""How long after the change shows on the device the test brings the link up (polling case)."""
_DETAIL = re.compile(r"check (?P<name>[^;]+?): (?P<state>ok|failed) after (?P<polls>\d+) poll\(s\) in (?P<s>[\d.]+) s")


def rid() -> str:
    return f"chk-{uuid.uuid4()}"


@pytest.fixture(scope="module")
async def gw(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    root = tmp_path_factory.mktemp("checks")
    profiles = make_profiles(root / "profiles", {"netconfd": {"confirm_timeout_s": 90}})
    gateway = InProcessGateway(data_dir=root / "data", inventory=lab.inventory_path, profiles=profiles)
    client = await gateway.start()
    yield client
    await gateway.stop()


# -- links in a device's namespace -----------------------------------------------------------------
def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10).stdout


class Link:
    """``name`` (up) and its veth peer (down until :meth:`up`) in namespace ``ns``."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.name = f"eth{uuid.uuid4().hex[:6]}"
        self.peer = self.name + "p"
        ip("-n", ns, "link", "add", self.name, "type", "veth", "peer", "name", self.peer)
        ip("-n", ns, "link", "set", self.name, "up")
        self.index = json.loads(ip("-n", ns, "-j", "link", "show", self.name))[0]["ifindex"]

    def up(self) -> None:
        ip("-n", self.ns, "link", "set", self.peer, "up")

    def delete(self) -> None:
        subprocess.run(["ip", "-n", self.ns, "link", "del", self.name], capture_output=True, timeout=10)


@pytest.fixture
def link_in() -> Iterator[Callable[[Any], Link]]:
    made: list[Link] = []

    def make(node: Any) -> Link:
        made.append(Link(node.namespace))
        return made[-1]

    yield make
    for link in made:
        link.delete()


def up_once_seen(seen: Callable[[], bool], link: Link, *, within_s: float = 30.0) -> threading.Thread:
    """In the background: wait until ``seen()`` (the change is on the device), then bring the
    link up :data:`LINK_UP_AFTER_S` later."""

    def run() -> None:
        import time

        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if seen():
                time.sleep(LINK_UP_AFTER_S)
                link.up()
                return
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- independent readers ---------------------------------------------------------------------------
def vtysh(node: Any, command: str) -> str:
    frr = Path(node.logs["zebra"]).parent
    return subprocess.run(["ip", "netns", "exec", node.namespace, "vtysh", "--vty_socket", str(frr / "run"),
                           "--config_dir", str(frr), "-c", command],
                          check=True, capture_output=True, text=True, timeout=10).stdout


def snmpget(node: Any, oid: str) -> str:
    creds = node.credentials["snmp"]
    return subprocess.run(["snmpget", "-m", "", "-v2c", "-c", creds["community_ro"], "-Ov", node.address, oid],
                          check=True, capture_output=True, text=True, timeout=10).stdout.strip()


def alias_oid(index: int) -> str:
    return f"1.3.6.1.2.1.31.1.1.1.18.{index}"


async def snmp_link(node: Any, link_in: Callable[[Any], Link]) -> Link:
    """A link snmpd knows: it refreshes its interface table every few seconds, and a SET of the
    ifAlias of an interface it has not seen yet is noCreation."""
    link = link_in(node)
    for _ in range(100):
        if link.name in await asyncio.to_thread(snmpget, node, f"1.3.6.1.2.1.2.2.1.2.{link.index}"):
            return link
        await asyncio.sleep(0.2)
    raise AssertionError(f"snmpd did not list {link.name} (ifIndex {link.index}) within 20 s")


# -- helpers on results ----------------------------------------------------------------------------
def only_task(result: ActivationResult) -> TaskResult:
    assert len(result.tasks) == 1
    return result.tasks[0]


def check_detail(task: TaskResult) -> re.Match[str]:
    assert task.verification is not None, task
    m = _DETAIL.search(task.verification.detail)
    assert m is not None, task.verification.detail
    return m


def check_mismatch(task: TaskResult) -> str:
    assert task.verification is not None, task
    found = [m for m in task.verification.mismatches if m.startswith("check ")]
    assert found, task.verification.mismatches
    return found[0]


async def run(gw: Client, tasks: list[dict[str, Any]], *, atomic: bool = True) -> ActivationResult:
    aid = await gw.submit(tasks, request_id=rid(), atomic=atomic)
    return await gw.outcome(aid, timeout_s=120)


# -- NETCONF: r1's netconfd, interfaces-state ------------------------------------------------------
def nc_task(link: Link, token: str, *, wait_s: int) -> dict[str, Any]:
    return {"id": "t1", "device": "r1", "service": "interface", "action": "create",
            "parameters": {"name": link.name, "description": token, "enabled": True,
                           "oper_status": "up", "oper_wait_s": wait_s}}


async def test_netconf_check_passes_when_the_interface_is_up(gw: Client, lab: Any, link_in: Any) -> None:
    r1 = lab.node("r1")
    link = link_in(r1)
    link.up()
    token = f"chk-{uuid.uuid4().hex[:8]}"
    try:
        result = await run(gw, [nc_task(link, token, wait_s=10)])
        task = only_task(result)
        assert result.state == ActivationState.COMPLETED, task
        assert check_detail(task)["state"] == "ok"
        assert token in await asyncio.to_thread(interface_xml, r1, link.name)
    finally:
        await run(gw, [{"id": "d", "device": "r1", "service": "interface", "action": "delete",
                        "parameters": {"name": link.name}}])


async def test_netconf_check_that_never_holds_rolls_back_at_its_timeout(gw: Client, lab: Any, link_in: Any) -> None:
    r1 = lab.node("r1")
    link = link_in(r1)  # its peer stays down
    token = f"chk-{uuid.uuid4().hex[:8]}"
    result = await run(gw, [nc_task(link, token, wait_s=3)])
    task = only_task(result)
    assert result.state == ActivationState.ROLLED_BACK, task
    assert task.state == TaskState.ROLLED_BACK and task.rollback is not None and task.rollback.ok
    shown = check_mismatch(task)
    assert f"name: {link.name}" in shown and "oper-status: " in shown and "oper-status: up" not in shown, shown
    detail = check_detail(task)
    assert detail["state"] == "failed" and float(detail["s"]) >= 3.0 and int(detail["polls"]) > 1
    assert token not in await asyncio.to_thread(interface_xml, r1, link.name)  # the confirmed commit was cancelled


async def test_netconf_check_waits_for_the_link_to_come_up(gw: Client, lab: Any, link_in: Any) -> None:
    r1 = lab.node("r1")
    link = link_in(r1)
    token = f"chk-{uuid.uuid4().hex[:8]}"
    bring_up = up_once_seen(lambda: token in interface_xml(r1, link.name), link)
    try:
        result = await run(gw, [nc_task(link, token, wait_s=30)])
        bring_up.join(timeout=30)
        task = only_task(result)
        assert result.state == ActivationState.COMPLETED, task
        detail = check_detail(task)
        assert detail["state"] == "ok" and int(detail["polls"]) > 1 and float(detail["s"]) >= LINK_UP_AFTER_S - 0.5
    finally:
        await run(gw, [{"id": "d", "device": "r1", "service": "interface", "action": "delete",
                        "parameters": {"name": link.name}}])


async def test_atomic_activation_rolls_back_every_device_when_a_check_fails(
        gw: Client, lab: Any, link_in: Any) -> None:
    r1, nc2 = lab.node("r1"), lab.node("nc2")
    link = link_in(r1)  # never up
    token = f"chk-{uuid.uuid4().hex[:8]}"
    other = f"ge{uuid.uuid4().hex[:6]}"
    result = await run(gw, [
        {"id": "plain", "device": "nc2", "service": "interface", "action": "create",
         "parameters": {"name": other, "description": token}},
        {**nc_task(link, token, wait_s=2), "id": "checked"},
    ])
    assert result.state == ActivationState.ROLLED_BACK, result
    by_id = {t.id: t for t in result.tasks}
    assert by_id["plain"].state == TaskState.ROLLED_BACK and by_id["checked"].state == TaskState.ROLLED_BACK
    assert check_mismatch(by_id["checked"])
    assert token not in await asyncio.to_thread(interface_xml, nc2, other)
    assert token not in await asyncio.to_thread(interface_xml, r1, link.name)


# -- CLI: cli1's FRR, show interface NAME json -----------------------------------------------------
def cli_task(link: Link, token: str, *, wait_s: int) -> dict[str, Any]:
    return {"id": "t1", "device": "cli1", "service": "interface", "action": "create",
            "parameters": {"name": link.name, "description": token, "oper_status": "up", "oper_wait_s": wait_s}}


async def test_cli_check_passes_when_the_interface_is_up(gw: Client, lab: Any, link_in: Any) -> None:
    cli1 = lab.node("cli1")
    link = link_in(cli1)
    link.up()
    token = f"chk-{uuid.uuid4().hex[:8]}"
    try:
        result = await run(gw, [cli_task(link, token, wait_s=10)])
        task = only_task(result)
        assert result.state == ActivationState.COMPLETED, task
        assert check_detail(task)["state"] == "ok"
    finally:
        await run(gw, [{"id": "d", "device": "cli1", "service": "interface", "action": "delete",
                        "parameters": {"name": link.name}}])


async def test_cli_check_that_never_holds_rolls_back_at_its_timeout(gw: Client, lab: Any, link_in: Any) -> None:
    cli1 = lab.node("cli1")
    link = link_in(cli1)
    token = f"chk-{uuid.uuid4().hex[:8]}"
    result = await run(gw, [cli_task(link, token, wait_s=3)])
    task = only_task(result)
    assert result.state == ActivationState.ROLLED_BACK, task
    assert task.rollback is not None and task.rollback.ok
    shown = check_mismatch(task)
    assert "operationalStatus: down" in shown, shown
    assert float(check_detail(task)["s"]) >= 3.0
    assert token not in await asyncio.to_thread(vtysh, cli1, "show running-config")


async def test_cli_check_waits_for_the_link_to_come_up(gw: Client, lab: Any, link_in: Any) -> None:
    cli1 = lab.node("cli1")
    link = link_in(cli1)
    token = f"chk-{uuid.uuid4().hex[:8]}"
    bring_up = up_once_seen(lambda: token in vtysh(cli1, "show running-config"), link)
    try:
        result = await run(gw, [cli_task(link, token, wait_s=30)])
        bring_up.join(timeout=30)
        task = only_task(result)
        assert result.state == ActivationState.COMPLETED, task
        detail = check_detail(task)
        assert int(detail["polls"]) > 1 and float(detail["s"]) >= LINK_UP_AFTER_S - 0.5
    finally:
        await run(gw, [{"id": "d", "device": "cli1", "service": "interface", "action": "delete",
                        "parameters": {"name": link.name}}])


# -- SNMP: snmp1's snmpd, IF-MIB walk ---------------------------------------------------------------
def snmp_task(link: Link, token: str, *, wait_s: int, action: str = "create") -> dict[str, Any]:
    params: dict[str, Any] = {"if_index": link.index, "alias": token}
    if action != "delete":
        params.update(oper_status="up", oper_wait_s=wait_s)
    return {"id": "t1", "device": "snmp1", "service": "interface-alias", "action": action, "parameters": params}


async def test_snmp_check_passes_when_the_interface_is_up(gw: Client, lab: Any, link_in: Any) -> None:
    snmp1 = lab.node("snmp1")
    link = await snmp_link(snmp1, link_in)
    link.up()
    token = f"chk-{uuid.uuid4().hex[:8]}"
    result = await run(gw, [snmp_task(link, token, wait_s=10)])
    task = only_task(result)
    assert result.state == ActivationState.COMPLETED, task
    assert check_detail(task)["state"] == "ok"
    assert token in await asyncio.to_thread(snmpget, snmp1, alias_oid(link.index))


async def test_snmp_check_that_never_holds_rolls_back_at_its_timeout(gw: Client, lab: Any, link_in: Any) -> None:
    snmp1 = lab.node("snmp1")
    link = await snmp_link(snmp1, link_in)
    token = f"chk-{uuid.uuid4().hex[:8]}"
    result = await run(gw, [snmp_task(link, token, wait_s=3)])
    task = only_task(result)
    assert result.state == ActivationState.ROLLED_BACK, task
    assert task.rollback is not None and task.rollback.ok
    shown = check_mismatch(task)
    # the row of the interface as observed: its ifDescr and an ifOperStatus that is not up (1)
    m = re.search(r"found '\{index: (\d+), descr: ([^,]+), oper: (\d+)\}", shown)  # the nearest row first
    assert m is not None and m.groups()[:2] == (str(link.index), link.name) and m[3] != "1", shown
    assert token not in await asyncio.to_thread(snmpget, snmp1, alias_oid(link.index))


async def test_snmp_check_waits_for_the_link_to_come_up(gw: Client, lab: Any, link_in: Any) -> None:
    snmp1 = lab.node("snmp1")
    link = await snmp_link(snmp1, link_in)
    token = f"chk-{uuid.uuid4().hex[:8]}"
    bring_up = up_once_seen(lambda: token in snmpget(snmp1, alias_oid(link.index)), link)
    result = await run(gw, [snmp_task(link, token, wait_s=30)])
    bring_up.join(timeout=30)
    task = only_task(result)
    assert result.state == ActivationState.COMPLETED, task
    detail = check_detail(task)
    assert int(detail["polls"]) > 1 and float(detail["s"]) >= LINK_UP_AFTER_S - 0.5


# -- refused at plan time ---------------------------------------------------------------------------
async def test_a_check_the_driver_cannot_run_or_that_does_not_fit_is_refused_before_anything_is_sent(
        gw: Client, lab: Any, tmp_path: Path) -> None:
    """A wait too long for the confirmed-commit window (netconfd here: 90 s) is INVALID_ARGUMENT
    naming the service and the check, and nothing reaches the device."""
    r1 = lab.node("r1")
    name = f"eth{uuid.uuid4().hex[:6]}"
    msg = submit_request([{"id": "t1", "device": "r1", "service": "interface", "action": "create",
                           "parameters": {"name": name, "oper_status": "up", "oper_wait_s": 60}}], request_id=rid())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.stub.Submit(msg)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    text = err.value.details() or ""
    assert "service 'interface' checks[0] (oper-status of " in text and "confirmed-commit window" in text, text
    assert name not in await asyncio.to_thread(interface_xml, r1, name)
