"""The ``agw`` client commands against a real grpc.aio server (port 0, own thread) backed by the
in-memory engine double; ``agw drivers`` against real entry points; ``agw serve`` as a process."""

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
from gateway.api.server import start_server, stop_server
from gateway.cli import main
from tests.unit.test_api_support import MemoryEngine

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "activations"


class Gateway:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.engine: MemoryEngine = self.call(self._engine())
        self.server, self.port = self.call(start_server(self.engine, listen="127.0.0.1:0"))

    async def _engine(self) -> MemoryEngine:  # the engine's asyncio objects belong to this loop
        return MemoryEngine(auto_run=True)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.call(stop_server(self.server, grace_s=0.2))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def agw(self, *args: str) -> Any:
        result = CliRunner().invoke(main, [*args, "--server", f"127.0.0.1:{self.port}"], catch_exceptions=False)
        return result


@pytest.fixture
def gw() -> Iterator[Gateway]:
    g = Gateway()
    try:
        yield g
    finally:
        g.close()


def test_activate_watch_shows_progress_and_exits_0_when_completed(gw: Gateway) -> None:
    r = gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--watch")
    assert r.exit_code == 0, r.output
    assert "activation act-1" in r.stdout
    lines = r.stdout.splitlines()
    assert any(l.split()[1:5] == ["if-eth10", "nc1", "push", "inProgress"] and l.endswith("pushing") for l in lines)
    assert "activation act-1: completed (atomic; request example-interface-netconf-1, order ORD-1001)" in r.stdout
    assert any(l.split()[:5] == ["if-eth10", "nc1", "interface", "create", "completed"] for l in lines)
    sent = gw.engine.submitted[0]
    assert sent.tasks[0].parameters["ipv4"] == {"address": "192.0.2.1", "prefix_length": 24}


def test_activate_is_idempotent_and_request_id_overrides(gw: Gateway) -> None:
    f = str(EXAMPLES / "interface-netconf.yaml")
    assert gw.agw("activate", f).stdout.strip() == "act-1 (accepted)"
    again = gw.agw("activate", f, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout) == {"activation_id": "act-1", "created": False}
    other = gw.agw("activate", f, "--request-id", "second", "--json")
    assert json.loads(other.stdout) == {"activation_id": "act-2", "created": True}
    assert [r.request_id for r in gw.engine.submitted] == ["example-interface-netconf-1", "second"]


def test_a_failed_atomic_activation_exits_1_and_shows_the_device_error(gw: Gateway) -> None:
    gw.engine.failing_devices = {"r1"}
    r = gw.agw("activate", str(EXAMPLES / "multi-device-netconf.yaml"), "--watch")
    assert r.exit_code == 1, r.output
    assert ": rolledBack (atomic;" in r.stdout
    assert "DeviceRejectedError: invalid-value: /if:interfaces: bad value" in r.stdout
    assert gw.engine.submitted[0].tasks[2].depends_on == ("nc1-if",)


def test_activate_watch_json_is_one_object_per_line(gw: Gateway) -> None:
    r = gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--watch", "--json")
    objs = [json.loads(l) for l in r.stdout.splitlines()]
    assert all("event" in o for o in objs[:-1]) and objs[-1]["activation"]["state"] == "completed"
    assert [o["event"]["seq"] for o in objs[:-1]] == list(range(1, len(objs)))


