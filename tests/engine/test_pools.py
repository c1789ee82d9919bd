"""Resource pools through the real engine (scripted devices): allocation in the Submit's
transaction, values in the rendered config, Get and the result events; release on rollback,
cancel, failure, crash recovery, resolve and a delete task; concurrent Submits; exhaustion.
SQLite here; the PostgreSQL cases (one journal, two replicas) are in test_pools_pg.py."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import sqlalchemy as sa

from drivers.errors import DeviceRejectedError
from gateway.engine import Engine
from gateway.errors import InputError, StateError
from gateway.model import Action, TaskSpec
from gateway.resources.file import parse_pools
from gateway.results import ActivationState
from tests.scripted_gateway import CLI, NC, NC1, Gateway, cut_overrun_grace, gate, request, task, write_templates

LINK_SERVICE = """\
description: a link with values out of pools (tests)
keys: [name]
examples:
  - parameters: {name: l1, prefix: 10.0.0.0/31, vlan: 100}
parameters:
  type: object
  additionalProperties: false
  required: [name]
  properties:
    name: {type: string, pattern: "^[a-z0-9]+$"}
    prefix: {type: string, pattern: "^[0-9a-f.:]+/[0-9]+$"}
    address: {type: string, format: ipv4}
    vlan: {type: integer, minimum: 1, maximum: 4094}
    vni: {type: integer, minimum: 1, maximum: 1000}
"""
POOLS = {"pools": {
    "links": {"kind": "ipv4", "prefix": "10.0.0.0/29"},     # four /31s, eight addresses
    "loopbacks": {"kind": "ipv4", "prefix": "10.9.0.0/16"},  # 65,536 addresses
    "vlans": {"kind": "vlan", "first": 100, "last": 4094},
    "vnis": {"kind": "id", "first": 7, "last": 8},
    "v6": {"kind": "ipv6", "prefix": "2001:db8::/48"},
}}


@pytest.fixture(scope="session")
def link_templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("link-templates")
    write_templates(root)
    (root / "link").mkdir()
    (root / "link" / "service.yaml").write_text(LINK_SERVICE)
    template = "".join(f"""\
{{% if {leaf} is defined %}}
{{% if action == "delete" %}}
no if.{{{{ name }}}}.{leaf}
{{% else %}}
if.{{{{ name }}}}.{leaf} = {{{{ {leaf} }}}}
{{% endif %}}
{{% endif %}}
""" for leaf in ("prefix", "address", "vlan", "vni"))
    for platform in (NC, NC1, CLI):
        (root / "link" / f"{platform}.j2").write_text(template)
    return root


NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


async def define(engine: Engine, pools: dict[str, Any] = POOLS) -> None:
    await engine.journal.pools.define(parse_pools(pools), now=NOW)


@pytest.fixture
async def pgw(tmp_path: Path, link_templates: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    cut_overrun_grace(monkeypatch)
    g = Gateway.create(tmp_path, templates_root=link_templates)
    try:
        yield g
    finally:
        await g.close()


@pytest.fixture
async def eng(pgw: Gateway) -> Engine:
    e = await pgw.engine()
    await define(e)
    return e


def link(tid: str, device: str, name: str = "l1", *, action: Action = Action.CREATE, deps: tuple[str, ...] = (),
         **params: Any) -> TaskSpec:
    return TaskSpec(id=tid, device=device, service="link", action=action, parameters={"name": name, **params},
                    depends_on=deps)


def alloc(pool: str, prefix_length: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"pool": pool}
    if prefix_length is not None:
        body["prefix_length"] = prefix_length
    return {"allocate": body}


def rows(engine: Engine, sql: str, **kw: Any) -> list[Any]:
    """Read the journal's tables directly (also after the engine stopped)."""
    db = sa.create_engine(engine.journal.url, poolclass=sa.pool.NullPool)  # type: ignore[attr-defined]
    try:
        with db.connect() as conn:
            return list(conn.execute(sa.text(sql), kw))
    finally:
        db.dispose()


def in_use(engine: Engine, pool: str) -> list[str]:
    return [r[0] for r in rows(engine, "SELECT value FROM agw_allocations WHERE pool = :p AND state = 'allocated' "
                                       "ORDER BY lo", p=pool)]


def assert_whole(engine: Engine, pool: str) -> None:
    """Nothing in use and the free list one range, the whole pool (no leak, no double release)."""
    assert in_use(engine, pool) == []
    free = rows(engine, "SELECT lo, hi FROM agw_pool_free WHERE pool = :p", p=pool)
    (lo, hi), = rows(engine, "SELECT lo, hi FROM agw_pools WHERE name = :p", p=pool)
    assert [(r[0], r[1]) for r in free] == [(lo, hi)]


