"""``agw pools`` and the shipped pooled example, against the real gRPC server and engine in process
(the Gateway of test_cli_client: scripted devices, SQLite journal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.scripted_gateway import cut_overrun_grace
from tests.unit.test_cli_client import EXAMPLES, REPO, Gateway

POOLS = REPO / "examples" / "pools.yaml"


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    cut_overrun_grace(monkeypatch)
    g = Gateway(tmp_path)
    try:
        yield g
    finally:
        g.close()


def test_the_pooled_example_gets_an_address_and_the_pools_commands_show_it(gw: Gateway) -> None:
    made = gw.agw("pools", "create", "--file", str(POOLS))
    assert made.exit_code == 0, made.output
    assert "pool lab-v4: created (ipv4 198.51.100.64/26, 0 in use)" in made.stdout
    assert "pool lab-v4: unchanged" in gw.agw("pools", "create", "--file", str(POOLS)).stdout
    aid = gw.activate("interface-pooled.yaml")
    done = gw.outcome(aid)
    assert done["state"] == "completed", done
    assert done["tasks"][0]["parameters"]["ipv4"] == {"address": "198.51.100.64", "prefix_length": 24}
    assert gw.net.config("nc1")["if.eth40.ipv4"] == "198.51.100.64/24"
    again = gw.agw("activate", str(EXAMPLES / "interface-pooled.yaml"), "--json")
    assert json.loads(again.stdout) == {"activation_id": aid, "created": False}  # same activation, same address
    shown = gw.agw("pools", "show", "lab-v4")
    assert shown.exit_code == 0, shown.output
    assert "pool lab-v4: ipv4 198.51.100.64/26, 1 in use, 63 free (lab interface addresses)" in shown.stdout
    assert any(line.split()[:4] == ["198.51.100.64", aid, "if-eth40", "ipv4.address"] for line in shown.stdout.splitlines())
    listed = json.loads(gw.agw("pools", "list", "--json").stdout)
    assert {p["name"]: (p["allocated"], p["free"]) for p in listed}["lab-v4"] == (1, 63)
    assert [p["name"] for p in listed] == ["access-vlans", "lab-links", "lab-v4", "lab-v6", "vpn-ids"]
    rolled = gw.agw("rollback", aid, "--watch")
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(gw.agw("pools", "show", "lab-v4", "--json").stdout)["allocated"] == 0


def test_pools_commands_report_errors(gw: Gateway) -> None:
    r = gw.agw("pools", "show", "nope")
    assert r.exit_code == 2 and "NOT_FOUND: pool nope does not exist" in r.output
    r = gw.agw("pools", "create", "x", "--kind", "vlan", "--first", "0", "--last", "9")
    assert r.exit_code == 2 and "INVALID_ARGUMENT" in r.output and "1 <= first <= last <= 4094" in r.output
    r = gw.agw("activate", str(EXAMPLES / "interface-pooled.yaml"))
    assert r.exit_code == 2 and "FAILED_PRECONDITION: pool lab-v4 does not exist" in r.output
