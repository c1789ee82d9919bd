"""SSH host-key checking against the lab's real sshd: the NETCONF (asyncssh) and CLI (scrapli
2.x, libssh2) drivers connect with the lab's known_hosts, and refuse an unknown or a changed key
with a non-retryable HostKeyError *before authentication* — proven from the device's own sshd
log (LogLevel VERBOSE: a refused connection shows no "Accepted"/"Failed" line) — and an
activation through the gateway to a re-keyed device ends without touching it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import asyncssh
import pytest
from click.testing import CliRunner

from drivers.base import Driver, Endpoint, Timeouts
from drivers.cli import CliDriver
from drivers.netconf import NetconfDriver
from gateway.app import REPO_ROOT
from gateway.errors import HostKeyError
from gateway.inventory import Inventory, ProfileStore
from gateway.model import TaskState
from gateway.results import ActivationState
from gateway.secrets import Credential, Secret
from tests.integration.gateway_harness import InProcessGateway, interface_xml

pytestmark = [pytest.mark.lab]

PROFILES = ProfileStore.load(REPO_ROOT / "device_profiles")
DRIVERS = {"netconf": (NetconfDriver, "netconfd"), "cli": (CliDriver, "frr")}
NODES = {"netconf": "nc1", "cli": "cli1"}
_PORT = re.compile(r" port (\d+)")
_ENDED = ("Connection closed by", "Disconnected from", "Received disconnect from", "Connection reset by")
_AUTH = ("Accepted ", "Failed ", "Postponed ", "Invalid user", "authentication")


def make_driver(node: Any, proto: str, *, known_hosts: str | None = None) -> Driver:
    cls, platform = DRIVERS[proto]
    profile = dataclasses.replace(PROFILES.get(platform), timeouts=Timeouts(connect_s=8, operation_s=8, commit_s=10))
    cred = node.credentials[proto]
    endpoint = Endpoint(device=node.name, host=node.address, port=node.ports[proto], platform=platform,
                        credential=Credential(ref=f"lab:{node.name}", username=cred["username"],
                                              password=Secret(cred["password"])),
                        known_hosts=str(node.known_hosts) if known_hosts is None else known_hosts)
    return cls(endpoint=endpoint, profile=profile)


def fingerprint_of(node: Any) -> str:
    """The fingerprint of the key the node's sshd has now (from its public key file)."""
    key = asyncssh.read_public_key(str(node.host_key) + ".pub")
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"


class SshdLog:
    """What the node's sshd logged since this object was made, per client connection (port)."""

    def __init__(self, node: Any) -> None:
        self.path = Path(node.logs["sshd"])
        self.offset = self.path.stat().st_size

    def connections(self, *, settle_s: float = 5.0) -> dict[int, list[str]]:
        """Lines per client port, once every connection seen has ended (sshd logs the end of a
        connection asynchronously) or ``settle_s`` has passed."""
        deadline = time.monotonic() + settle_s
        while True:
            with self.path.open() as fh:
                fh.seek(self.offset)
                lines = fh.read().splitlines()
            by_port: dict[int, list[str]] = {}
            for line in lines:
                m = _PORT.search(line)
                if m:
                    by_port.setdefault(int(m.group(1)), []).append(line)
            ended = all(any(line.startswith(_ENDED) for line in ls) for ls in by_port.values())
            if (by_port and ended) or time.monotonic() > deadline:
                return by_port
            time.sleep(0.05)

    def assert_refused_before_authentication(self) -> None:
        conns = self.connections()
        assert conns, f"sshd logged no connection in {self.path}"
        for port, lines in conns.items():
            text = "\n".join(lines)
            assert not any(word in text for word in _AUTH), f"an authentication attempt on port {port}:\n{text}"
            assert "[preauth]" in text, f"connection {port} did not end before authentication:\n{text}"


@contextlib.contextmanager
def rekeyed(lab: Any, node: str) -> Iterator[None]:
    """``node`` with a new host key (the lab's known_hosts still holds the old one); the original
    key is back (and sshd restarted) afterwards, whatever happened."""
    lab.fault(node, "rekey")
    try:
        yield
    finally:
        lab.fault(node, "restore")


async def open_and_close(drv: Driver) -> None:
    try:
        await drv.open()
        assert drv.is_open
    finally:
        await drv.close()


# -- the lab's known_hosts ------------------------------------------------------------------------
@pytest.mark.parametrize("proto", ["netconf", "cli"])
async def test_drivers_connect_checking_the_lab_known_hosts(lab: Any, proto: str) -> None:
    for name in (NODES[proto], "r1"):
        node = lab.node(name)
        assert node.known_hosts == lab.known_hosts_path and node.known_hosts.is_file()
        await open_and_close(make_driver(node, proto))


def test_lab_inventory_names_the_known_hosts_file(lab: Any, tmp_path: Path) -> None:
    from lab.cli import lab as lab_cli

    result = CliRunner().invoke(lab_cli, ["inventory", "--lab", lab.name])
    assert result.exit_code == 0, result.output
    path = tmp_path / "inventory.yaml"
    path.write_text(result.output)
    inv = Inventory.load(path)  # what `agw serve --inventory` reads
    assert {d.known_hosts for d in inv.devices.values()} == {str(lab.known_hosts_path)}
    assert inv.unchecked_host_keys() == []
    text = lab.known_hosts_path.read_text()
    for node in lab.nodes.values():
        key = " ".join((Path(str(node.host_key) + ".pub").read_text().split()[:2])) if node.host_key else ""
        for proto in ("netconf", "cli"):
            if proto in node.ports:
                assert f"[{node.address}]:{node.ports[proto]} {key}" in text
    keys = {Path(str(n.host_key) + ".pub").read_text().split()[1] for n in lab.nodes.values() if n.host_key}
    assert len(keys) == sum(1 for n in lab.nodes.values() if n.host_key)  # one key per node


