"""``agw get`` shows who submitted and the audit trail, ``agw list`` / ``agw fallout list`` page,
and text from the journal or a device is printed with its control characters visible. Every
activation is the real engine's (tests/scripted_gateway.py): callers with identities and texts
the edge would refuse are given to the engine directly, as another front end of it could."""

from __future__ import annotations

import json

from drivers.errors import DeviceRejectedError
from gateway.model import Caller
from tests.scripted_gateway import kv, request
from tests.unit.test_cli_client import EXAMPLES, Gateway, gw  # noqa: F401 - fixture

EVIL = "fixed\x1b[2J\x1b]0;pwned\x07\r\nerror: forged line\u202e"
SHOWN = "fixed\\x1b[2J\\x1b]0;pwned\\x07\\x0d\\x0aerror: forged line\\u202e"
DEVICE_TEXT = "up\x1b[2J\x1b]0;pwned\x07\u202e"
"""What a device holds (no line break: the scripted device's configuration is lines)."""
ORCHESTRATOR = Caller(identity="spiffe://agw.local/orchestrator")
OPERATOR = Caller(identity="spiffe://agw.local/operator")


def _activate(gw: Gateway, n: int) -> list[str]:  # noqa: F811
    """``n`` activations of the interface example, one after the other, each completed."""
    ids = []
    for i in range(n):
        aid = gw.activate("interface-netconf.yaml", "--request-id", f"req-{i}")
        assert gw.outcome(aid)["state"] == "completed"
        ids.append(aid)
    return ids


def _fallout(gw: Gateway, n: int) -> list[str]:  # noqa: F811
    """``n`` activations of the multi-device example whose r1 task falls out: its verification
    fails and its confirmed commit cannot be cancelled (then r1's own timer reverts it)."""
    gw.net.mismatch("r1", times=None)
    gw.net.fail("r1", "cancel_commit", DeviceRejectedError("cancel-commit refused"), times=None)
    ids = []
    for i in range(n):
        aid = gw.activate("multi-device-netconf.yaml", "--request-id", f"fallout-{i}")
        assert gw.outcome(aid)["state"] == "fallout"
        assert gw.net.expire_timers("r1") == 1
        ids.append(aid)
    return ids


def test_get_shows_the_submitter_and_the_audit_trail_with_control_characters_escaped(gw: Gateway) -> None:  # noqa: F811
    # someone edits c1 while the change is verified (the diff shows the device's text), and the
    # device refuses the restore with a message of its own: fallout, resolved by an operator
    gw.net.drift("c1", {"if.ge2": DEVICE_TEXT}, at="verify")
    gw.net.fail("c1", "restore", DeviceRejectedError(EVIL), times=None)
    submitted = gw.call(gw.engine.submit(request(kv("a", "c1", "if.ge1", "up"), request_id="evil"),
                                         caller=ORCHESTRATOR))
    aid = submitted.activation_id
    assert gw.outcome(aid)["state"] == "fallout"
    gw.call(gw.engine.resolve(aid, "a", EVIL, caller=OPERATOR))
    out = gw.agw("get", aid).stdout
    assert "submitted by spiffe://agw.local/orchestrator" in out
    lines = out.splitlines()
    start = lines.index("audit trail:")
    assert lines[start + 1].split() == ["TIME", "ACTOR", "ACTION", "TASK", "NOTE"]
    submit, resolve = lines[start + 2], lines[start + 3]
    assert "spiffe://agw.local/orchestrator  submit" in submit and submit.endswith("activation acknowledged")
    assert "spiffe://agw.local/operator" in resolve and "resolve  a" in resolve
    assert resolve.endswith(f"resolved by an operator: {SHOWN}")
    assert f"  note: resolved: {SHOWN}" in lines
    assert any(line.startswith("  rollback: ") and line.endswith(SHOWN) for line in lines)  # the device's message
    assert "      +if.ge2 = up\\x1b[2J\\x1b]0;pwned\\x07\\u202e" in lines  # multi-line text keeps its lines
    assert not any(c in out for c in "\x1b\x07\r\u202e")
    assert not any(line.startswith("error: forged") for line in lines)
    got = json.loads(gw.agw("get", aid, "--json").stdout)
    assert got["submitted_by"] == "spiffe://agw.local/orchestrator"
    assert [(e["actor"], e["action"], e["task_id"], e["note"]) for e in got["audit"]][1] == (
        "spiffe://agw.local/operator", "resolve", "a", f"resolved by an operator: {EVIL}")  # JSON: exact
    anonymous = gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--request-id", "anon").stdout.split()[0]
    assert "submitted by anonymous" in gw.agw("get", anonymous).stdout


def test_list_shows_the_submitter_and_pages(gw: Gateway) -> None:  # noqa: F811
    first = gw.call(gw.engine.submit(request(kv("a", "c2", "sys.name", "edge"), request_id="orch", order_ref=EVIL),
                                     caller=ORCHESTRATOR)).activation_id
    assert gw.outcome(first)["state"] == "completed"
    ids = [first, *_activate(gw, 4)]
    r = gw.agw("list", "--page-size", "2")
    table = r.stdout.splitlines()
    assert table[0].split()[:7] == ["ID", "STATE", "CREATED", "TASKS", "DEVICES", "SUBMITTED", "BY"]
    assert [line.split()[0] for line in table[1:]] == [ids[4], ids[3]] and "-" in table[1].split()
    token = r.stderr.strip().removeprefix("more: --page-token ")
    assert r.stderr.startswith("more: --page-token ") and token
    rest = gw.agw("list", "--page-size", "2", "--page-token", token)
    assert [line.split()[0] for line in rest.stdout.splitlines()[1:]] == [ids[2], ids[1]]
    every = gw.agw("list", "--page-size", "2", "--all")
    assert [line.split()[0] for line in every.stdout.splitlines()[1:]] == ids[::-1] and every.stderr == ""
    last = every.stdout.splitlines()[-1]
    assert "spiffe://agw.local/orchestrator" in last and "\\x1b[2J" in last and "\x1b" not in every.stdout
    listed = json.loads(gw.agw("list", "--all", "--page-size", "1", "--json").stdout)
    assert [a["id"] for a in listed] == ids[::-1] and listed[-1]["order_ref"] == EVIL
    wrong = gw.agw("list", "--device", "nc1", "--page-token", token)
    assert wrong.exit_code == 2 and "INVALID_ARGUMENT" in wrong.stderr
    assert "page_token: was issued for other filters" in wrong.stderr
    assert gw.agw("list", "--limit", "1").stdout.count("\n") == 2  # the old option still works
    on_nc1 = json.loads(gw.agw("list", "--device", "nc1", "--all", "--page-size", "3", "--json").stdout)
    assert [a["id"] for a in on_nc1] == ids[:0:-1]  # the first was on c2


def test_fallout_list_pages(gw: Gateway) -> None:  # noqa: F811
    ids = _fallout(gw, 3)
    r = gw.agw("fallout", "list", "--page-size", "2", "--json")
    items = json.loads(r.stdout)
    assert [(i["activation_id"], i["task"]["id"]) for i in items] == [(ids[0], "r1-if"), (ids[1], "r1-if")]
    assert r.stderr.startswith("more: ")
    token = r.stderr.strip().split()[-1]
    rest = gw.agw("fallout", "list", "--page-size", "2", "--page-token", token)
    assert [line.split()[0] for line in rest.stdout.splitlines()[1:]] == ids[2:] and rest.stderr == ""
    assert len(json.loads(gw.agw("fallout", "list", "--page-size", "1", "--all", "--json").stdout)) == 3
