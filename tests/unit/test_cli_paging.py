"""``agw get`` shows who submitted and the audit trail, ``agw list`` / ``agw fallout list`` page,
and text from the journal or a device is printed with its control characters visible."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

from gateway.results import ActivationResult, AuditEntry, VerificationView
from tests.unit.test_api_support import T0
from tests.unit.test_cli_client import EXAMPLES, Gateway, gw  # noqa: F401 - fixture

EVIL = "fixed\x1b[2J\x1b]0;pwned\x07\r\nerror: forged line\u202e"


def _activate(gw: Gateway, n: int, example: str = "interface-netconf.yaml") -> list[str]:  # noqa: F811
    ids = []
    for i in range(n):
        r = gw.agw("activate", str(EXAMPLES / example), "--request-id", f"req-{i}", "--json")
        ids.append(json.loads(r.stdout)["activation_id"])
    for aid in ids:
        assert json.loads(gw.agw("get", aid, "--wait", "10", "--json").stdout)["state"] in ("completed", "fallout")
    return ids


def _edit(gw: Gateway, aid: str, **changes: object) -> ActivationResult:  # noqa: F811
    a = dataclasses.replace(gw.engine.activations[aid], **changes)  # type: ignore[arg-type]
    gw.engine.activations[aid] = a
    return a


def test_get_shows_the_submitter_and_the_audit_trail_with_control_characters_escaped(gw: Gateway) -> None:  # noqa: F811
    [aid] = _activate(gw, 1)
    a = gw.engine.activations[aid]
    task = dataclasses.replace(a.tasks[0], note=EVIL, rendered="<config>\n  <x>\x1b[31m</x>\n</config>",
                               verification=VerificationView(ok=False, checked=1, mismatches=(EVIL,)))
    _edit(gw, aid, submitted_by="spiffe://agw.local/orchestrator", tasks=(task,), audit=(
        AuditEntry(time=T0, actor="spiffe://agw.local/orchestrator", action="submit", note="activation acknowledged"),
        AuditEntry(time=T0 + timedelta(minutes=5), actor="spiffe://agw.local/operator", action="resolve",
                   task_id=task.id, note=EVIL),
    ))
    out = gw.agw("get", aid).stdout
    assert "submitted by spiffe://agw.local/orchestrator" in out
    lines = out.splitlines()
    start = lines.index("audit trail:")
    assert lines[start + 1].split() == ["TIME", "ACTOR", "ACTION", "TASK", "NOTE"]
    submit, resolve = lines[start + 2], lines[start + 3]
    assert "spiffe://agw.local/orchestrator  submit" in submit and submit.endswith("activation acknowledged")
    assert "spiffe://agw.local/operator" in resolve and f"resolve  {task.id}" in resolve
    shown = "fixed\\x1b[2J\\x1b]0;pwned\\x07\\x0d\\x0aerror: forged line\\u202e"
    assert resolve.endswith(shown) and f"  note: {shown}" in out and f"    - {shown}" in out
    assert "      <x>\\x1b[31m</x>" in out  # multi-line text keeps its lines, escapes the rest
    assert not any(c in out for c in "\x1b\x07\r\u202e")
    assert not any(line.startswith("error: forged") for line in lines)
    got = json.loads(gw.agw("get", aid, "--json").stdout)
    assert got["submitted_by"] == "spiffe://agw.local/orchestrator"
    assert [(e["actor"], e["action"], e["task_id"], e["note"]) for e in got["audit"]][1] == (
        "spiffe://agw.local/operator", "resolve", task.id, EVIL)  # JSON: exact (and escaped by JSON)
    anonymous = gw.agw("activate", str(EXAMPLES / "interface-netconf.yaml"), "--request-id", "anon").stdout.split()[0]
    assert "submitted by anonymous" in gw.agw("get", anonymous).stdout


def test_list_shows_the_submitter_and_pages(gw: Gateway) -> None:  # noqa: F811
    ids = _activate(gw, 5)
    _edit(gw, ids[0], submitted_by="spiffe://agw.local/orchestrator", order_ref=EVIL)
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
    assert [a["id"] for a in listed] == ids[::-1]
    wrong = gw.agw("list", "--device", "nc1", "--page-token", token)
    assert wrong.exit_code == 2 and "INVALID_ARGUMENT" in wrong.stderr
    assert "page_token: was issued for other filters" in wrong.stderr
    assert gw.agw("list", "--limit", "1").stdout.count("\n") == 2  # the old option still works


def test_fallout_list_pages(gw: Gateway) -> None:  # noqa: F811
    gw.engine.fallout_devices = {"r1"}
    ids = _activate(gw, 3, "multi-device-netconf.yaml")
    r = gw.agw("fallout", "list", "--page-size", "2", "--json")
    assert [i["activation_id"] for i in json.loads(r.stdout)] == ids[:2] and r.stderr.startswith("more: ")
    token = r.stderr.strip().split()[-1]
    rest = gw.agw("fallout", "list", "--page-size", "2", "--page-token", token)
    assert [line.split()[0] for line in rest.stdout.splitlines()[1:]] == ids[2:] and rest.stderr == ""
    assert len(json.loads(gw.agw("fallout", "list", "--page-size", "1", "--all", "--json").stdout)) == 3