# -- unknown and changed keys ----------------------------------------------------------------------
@pytest.mark.parametrize("proto", ["netconf", "cli"])
async def test_unknown_key_is_refused_before_authentication(lab: Any, proto: str, tmp_path: Path) -> None:
    node = lab.node(NODES[proto])
    empty = tmp_path / "known_hosts"
    empty.write_text("# nothing known\n")
    log = SshdLog(node)
    drv = make_driver(node, proto, known_hosts=str(empty))
    with pytest.raises(HostKeyError) as ei:
        await open_and_close(drv)
    err = ei.value
    assert err.problem == HostKeyError.UNKNOWN and not err.retryable and err.device == node.name
    assert err.fingerprint == fingerprint_of(node) and err.known_hosts == str(empty)
    assert "unknown host key" in err.message and f"{node.address}:{node.ports[proto]}" in err.message
    assert not drv.is_open
    await asyncio.to_thread(log.assert_refused_before_authentication)


@pytest.mark.parametrize("proto", ["netconf", "cli"])
async def test_changed_key_is_refused_before_authentication(lab: Any, proto: str) -> None:
    node = lab.node(NODES[proto])
    old = fingerprint_of(node)
    with rekeyed(lab, node.name):
        new = fingerprint_of(node)
        assert new != old
        log = SshdLog(node)  # after the rekey's own readiness probe
        with pytest.raises(HostKeyError) as ei:
            await open_and_close(make_driver(node, proto))
        err = ei.value
        assert err.problem == HostKeyError.CHANGED and not err.retryable and err.phase.value == "connect"
        assert err.fingerprint == new and err.known_hosts == str(lab.known_hosts_path)
        assert "host key changed" in err.message and f"{node.address}:{node.ports[proto]}" in err.message
        await asyncio.to_thread(log.assert_refused_before_authentication)
    assert fingerprint_of(node) == old
    await open_and_close(make_driver(node, proto))  # the original key is back


@pytest.mark.parametrize("proto", ["netconf", "cli"])
async def test_a_known_key_of_another_type_is_a_changed_key(lab: Any, proto: str, tmp_path: Path) -> None:
    """known_hosts holds an RSA key, the device now has only an ed25519 one: asyncssh offers only
    the known type (sshd drops the connection), libssh2 says "not found"; both are a changed key."""
    node = lab.node(NODES[proto])
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048).export_public_key().decode().split()[:2]
    port = node.ports[proto]
    entry = node.address if port == 22 else f"[{node.address}]:{port}"
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{entry} {' '.join(rsa)}\n")
    log = SshdLog(node)
    with pytest.raises(HostKeyError) as ei:
        await open_and_close(make_driver(node, proto, known_hosts=str(kh)))
    assert ei.value.problem == HostKeyError.CHANGED and ei.value.fingerprint == fingerprint_of(node)
    assert not ei.value.retryable
    await asyncio.to_thread(log.assert_refused_before_authentication)


async def test_rewritten_known_hosts_accepts_a_new_key(lab: Any) -> None:
    node = lab.node("r1")  # one sshd for NETCONF and CLI: both endpoints change key together
    try:
        with rekeyed(lab, "r1"):
            lab.write_known_hosts()  # what `agw lab inventory` does
            await open_and_close(make_driver(node, "netconf"))
            await open_and_close(make_driver(node, "cli"))
    finally:
        lab.write_known_hosts()  # the original key again
    await open_and_close(make_driver(node, "netconf"))


# -- through the gateway -----------------------------------------------------------------------------
async def test_activation_to_a_rekeyed_device_fails_without_touching_it(lab: Any, tmp_path: Path) -> None:
    nc1, name = lab.node("nc1"), f"agw{uuid.uuid4().hex[:8]}"
    gateway = InProcessGateway(data_dir=tmp_path / "data", inventory=lab.inventory_path,
                               profiles=REPO_ROOT / "device_profiles")
    client = await gateway.start()
    try:
        with rekeyed(lab, "nc1"):
            log = SshdLog(nc1)
            aid = await client.submit([{"id": "t1", "device": "nc1", "service": "interface", "action": "create",
                                        "parameters": {"name": name, "description": "never pushed"}}],
                                      request_id=f"test-{uuid.uuid4()}")
            result = await client.outcome(aid, timeout_s=60)
            await asyncio.to_thread(log.assert_refused_before_authentication)
        task = result.tasks[0]
        assert result.state == ActivationState.FAILED and task.state == TaskState.FAILED, result
        assert task.error is not None and task.error.kind == "HostKeyError" and not task.error.retryable
        assert task.error.phase == "connect" and "host key changed" in task.error.message
        assert task.rollback is None or task.rollback.method in ("", "none")
    finally:
        await gateway.stop()
    assert name not in await asyncio.to_thread(interface_xml, nc1, name)