async def test_an_allocation_is_rendered_journaled_shown_and_pushed(pgw: Gateway, eng: Engine) -> None:
    result = await pgw.run(eng, link("a", "r1", prefix=alloc("links", 31), vlan=alloc("vlans"),
                                     address=alloc("loopbacks")))
    assert result.state == ActivationState.COMPLETED, result
    a = task(result, "a")
    assert [line for line in a.rendered.splitlines() if line] == [
        "if.l1.prefix = 10.0.0.0/31", "if.l1.address = 10.9.0.0", "if.l1.vlan = 100"]
    assert {"if.l1.prefix": "10.0.0.0/31", "if.l1.vlan": "100", "if.l1.address": "10.9.0.0"}.items() <= \
        pgw.net.config("r1").items()
    assert a.parameters["prefix"] == "10.0.0.0/31" and a.parameters["vlan"] == 100  # Get shows the values
    info = await eng.journal.pools.get("links")
    assert info.allocated == 1 and info.free == 6
    assert [(x.value, x.activation_id, x.task_id, x.param) for x in info.allocations] == [
        ("10.0.0.0/31", result.id, "a", "prefix")]
    event, = await eng.journal.outbox.events(result.id)  # the result event carries the rendered values
    data = event.data()
    assert "if.l1.prefix = 10.0.0.0/31" in data["tasks"][0]["rendered"]


async def test_concurrent_submits_never_get_the_same_value(pgw: Gateway, eng: Engine) -> None:
    n = 40
    submitted = await asyncio.gather(*(
        eng.submit(request(link(f"t{i}", ("r1", "r2", "c1", "c2")[i % 4], f"l{i}", address=alloc("loopbacks"),
                                vlan=alloc("vlans")), request_id=f"req-{i}")) for i in range(n)))
    await asyncio.wait_for(eng.wait_idle(), timeout=60)
    addresses, vlans = [], []
    for s in submitted:
        t = (await eng.get(s.activation_id)).tasks[0]
        addresses.append(t.parameters["address"])
        vlans.append(t.parameters["vlan"])
    assert len(set(addresses)) == n and len(set(vlans)) == n
    assert sorted(in_use(eng, "vlans"), key=int) == sorted(str(v) for v in vlans)


async def test_exhaustion_is_a_failed_precondition_naming_the_pool_with_nothing_journaled(pgw: Gateway,
                                                                                          eng: Engine) -> None:
    ok = [await eng.submit(request(link("a", "c1", f"l{i}", prefix=alloc("links", 31)), request_id=f"ok-{i}"))
          for i in range(4)]
    await asyncio.wait_for(eng.wait_idle(), timeout=20)
    before = rows(eng, "SELECT COUNT(*) FROM agw_activations")[0][0]
    with pytest.raises(StateError, match=r"pool links \(10.0.0.0/29\) is exhausted: no free a /31"):
        await eng.submit(request(link("a", "c1", "lx", prefix=alloc("links", 31)), request_id="one-too-many"))
    assert rows(eng, "SELECT COUNT(*) FROM agw_activations")[0][0] == before == 4
    assert await eng.journal.find_by_request_id("one-too-many") is None
    assert len(in_use(eng, "links")) == len(ok) == 4
    # two allocations of one request, only one left: neither is taken
    await define(eng, {"pools": {"vnis": POOLS["pools"]["vnis"]}})
    await pgw.run(eng, link("a", "c1", "v1", vni=alloc("vnis")), request_id="one-vni")
    with pytest.raises(StateError, match="pool vnis"):
        await eng.submit(request(link("a", "c1", "v2", vni=alloc("vnis")), link("b", "c2", "v3", vni=alloc("vnis")),
                                 request_id="two-vnis"))
    assert in_use(eng, "vnis") == ["7"]


async def test_a_retried_submit_gets_the_same_allocation(pgw: Gateway, eng: Engine) -> None:
    req = request(link("a", "c1", prefix=alloc("links", 30)), request_id="same")
    first = await eng.submit(req)
    again = await eng.submit(req)
    await asyncio.wait_for(eng.wait_idle(), timeout=10)
    assert (first.created, again.created, again.activation_id) == (True, False, first.activation_id)
    assert in_use(eng, "links") == ["10.0.0.0/30"]


