"""The ``agw`` client commands against a real grpc.aio server (port 0, own thread) backed by the
real engine over the scripted device network (tests/scripted_gateway.py); ``agw drivers`` against
real entry points; ``agw serve`` as a process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from drivers import registry as reg
from drivers.base import Capabilities, Driver, PayloadFormat
from drivers.errors import DeviceErrorInfo, DeviceRejectedError
from gateway.api.server import start_server, stop_server
from gateway.cli import main
from gateway.engine import Engine
from tests import scripted_gateway as scripted
from tests.scripted_gateway import EDGE_DEVICES, INITIAL, FacadeCalls, cut_overrun_grace

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "activations"


class Gateway:
    """The real engine (its own event loop, in a thread of its own) served by the real grpc.aio
    server; the test drives it with the ``agw`` commands, as another process would."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.scripted = scripted.Gateway.create(directory, devices=EDGE_DEVICES)
        self.net = self.scripted.net
        self.engine: Engine = self.call(self.scripted.engine())  # its asyncio objects belong to this loop
        self.calls = FacadeCalls(self.engine)
        self.server, self.port = self.call(start_server(self.engine, listen="127.0.0.1:0"))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        try:
            self.call(stop_server(self.server, grace_s=0.2))
            self.call(self.scripted.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    def agw(self, *args: str) -> Any:
        result = CliRunner().invoke(main, [*args, "--server", f"127.0.0.1:{self.port}"], catch_exceptions=False)
        return result

    def activate(self, example: str = "interface-netconf.yaml", *args: str) -> str:
        """Submit an example activation file; its activation id."""
        r = self.agw("activate", str(EXAMPLES / example), *args, "--json")
        assert r.exit_code == 0, r.output
        return str(json.loads(r.stdout)["activation_id"])

    def outcome(self, activation_id: str) -> dict[str, Any]:
        """``agw get --wait``: the activation once it ended (final, or fallout)."""
        r = self.agw("get", activation_id, "--wait", "10", "--json")
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    cut_overrun_grace(monkeypatch)
    g = Gateway(tmp_path)
    try:
        yield g
    finally:
        g.close()


def rejected(message: str = "bad value") -> DeviceRejectedError:
    return DeviceRejectedError(message, info=DeviceErrorInfo(message, tag="invalid-value", path="/if:interfaces"))


def test_activate_watch_shows_progress_and_exits_0_when_completed(gw: Gateway) -> None:
    r = gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--watch")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("activation ")
    aid = lines[0].removeprefix("activation ")
    progress = [line.split()[1:5] for line in lines if len(line.split()) >= 5]
    for phase in ("connect", "push", "commit", "verify"):
        assert ["if-eth10", "nc1", phase, "inProgress"] in progress, phase
    assert any(line.split()[1:5] == ["if-eth10", "nc1", "verify", "inProgress"] and line.endswith("  verified")
               for line in lines)
    assert f"activation {aid}: completed (atomic; request example-interface-netconf-1, order ORD-1001)" in r.stdout
    assert any(line.split()[:5] == ["if-eth10", "nc1", "interface", "create", "completed"] for line in lines)
    sent = gw.calls.last("submit").args[0]
    assert sent.tasks[0].parameters["ipv4"] == {"address": "192.0.2.1", "prefix_length": 24}
    assert gw.net.config("nc1")["if.eth10.ipv4"] == "192.0.2.1/24"  # the file's parameters, on the device


def test_activate_is_idempotent_and_request_id_overrides(gw: Gateway) -> None:
    f = str(EXAMPLES / "interface-netconf.yaml")
    aid, how = gw.agw("activate", f).stdout.strip().split(" ", 1)
    assert how == "(accepted)"
    again = gw.agw("activate", f, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout) == {"activation_id": aid, "created": False}
    other = json.loads(gw.agw("activate", f, "--request-id", "second", "--json").stdout)
    assert other["created"] is True and other["activation_id"] != aid
    listed = json.loads(gw.agw("list", "--json").stdout)
    assert sorted((a["id"], a["request_id"]) for a in listed) == sorted(
        [(aid, "example-interface-netconf-1"), (other["activation_id"], "second")])


def test_a_failed_atomic_activation_exits_1_and_shows_the_device_error(gw: Gateway) -> None:
    gw.net.fail("r1", "load", rejected())
    r = gw.agw("activate", str(EXAMPLES / "multi-device-netconf.yaml"), "--watch")
    assert r.exit_code == 1, r.output
    assert ": rolledBack (atomic;" in r.stdout
    assert "DeviceRejectedError: invalid-value: /if:interfaces: bad value" in r.stdout
    aid = r.stdout.splitlines()[0].removeprefix("activation ")
    got = json.loads(gw.agw("get", aid, "--json").stdout)
    assert got["tasks"][2]["depends_on"] == ["nc1-if"]
    assert gw.net.config("nc1") == gw.net.config("r1") == INITIAL


def test_activate_watch_json_is_one_object_per_line(gw: Gateway) -> None:
    r = gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--watch", "--json")
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert all("event" in o for o in objs[:-1]) and objs[-1]["activation"]["state"] == "completed"
    assert [o["event"]["seq"] for o in objs[:-1]] == list(range(1, len(objs)))


def test_dry_run(gw: Gateway) -> None:
    r = gw.agw("activate", str(EXAMPLES / "multi-device-netconf.yaml"), "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["dry_run"] is True and data["state"] == "completed"
    diffs = {t["id"]: t["diff"] for t in data["tasks"]}
    assert "+if.eth20.description = site B link to r1 (ORD-1002)" in diffs["nc1-if"]
    assert "+if.eth20.ipv4 = 192.0.2.10/30" in diffs["r1-if"]
    assert "+sys.contact = noc@example.net" in diffs["nc1-system"]
    assert "submit" not in gw.calls.names() and json.loads(gw.agw("list", "--json").stdout) == []
    assert gw.net.config("nc1") == gw.net.config("r1") == INITIAL  # read, never changed
    human = gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--dry-run")
    assert "diff:" in human.stdout and "+if.eth10.description = customer A uplink (ORD-1001)" in human.stdout


def test_bad_files_are_refused_before_any_call(gw: Gateway, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("request_id: x\ntasks: [\n")
    r = gw.agw("activate", str(broken))
    assert r.exit_code == 2 and f"error: {broken}: line" in r.stderr and "YAML error" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "order_ref: 5\natomic: maybe\ncolour: red\ntasks:\n"
        "  - {id: a, service: interface, action: explode, parameters: {when: 2024-01-01, n: 99999999999999999999}}\n"
        "  - {id: b, device: nc1, service: interface, action: create, depends_on: [{x: 1}]}\n"
    )
    r = gw.agw("activate", str(bad))
    assert r.exit_code == 2
    for text in ("request_id: required", "atomic: must be true or false", "colour: unknown field",
                 "tasks[0].device: required", "tasks[0].action: must be create, modify or delete, not 'explode'",
                 "tasks[0].parameters.when: YAML read a date here", "tasks[0].parameters.n: integer too large",
                 "tasks[1].depends_on: must be a list of task ids"):
        assert f"error: {bad}: {text}" in r.stderr, text
    missing = gw.agw("activate", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    assert gw.calls.names() == []


def test_server_side_errors_are_shown_with_their_code(gw: Gateway, tmp_path: Path) -> None:
    f = tmp_path / "unknown.yaml"
    f.write_text("request_id: u\ntasks:\n  - {id: a, device: zz, service: interface, action: create}\n"
                 "  - {id: a, device: nc1, service: interface, action: delete}\n")
    r = gw.agw("activate", str(f))
    assert r.exit_code == 2
    assert r.stderr.startswith("error: INVALID_ARGUMENT: invalid request: ")
    assert "tasks[1].id: duplicate of tasks[0].id 'a'" in r.stderr  # the edge's answer
    f.write_text("request_id: u\ntasks:\n  - {id: a, device: zz, service: interface, action: create,"
                 " parameters: {name: eth1}}\n")
    r = gw.agw("activate", str(f))
    assert r.exit_code == 2 and r.stderr.strip() == (
        "error: INVALID_ARGUMENT: invalid request: tasks[0].device: unknown device 'zz'")  # the engine's
    r = gw.agw("get", "act-404")
    assert r.exit_code == 2 and r.stderr.strip() == "error: NOT_FOUND: [phase journal] activation act-404 not found"
    down = CliRunner().invoke(main, ["list", "--server", "127.0.0.1:1", "--timeout", "2"])
    assert down.exit_code == 2 and down.stderr.startswith("error: UNAVAILABLE: ")


def test_get_list_watch_cancel_rollback(gw: Gateway) -> None:
    r = gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--watch")
    assert r.exit_code == 0, r.output
    aid = r.stdout.splitlines()[0].removeprefix("activation ")
    got = json.loads(gw.agw("get", aid, "--json").stdout)
    assert got["state"] == "completed" and got["tasks"][0]["verification"] == {
        "ok": True, "checked": 4, "mismatches": [], "detail": ""}  # description, enabled, type, ipv4
    human = gw.agw("get", aid).stdout
    assert "verification: ok (4 checked)" in human and "rendered:" in human
    assert "      if.eth10.ipv4 = 192.0.2.1/24" in human.splitlines()  # rendered, one line each
    timings = next(line for line in human.splitlines() if line.startswith("  timings: "))
    assert [part.split()[0] for part in timings.removeprefix("  timings: ").split(", ")] == [
        "connect", "lock", "snapshot", "push", "validate", "commit", "verify", "confirm"]
    listed = json.loads(gw.agw("list", "--state", "completed", "--device", "nc1", "--json").stdout)
    assert [a["id"] for a in listed] == [aid]
    assert json.loads(gw.agw("list", "--state", "fallout", "--json").stdout) == []
    table = gw.agw("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "STATE", "CREATED"] and table[1].split()[:2] == [aid, "completed"]
    replay = gw.agw("watch", aid)
    assert replay.exit_code == 0 and f"activation {aid}: completed" in replay.stdout
    cancel = gw.agw("cancel", aid)
    assert cancel.exit_code == 2 and "FAILED_PRECONDITION" in cancel.stderr
    rb = gw.agw("rollback", aid)  # runs in the gateway: answered at once
    assert rb.exit_code == 0 and rb.stdout.startswith(f"activation {aid}: ")
    assert gw.outcome(aid)["state"] == "rolledBack"
    assert gw.net.config("nc1") == INITIAL
    again = gw.agw("watch", aid)
    assert again.exit_code == 1 and f"activation {aid}: rolledBack" in again.stdout  # rolled back: not completed


def test_get_shows_what_the_gateway_emulated(gw: Gateway, tmp_path: Path) -> None:
    native = gw.activate()  # nc1: NETCONF-like, all native but the diff (the scripted driver computes none)
    assert gw.outcome(native)["state"] == "completed"
    assert "  emulated: gateway-computed diff (from the snapshot and the read-back)" in gw.agw(
        "get", native).stdout.splitlines()
    on_c1 = tmp_path / "c1.yaml"  # a CLI-like device lacks everything: one line names it all
    on_c1.write_text("request_id: on-c1\ntasks:\n"
                     "  - {id: a, device: c1, service: interface, action: create, parameters: {name: eth1}}\n")
    c1 = json.loads(gw.agw("activate", str(on_c1), "--json").stdout)["activation_id"]
    emulated = gw.outcome(c1)["tasks"][0]["emulated"]
    assert len(emulated) == 6 and "snapshot-and-restore instead of native rollback" in emulated
    shown = [line for line in gw.agw("get", c1).stdout.splitlines() if line.startswith("  emulated: ")]
    assert shown == ["  emulated: " + "; ".join(emulated)]


def test_fallout_commands(gw: Gateway) -> None:
    # r1's change fails its verification and its confirmed commit cannot be cancelled: fallout
    gw.net.mismatch("r1")
    gw.net.fail("r1", "cancel_commit", DeviceRejectedError("cancel-commit refused"), times=None)
    r = gw.agw("activate", str(EXAMPLES / "multi-device-netconf.yaml"), "--watch")
    assert r.exit_code == 1 and "needs a person: see `agw fallout list`" in r.stdout
    aid = r.stdout.splitlines()[0].removeprefix("activation ")
    items = json.loads(gw.agw("fallout", "list", "--json").stdout)
    assert [(i["activation_id"], i["task"]["id"]) for i in items] == [(aid, "r1-if")]
    assert "cancel-commit refused" in items[0]["task"]["rollback"]["reason"]
    table = gw.agw("fallout", "list").stdout.splitlines()
    assert table[1].split()[:5] == [aid, "r1-if", "r1", "interface", "create"]
    assert "VerificationError: read-back is not the snapshot with the change applied" in table[1]  # why it fell out
    assert gw.agw("fallout", "resolve", aid, "r1-if").exit_code == 2  # --note is required
    nothing = gw.agw("fallout", "force-rollback", aid, "nc1-if")
    assert nothing.exit_code == 2 and nothing.stderr.startswith("error: FAILED_PRECONDITION: ")
    done = json.loads(gw.agw("fallout", "resolve", aid, "r1-if", "--note", "restored by hand", "--json").stdout)
    assert done["state"] == "rolledBack" and done["tasks"][1]["note"] == "resolved: restored by hand"
    assert gw.calls.last("resolve").args == (aid, "r1-if", "restored by hand")
    assert json.loads(gw.agw("fallout", "list", "--json").stdout) == []
    assert gw.agw("fallout", "retry", aid).stderr.startswith("error: FAILED_PRECONDITION")


# -- drivers ---------------------------------------------------------------------------------
class GoodDriver(Driver):  # a real Driver subclass, found through a real entry point below
    name = "good"
    payload_format = PayloadFormat.LINES
    supported = Capabilities(lock=True, candidate=True, diff=True)


def test_drivers_lists_capabilities_and_unavailable_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "agw_test_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: agw-test-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[agw.test_drivers]\n"
        f"good = {__name__}:GoodDriver\n"
        "broken = agw_no_such_module_xyz.driver:Driver\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(reg, "drivers", reg.Registry("agw.test_drivers", Driver))
    r = CliRunner().invoke(main, ["drivers", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["good"]["available"] and rows["good"]["capabilities"] == ["lock", "candidate", "diff"]
    assert rows["good"]["distribution"] == "agw-test-plugins"
    assert not rows["broken"]["available"] and "agw_no_such_module_xyz" in rows["broken"]["reason"]
    human = CliRunner().invoke(main, ["drivers"]).stdout
    assert "lock, candidate, diff" in human and "unavailable: " in human


def test_drivers_lists_the_built_in_entry_points() -> None:
    r = CliRunner().invoke(main, ["drivers", "--json"])
    names = {row["name"] for row in json.loads(r.stdout)}
    assert "netconf" in names


# -- serve -----------------------------------------------------------------------------------
def test_serve_answers_then_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "AGW_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from gateway.cli import main; main()", "serve", "--listen", "127.0.0.1:0"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        port = None
        lines: list[str] = []
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("agw: listening on"):
                port = int(line.rsplit("port ", 1)[1].rstrip(")\n"))
                break
        assert port, "".join(lines)
        r = CliRunner().invoke(main, ["list", "--json", "--server", f"127.0.0.1:{port}"])
        assert r.exit_code == 0 and json.loads(r.stdout) == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert (tmp_path / "data").is_dir()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_get_wait_returns_the_outcome_and_bad_waits_are_refused(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch, 10.0)  # the held push stays within its time limit
    held = scripted.gate(gw.net, "nc1", "load")
    aid, how = gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml")).stdout.strip().split(" ", 1)
    assert how == "(accepted)"
    gw.call(asyncio.wait_for(held.reached.wait(), 5))
    assert json.loads(gw.agw("get", aid, "--json").stdout)["state"] == "inProgress"  # no wait: as it is now
    gw.loop.call_soon_threadsafe(gw.loop.call_later, 0.3, held.release.set)
    got = json.loads(gw.agw("get", aid, "--wait", "10", "--json").stdout)
    assert got["state"] == "completed"
    assert gw.calls.last("get").kwargs["wait_s"] == 10.0
    too_long = gw.agw("get", aid, "--wait", "301")
    assert too_long.exit_code == 2 and "--wait" in too_long.output