def test_dry_run(gw: Gateway) -> None:
    r = gw.agw("activate", str(EXAMPLES / "multi-device-netconf.yaml"), "--dry-run", "--json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert data["dry_run"] is True and [t["diff"] for t in data["tasks"]] == ["+ nc1-if", "+ r1-if", "+ nc1-system"]
    assert not gw.engine.submitted
    human = gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--dry-run")
    assert "diff:" in human.stdout and "+ if-eth10" in human.stdout


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
    assert gw.engine.calls == []


def test_server_side_errors_are_shown_with_their_code(gw: Gateway, tmp_path: Path) -> None:
    f = tmp_path / "unknown.yaml"
    f.write_text("request_id: u\ntasks:\n  - {id: a, device: zz, service: interface, action: create}\n"
                 "  - {id: a, device: nc1, service: interface, action: delete}\n")
    r = gw.agw("activate", str(f))
    assert r.exit_code == 2
    assert r.stderr.startswith("error: INVALID_ARGUMENT: invalid request: ")
    assert "tasks[1].id: duplicate of tasks[0].id 'a'" in r.stderr
    r = gw.agw("get", "act-404")
    assert r.exit_code == 2 and r.stderr.strip() == "error: NOT_FOUND: no activation 'act-404'"
    down = CliRunner().invoke(main, ["list", "--server", "127.0.0.1:1", "--timeout", "2"])
    assert down.exit_code == 2 and down.stderr.startswith("error: UNAVAILABLE: ")


def test_get_list_watch_cancel_rollback(gw: Gateway) -> None:
    assert gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--watch").exit_code == 0
    got = json.loads(gw.agw("get", "act-1", "--json").stdout)
    assert got["state"] == "completed" and got["tasks"][0]["verification"] == {
        "ok": True, "checked": 3, "mismatches": [], "detail": ""}
    human = gw.agw("get", "act-1").stdout
    assert "verification: ok (3 checked)" in human and "timings: push 1.5ms" in human and "rendered:" in human
    listed = json.loads(gw.agw("list", "--state", "completed", "--device", "nc1", "--json").stdout)
    assert [a["id"] for a in listed] == ["act-1"]
    assert json.loads(gw.agw("list", "--state", "fallout", "--json").stdout) == []
    table = gw.agw("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "STATE", "CREATED"] and table[1].split()[:2] == ["act-1", "completed"]
    replay = gw.agw("watch", "act-1")
    assert replay.exit_code == 0 and "activation act-1" in replay.stdout
    cancel = gw.agw("cancel", "act-1")
    assert cancel.exit_code == 2 and "FAILED_PRECONDITION" in cancel.stderr
    rb = gw.agw("rollback", "act-1", "--watch")
    assert rb.exit_code == 0 and "activation act-1: rolledBack" in rb.stdout
    assert gw.agw("watch", "act-1").exit_code == 1  # rolled back: not completed


def test_get_shows_what_the_gateway_emulated(gw: Gateway) -> None:
    assert gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--watch").exit_code == 0
    assert "emulated:" not in gw.agw("get", "act-1").stdout  # nothing emulated: no line
    tid = json.loads(gw.agw("get", "act-1", "--json").stdout)["tasks"][0]["id"]
    notes = ("snapshot-and-restore instead of native rollback", "gateway-computed diff", "no timer\x1b[2J")

    async def emulate() -> None:
        gw.engine._update_task("act-1", tid, emulated=notes)

    gw.call(emulate())
    human = gw.agw("get", "act-1").stdout.splitlines()
    assert ("  emulated: snapshot-and-restore instead of native rollback; gateway-computed diff; "
            "no timer\\x1b[2J") in human  # one line, control characters escaped
    assert json.loads(gw.agw("get", "act-1", "--json").stdout)["tasks"][0]["emulated"] == list(notes)


def test_fallout_commands(gw: Gateway) -> None:
    gw.engine.fallout_devices = {"r1"}
    r = gw.agw("activate", str(EXAMPLES / "multi-device-netconf.yaml"), "--watch")
    assert r.exit_code == 1 and "needs a person: see `agw fallout list`" in r.stdout
    items = json.loads(gw.agw("fallout", "list", "--json").stdout)
    assert [(i["activation_id"], i["task"]["id"]) for i in items] == [("act-1", "r1-if")]
    table = gw.agw("fallout", "list").stdout
    assert "rollback not verified: device unreachable" in table
    assert gw.agw("fallout", "resolve", "act-1", "r1-if").exit_code == 2  # --note is required
    nothing = gw.agw("fallout", "force-rollback", "act-1", "nc1-if")
    assert nothing.exit_code == 2 and nothing.stderr.startswith("error: FAILED_PRECONDITION: ")
    done = json.loads(gw.agw("fallout", "resolve", "act-1", "r1-if", "--note", "restored by hand", "--json").stdout)
    assert done["state"] == "rolledBack" and done["tasks"][1]["note"] == "restored by hand"
    assert gw.engine.calls[-1] == ("resolve", ("act-1", "r1-if", "restored by hand"))
    assert json.loads(gw.agw("fallout", "list", "--json").stdout) == []
    assert gw.agw("fallout", "retry", "act-1").stderr.startswith("error: FAILED_PRECONDITION")


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


def test_get_wait_returns_the_outcome_and_bad_waits_are_refused(gw: Gateway) -> None:
    assert gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml")).stdout.strip() == "act-1 (accepted)"
    got = json.loads(gw.agw("get", "act-1", "--wait", "10", "--json").stdout)
    assert got["state"] == "completed"
    assert ("get", ("act-1",)) in gw.engine.calls
    too_long = gw.agw("get", "act-1", "--wait", "301")
    assert too_long.exit_code == 2 and "--wait" in too_long.output