async def test_rollback_gives_the_values_back(pgw: Gateway, eng: Engine) -> None:
    result = await pgw.run(eng, link("a", "r1", prefix=alloc("links", 31)), link("b", "c1", vlan=alloc("vlans")))
    assert result.state == ActivationState.COMPLETED and in_use(eng, "links") == ["10.0.0.0/31"]
    await eng.rollback(result.id)
    after = await pgw.settle(eng, result.id)
    assert after.state == ActivationState.ROLLED_BACK
    assert_whole(eng, "links") and assert_whole(eng, "vlans")  # type: ignore[func-returns-value]
    again = await pgw.run(eng, link("a", "r1", prefix=alloc("links", 31)), request_id="again")
    assert task(again, "a").parameters["prefix"] == "10.0.0.0/31"  # the lowest value, free again


async def test_a_failed_atomic_activation_gives_the_values_back(pgw: Gateway, eng: Engine) -> None:
    pgw.net.fail("c2", "load", DeviceRejectedError("no"))
    result = await pgw.run(eng, link("a", "r1", prefix=alloc("links", 31)), link("b", "c2", vlan=alloc("vlans")))
    assert result.state in (ActivationState.ROLLED_BACK, ActivationState.FAILED), result.state
    assert_whole(eng, "links")
    assert_whole(eng, "vlans")


async def test_a_non_atomic_activation_keeps_the_values_of_its_completed_tasks(pgw: Gateway, eng: Engine) -> None:
    pgw.net.fail("c2", "load", DeviceRejectedError("no"))
    result = await pgw.run(eng, link("a", "r1", prefix=alloc("links", 31)), link("b", "c2", vlan=alloc("vlans")),
                           atomic=False)
    assert result.state == ActivationState.PARTIAL
    assert in_use(eng, "links") == ["10.0.0.0/31"]
    assert_whole(eng, "vlans")


async def test_cancel_gives_the_values_back(pgw: Gateway, eng: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch, 30.0)
    held = gate(pgw.net, "r1", "load")
    submitted = await eng.submit(request(link("a", "r1", prefix=alloc("links", 31)),
                                         link("b", "c1", vlan=alloc("vlans"), deps=("a",))))
    await asyncio.wait_for(held.reached.wait(), timeout=5)
    assert in_use(eng, "links") == ["10.0.0.0/31"] and in_use(eng, "vlans") == ["100"]
    await eng.cancel(submitted.activation_id)
    held.release.set()
    await asyncio.wait_for(eng.wait_idle(), timeout=10)
    assert (await eng.get(submitted.activation_id)).state in (ActivationState.CANCELLED, ActivationState.ROLLED_BACK)
    assert_whole(eng, "links")
    assert_whole(eng, "vlans")


async def test_crash_recovery_gives_the_values_back_once(pgw: Gateway, eng: Engine) -> None:
    reached = pgw.net.crash_at("r1", "commit")
    submitted = await eng.submit(request(link("a", "r1", prefix=alloc("links", 31), vlan=alloc("vlans"))))
    await asyncio.wait_for(reached.wait(), timeout=5)
    await pgw.crash(eng)
    pgw.net.clear()
    assert in_use(eng, "links") == ["10.0.0.0/31"]  # the dead gateway's allocation is still held
    second = await pgw.engine()  # its start recovers: rolls back, gives back
    await asyncio.wait_for(second.wait_idle(), timeout=10)
    assert (await second.get(submitted.activation_id)).state == ActivationState.ROLLED_BACK
    assert_whole(second, "links")
    assert_whole(second, "vlans")
    await pgw.stop(second)
    third = await pgw.engine()  # nothing more to recover: released once
    await asyncio.wait_for(third.wait_idle(), timeout=10)
    assert_whole(third, "links")
    assert rows(third, "SELECT COUNT(*) FROM agw_allocations WHERE state = 'released'")[0][0] == 2


async def test_fallout_keeps_the_values_until_resolved(pgw: Gateway, eng: Engine) -> None:
    pgw.net.mismatch("c1")
    pgw.net.fail("c1", "restore", DeviceRejectedError("restore refused"), times=None)
    result = await pgw.run(eng, link("a", "c1", prefix=alloc("links", 31)))
    assert result.state == ActivationState.FALLOUT
    assert in_use(eng, "links") == ["10.0.0.0/31"]  # its change may be on the device: kept
    await eng.resolve(result.id, "a", "removed by hand")
    assert_whole(eng, "links")


async def test_a_delete_task_that_names_the_value_gives_it_back_when_it_completes(pgw: Gateway,
                                                                                   eng: Engine) -> None:
    created = await pgw.run(eng, link("a", "r1", prefix=alloc("links", 31), vlan=alloc("vlans")))
    prefix = task(created, "a").parameters["prefix"]
    pgw.net.fail("r1", "load", DeviceRejectedError("no"))
    release = {"prefix": {"release": {"pool": "links", "value": prefix}},
               "vlan": {"release": {"pool": "vlans", "value": 100}}}
    failed = await pgw.run(eng, link("d", "r1", action=Action.DELETE, **release), request_id="del-1")
    assert failed.state != ActivationState.COMPLETED
    assert in_use(eng, "links") == [prefix]  # a delete that did not complete gives nothing back
    pgw.net.clear()
    deleted = await pgw.run(eng, link("d", "r1", action=Action.DELETE, **release), request_id="del-2")
    assert deleted.state == ActivationState.COMPLETED
    assert "no if.l1.prefix" in task(deleted, "d").rendered
    assert_whole(eng, "links")
    assert_whole(eng, "vlans")
    with pytest.raises(StateError, match=r"pool links has no allocation of '10.0.0.0/31' to release"):
        await eng.submit(request(link("d", "r1", action=Action.DELETE, **release), request_id="del-3"))
    assert await eng.journal.find_by_request_id("del-3") is None


async def test_rolling_a_delete_back_takes_its_values_back_or_is_refused_when_reused(pgw: Gateway,
                                                                                     eng: Engine) -> None:
    """The Rollback of a completed delete puts the object back on the device, and with it the
    values it uses: they are allocated again to their first owner. When one was allocated to
    another activation meanwhile, the Rollback is refused before anything is touched."""
    created = await pgw.run(eng, link("a", "r1", prefix=alloc("links", 31), vlan=alloc("vlans")))
    prefix, vlan = task(created, "a").parameters["prefix"], task(created, "a").parameters["vlan"]
    release = {"prefix": {"release": {"pool": "links", "value": prefix}},
               "vlan": {"release": {"pool": "vlans", "value": vlan}}}
    deleted = await pgw.run(eng, link("d", "r1", action=Action.DELETE, **release), request_id="del-1")
    assert deleted.state == ActivationState.COMPLETED and in_use(eng, "links") == []
    await eng.rollback(deleted.id)
    undone = await pgw.settle(eng, deleted.id)
    assert undone.state == ActivationState.ROLLED_BACK
    assert pgw.net.config("r1")["if.l1.prefix"] == prefix  # the link is back on the device...
    assert in_use(eng, "links") == [prefix] and in_use(eng, "vlans") == [str(vlan)]  # ...and so are its values
    owner = rows(eng, "SELECT activation_id, task_id FROM agw_allocations WHERE value = :v", v=prefix)
    assert [tuple(r) for r in owner] == [(created.id, "a")]
    # delete again, let another activation take the /31, then try to roll the delete back
    again = await pgw.run(eng, link("d", "r1", action=Action.DELETE, **release), request_id="del-2")
    assert again.state == ActivationState.COMPLETED and in_use(eng, "links") == []
    other = await pgw.run(eng, link("b", "r2", "l2", prefix=alloc("links", 31)), request_id="other")
    assert task(other, "b").parameters["prefix"] == prefix  # the lowest free /31 is that one
    before = pgw.net.config("r1")
    with pytest.raises(StateError) as refused:
        await eng.rollback(again.id)
    text = str(refused.value)
    assert f"{prefix} of pool links was allocated again (to activation {other.id}, task b)" in text
    assert (await eng.get(again.id)).state == ActivationState.COMPLETED  # nothing started
    assert pgw.net.config("r1") == before
    assert in_use(eng, "links") == [prefix] and in_use(eng, "vlans") == []  # the vlan was not taken back either
    assert [tuple(r) for r in rows(eng, "SELECT activation_id FROM agw_allocations WHERE value = :v AND "
                                        "state = 'allocated'", v=prefix)] == [(other.id,)]


@pytest.mark.parametrize("params, field, reason", [
    ({"prefix": alloc("links", 33)}, "tasks[0].parameters.prefix.allocate.prefix_length", "29 to 32, not 33"),
    ({"vlan": alloc("vlans", 24)}, "tasks[0].parameters.vlan.allocate.prefix_length", "takes no prefix_length"),
    ({"prefix": {"allocate": {"pool": "links", "size": 2}}}, "tasks[0].parameters.prefix.allocate", "unknown field"),
    ({"prefix": {"allocate": "links"}}, "tasks[0].parameters.prefix.allocate", "must be a mapping"),
    ({"vlan": alloc("v6", 64)}, "tasks[0].parameters.vlan", "integer"),  # the schema checks the value's shape
])
async def test_bad_allocation_requests_name_the_field(pgw: Gateway, eng: Engine, params: dict[str, Any], field: str,
                                                      reason: str) -> None:
    with pytest.raises(InputError) as caught:
        await eng.submit(request(link("a", "c1", **params), request_id="bad"))
    assert any(v.field.startswith(field) and reason in v.reason for v in caught.value.violations), \
        caught.value.violations
    assert await eng.journal.find_by_request_id("bad") is None
    assert rows(eng, "SELECT COUNT(*) FROM agw_allocations")[0][0] == 0


async def test_an_unknown_pool_is_a_failed_precondition_naming_it(pgw: Gateway, eng: Engine) -> None:
    with pytest.raises(StateError, match=r"pool nope does not exist \(tasks\[0\]\.parameters\.vlan\)"):
        await eng.submit(request(link("a", "c1", vlan=alloc("nope")), request_id="unknown"))
    with pytest.raises(InputError, match="a delete task cannot allocate"):
        await eng.submit(request(link("a", "c1", action=Action.DELETE, vlan=alloc("vlans")), request_id="del"))
    assert rows(eng, "SELECT COUNT(*) FROM agw_activations")[0][0] == 0


async def test_a_dry_run_shows_the_values_a_submit_would_get_and_takes_none(pgw: Gateway, eng: Engine) -> None:
    await pgw.run(eng, link("a", "c1", prefix=alloc("links", 31)), request_id="first")
    result = await eng.dry_run(request(link("a", "c2", prefix=alloc("links", 31), address=alloc("loopbacks")),
                                       request_id="dry"))
    assert "if.l1.prefix = 10.0.0.2/31" in task(result, "a").rendered, task(result, "a").rendered
    assert in_use(eng, "links") == ["10.0.0.0/31"] and in_use(eng, "loopbacks") == []


async def test_a_changed_pool_definition_that_would_orphan_an_allocation_is_refused(pgw: Gateway,
                                                                                   eng: Engine) -> None:
    await pgw.run(eng, link("a", "c1", vlan=alloc("vlans")))
    with pytest.raises(StateError, match=r"pool vlans: the new definition \(vlan 200-300\) would orphan 1"):
        await eng.journal.pools.define(parse_pools({"pools": {"vlans": {"kind": "vlan", "first": 200, "last": 300}}}),
                                       replace=True, now=NOW)
    from gateway.errors import ConflictError

    with pytest.raises(ConflictError, match="needs replace"):
        await eng.journal.pools.define(parse_pools({"pools": {"vlans": {"kind": "vlan", "first": 50, "last": 300}}}),
                                       now=NOW)
    changed = await eng.journal.pools.define(
        parse_pools({"pools": {"vlans": {"kind": "vlan", "first": 50, "last": 300}}}), replace=True, now=NOW)
    assert changed == [("vlans", "updated")]
    again = await pgw.run(eng, link("a", "c2", vlan=alloc("vlans")), request_id="next")
    assert task(again, "a").parameters["vlan"] == 50
    assert sorted(in_use(eng, "vlans"), key=int) == ["50", "100"]
    assert json.loads(rows(eng, "SELECT spec FROM agw_pools WHERE name = 'vlans'")[0][0])["first"] == 50


async def test_the_pools_file_at_start_is_applied_idempotently_and_refuses_an_orphaning_change(
        pgw: Gateway, eng: Engine, tmp_path: Path) -> None:
    from gateway.app import GatewayConfig, apply_pools, load_pools
    from gateway.errors import ConfigurationError

    f = tmp_path / "pools.yaml"
    f.write_text("pools:\n  vlans: {kind: vlan, first: 100, last: 4094}\n  new-ids: {kind: id, first: 1, last: 5}\n")
    await apply_pools(eng, load_pools(GatewayConfig(pools_path=f)))  # vlans unchanged, new-ids created
    assert [p.pool.name for p in await eng.journal.pools.list()] == sorted([*POOLS["pools"], "new-ids"])
    await pgw.run(eng, link("a", "c1", vlan=alloc("vlans")))
    f.write_text("pools:\n  vlans: {kind: id, first: 100, last: 4094}\n")
    with pytest.raises(StateError, match=r"pool vlans: the new definition \(id 100-4094\) would orphan 1 allocation"):
        await apply_pools(eng, load_pools(GatewayConfig(pools_path=f)))
    f.write_text("pools:\n  vlans: {kind: vlan, first: 100}\n")
    with pytest.raises(ConfigurationError, match=r"pools.yaml: vlans.last: required, an integer"):
        load_pools(GatewayConfig(pools_path=f))
