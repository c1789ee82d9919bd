"""The service-check model (drivers/checks.py): parsing, conditions, the wait-until poll, the
planner's refusals, and the per-driver record readers (NETCONF XML, CLI JSON). Pure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lxml import etree

from drivers import checks
from drivers.base import Action, Capabilities, ChangeSet, DeviceProfile, Timeouts
from drivers.cli.checks import NotJson, json_records, output_records
from drivers.errors import InputError
from drivers.netconf import oper
from drivers.profiles import parse_profile
from drivers.errors import ConfigurationError

W = checks.Wait(timeout_s=2.0, interval_s=0.5)


def parse(text: str) -> checks.Check:
    check = checks.parse(text, default=W)
    assert check is not None
    return check


def profile(*, confirm_s: int = 120, op_s: float = 10, commit_s: float = 30, settle: Any = None,
            confirmed: bool = True) -> DeviceProfile:
    settings = {} if settle is None else {"check_settle_s": settle}
    return DeviceProfile(platform="p", driver="netconf", capabilities=Capabilities(confirmed_commit=confirmed),
                         timeouts=Timeouts(operation_s=op_s, commit_s=commit_s), confirm_timeout_s=confirm_s,
                         settings=settings)


def change(*texts: str) -> ChangeSet:
    return ChangeSet(service="svc", action=Action.CREATE, content="", checks=texts)


# -- parsing ----------------------------------------------------------------------------------------
def test_kinds_come_from_the_query() -> None:
    assert parse("command: show x\njson: true").kind == checks.CLI
    assert parse("get: '<a xmlns=\"urn:x\"/>'").kind == checks.NETCONF
    assert parse("get: [1.3.6.1.2.1.1.3.0]").kind == checks.SNMP
    assert parse("walk: 1.3.6.1.2.1.2.2.1.8").kind == checks.SNMP
    snmp = parse("walk: {descr: .1.3.6.1.2.1.2.2.1.2, oper: 1.3.6.1.2.1.2.2.1.8}")
    assert isinstance(snmp.query, checks.SnmpQuery)
    assert snmp.query.walk == (("descr", "1.3.6.1.2.1.2.2.1.2"), ("oper", "1.3.6.1.2.1.2.2.1.8"))


def test_defaults_name_wait_and_condition() -> None:
    c = parse("command: show ip route\nttp: '{{ x }}'")
    assert c.name == "show ip route" and c.wait == W and c.condition == checks.Condition()
    c = parse("name: n\ncommand: c\njson: true\nexpect: {a: 1, b: true, c: {one_of: [x, 2]}}\nabsent: true\n"
              "wait: {timeout_s: 30, interval_s: 0.2}")
    assert c.name == "n" and c.condition.absent
    assert c.condition.expect == (("a", ("1",)), ("b", ("true",)), ("c", ("x", "2")))
    assert c.wait == checks.Wait(timeout_s=30.0, interval_s=0.2)


@pytest.mark.parametrize(("text", "reason"), [
    ("command: [x", "not YAML"),
    ("- a", "must be a mapping"),
    ("command: c\njson: true\nfoo: 1", "unknown field(s) foo"),
    ("expect: {a: 1}", "no query"),
    ("command: c", "exactly one of ttp"),
    ("command: c\njson: true\nttp: x", "exactly one of ttp"),
    ("command: c\njson: yes please", "json: must be true or false"),
    ("command: \"a\\nb\"\njson: true", "control character"),
    ("command: c\njson: true\nget: '<a/>'", "get: not a field of a CLI check"),
    ("get: 'not xml'", "subtree filter"),
    ("get: [1.3.6.1.2.1.1.3.0]\nwalk: 1.3.6", "exactly one of get"),
    ("get: [sysName.0]", "not a numeric OID"),
    ("walk: [1.3.6.1.2, 1.3.6.1.3]", "a list is not allowed"),
    ("walk: {index: 1.3.6.1.2}", "reserved"),
    ("kind: snmp\ncommand: c\njson: true", "does not match its query"),
    ("command: c\njson: true\nexpect: [a]", "expect: must be a mapping"),
    ("command: c\njson: true\nexpect: {a: {any_of: [1]}}", "one_of"),
    ("command: c\njson: true\nexpect: {a: {one_of: []}}", "one_of"),
    ("command: c\njson: true\nexpect: {a: [1]}", "scalars"),
    ("command: c\njson: true\nabsent: 1", "absent: must be true or false"),
    ("command: c\njson: true\nwait: {timeout_s: 301}", "over the limit of 300"),
    ("command: c\njson: true\nwait: {interval_s: 0.1}", "under the minimum of 0.2"),
    ("command: c\njson: true\nwait: {timeout_s: -1}", "0 or more"),
    ("command: c\njson: true\nwait: {timeout_s: .nan}", "0 or more"),
    ("command: c\njson: true\nwait: {every_s: 1}", "timeout_s and/or interval_s"),
])
def test_bad_checks_are_refused_with_the_field(text: str, reason: str) -> None:
    with pytest.raises(checks.CheckError) as err:
        checks.parse(text, default=W)
    assert reason in str(err.value)


def test_a_check_rendering_to_nothing_is_skipped() -> None:
    assert checks.parse("\n  \n", default=W) is None
    assert checks.parse("# only a comment\n", default=W) is None


def test_default_wait_comes_from_the_profile_settle() -> None:
    assert checks.default_wait(profile()) == checks.Wait(timeout_s=2.0, interval_s=0.5)
    assert checks.default_wait(profile(settle=7)).timeout_s == 7.0


def test_profile_check_settle_is_a_common_checked_setting() -> None:
    base = {"platform": "x", "driver": "snmp", "settings": {"check_settle_s": 5}}
    assert parse_profile(base, source="x.yaml").settings["check_settle_s"] == 5
    for bad in (-1, 301, "2", True):
        with pytest.raises(ConfigurationError, match="check_settle_s"):
            parse_profile({**base, "settings": {"check_settle_s": bad}}, source="x.yaml")


# -- conditions -------------------------------------------------------------------------------------
def test_condition_equality_one_of_and_absent() -> None:
    c = parse("command: c\njson: true\nexpect: {name: eth1, oper: {one_of: [up, testing]}}")
    assert checks.evaluate(c, [{"name": "eth1", "oper": "testing"}]).ok
    assert not checks.evaluate(c, [{"name": "eth1", "oper": "down"}, {"name": "eth2", "oper": "up"}]).ok
    assert not checks.evaluate(c, []).ok
    assert not checks.evaluate(c, [{"name": "eth1"}]).ok  # a missing field never matches
    gone = parse("command: c\njson: true\nexpect: {name: eth1}\nabsent: true")
    assert gone.condition.describe() == "no record with name=eth1"
    assert checks.evaluate(gone, [{"name": "eth2"}]).ok
    failed = checks.evaluate(gone, [{"name": "eth2"}, {"name": "eth1", "x": "1"}])
    assert not failed.ok and failed.observed == "{name: eth1, x: 1}"  # shows what should not be there


def test_the_observed_view_is_bounded_and_puts_the_nearest_record_first() -> None:
    c = parse("command: c\njson: true\nexpect: {index: '9', oper: '1'}")
    rows = [{"index": str(i), "oper": "1" if i != 9 else "2", "descr": "x" * 30} for i in range(1, 40)]
    out = checks.evaluate(c, rows)
    assert not out.ok and out.observed.startswith("{index: 9, oper: 2,")
    assert len(out.observed) < checks.MAX_SHOWN + 40 and out.observed.endswith("more)")
    assert checks.evaluate(c, []).observed == "nothing read"


def test_mismatch_carries_the_condition_and_the_observed_value() -> None:
    c = parse("name: uplink\ncommand: c\njson: true\nexpect: {oper: up}")
    m = checks.mismatch(c, checks.Outcome(ok=False, observed="{oper: down}", polls=3, elapsed_s=1.04))
    assert m.path == "check uplink" and m.expected == "a record with oper=up"
    assert m.actual == "{oper: down} (after 3 poll(s) in 1.0 s)"


def test_records_flatten_values_as_text_and_are_bounded() -> None:
    assert checks.records({"eth1": {"up": True, "mtu": 1500, "ips": [{"ip": "a"}]}}) == \
        [{"up": "true", "mtu": "1500"}, {"ip": "a"}]
    with pytest.raises(checks.TooMuch):
        checks.records([{"a": i} for i in range(checks.MAX_RECORDS + 1)])
    deep: Any = {"a": 1}
    for _ in range(5000):
        deep = {"x": deep}
    assert checks.records(deep) == [{"a": "1"}]  # no recursion limit


# -- the wait-until poll --------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def run(check: checks.Check, answers: list[list[dict[str, str]]], clock: FakeClock) -> checks.Outcome:
    it = iter(answers)

    async def probe() -> list[dict[str, str]]:
        clock.now += 0.1  # each read takes a while
        return next(it)

    return asyncio.run(checks.run(check, probe, clock=clock, sleep=clock.sleep))


def test_a_condition_that_becomes_true_passes_after_polling() -> None:
    c = parse("command: c\njson: true\nexpect: {oper: up}\nwait: {timeout_s: 10, interval_s: 1}")
    clock = FakeClock()
    out = run(c, [[{"oper": "down"}]] * 3 + [[{"oper": "up"}]], clock)
    assert out.ok and out.polls == 4 and clock.sleeps == [1, 1, 1]
    assert out.elapsed_s == pytest.approx(3.4)


def test_a_condition_that_never_holds_fails_at_the_timeout_with_a_last_poll_there() -> None:
    c = parse("command: c\njson: true\nexpect: {oper: up}\nwait: {timeout_s: 2.5, interval_s: 1}")
    clock = FakeClock()
    out = run(c, [[{"oper": "down"}]] * 10, clock)
    assert not out.ok and out.observed == "{oper: down}"
    assert clock.sleeps == pytest.approx([1, 1, 0.2])  # the last sleep ends at the deadline
    assert out.elapsed_s >= 2.5 and out.polls == 4


def test_no_wait_means_one_poll() -> None:
    c = parse("command: c\njson: true\nexpect: {oper: up}\nwait: {timeout_s: 0}")
    clock = FakeClock()
    assert run(c, [[{"oper": "down"}]], clock).polls == 1 and clock.sleeps == []


def test_too_much_read_fails_the_check_at_once() -> None:
    c = parse("command: c\njson: true\nwait: {timeout_s: 10}")

    async def probe() -> list[dict[str, str]]:
        raise checks.TooMuch("more than 1000 records read")

    out = asyncio.run(checks.run(c, probe))
    assert not out.ok and "narrow the query" in out.observed and out.polls == 1


# -- planning -------------------------------------------------------------------------------------
NC = "get: '<a xmlns=\"urn:x\"/>'\nexpect: {a: 1}\n"


def test_plan_refuses_a_kind_the_driver_does_not_run() -> None:
    with pytest.raises(InputError) as err:
        checks.plan_checks(change(NC), profile=profile(), kinds={"cli"}, driver="cli", confirmed_commit=False)
    (v,) = err.value.violations
    assert v.field.startswith("service 'svc' checks[0] (get <a")
    assert "a netconf check, but driver 'cli' of platform 'p' runs cli" in v.reason


def test_plan_names_a_bad_check_and_skips_empty_ones() -> None:
    with pytest.raises(InputError) as err:
        checks.plan_checks(change("", "command: c"), profile=profile(), kinds=checks.KINDS, driver="d",
                           confirmed_commit=False)
    (v,) = err.value.violations
    assert v.field == "service 'svc' checks[1]" and "exactly one of ttp" in v.reason
    assert checks.plan_checks(change("", NC), profile=profile(), kinds=checks.KINDS, driver="d",
                              confirmed_commit=True)[0].index == 1


def test_plan_refuses_waits_that_do_not_fit_the_confirmed_commit_window() -> None:
    long = NC + "wait: {timeout_s: 75}\n"
    # read-back 10 + (75 + 10) + confirm 30 = 125 > 120
    with pytest.raises(InputError) as err:
        checks.plan_checks(change(long), profile=profile(), kinds=checks.KINDS, driver="d", confirmed_commit=True)
    (v,) = err.value.violations
    assert "checks[0]" in v.field and "does not fit inside the confirmed-commit window" in v.reason
    assert "reverts after 120 s" in v.reason
    ok = NC + "wait: {timeout_s: 70}\n"
    assert checks.plan_checks(change(ok), profile=profile(), kinds=checks.KINDS, driver="d", confirmed_commit=True)
    # without a confirmed commit only the verify phase's own bound applies
    assert checks.plan_checks(change(long), profile=profile(), kinds=checks.KINDS, driver="d", confirmed_commit=False)


def test_plan_refuses_too_many_checks_and_too_long_waits_together() -> None:
    with pytest.raises(InputError, match="at most 16"):
        checks.plan_checks(change(*[NC] * 17), profile=profile(), kinds=checks.KINDS, driver="d",
                           confirmed_commit=False)
    three = [NC + "wait: {timeout_s: 250}\n"] * 3
    with pytest.raises(InputError, match="750 s together; at most 600"):
        checks.plan_checks(change(*three), profile=profile(), kinds=checks.KINDS, driver="d",
                           confirmed_commit=False)


def test_the_verify_allowance_covers_every_wait_and_last_poll() -> None:
    two = change(NC + "wait: {timeout_s: 5}\n", NC)
    assert checks.allowance_for(two, profile(settle=3)) == (5 + 10) + (3 + 10)
    assert checks.allowance_for(change(), profile()) == 0


def test_parse_all_refuses_a_check_of_another_kind() -> None:
    with pytest.raises(InputError, match="cannot run on a cli device"):
        checks.parse_all(change(NC), profile(), checks.CLI)


# -- records of each driver ------------------------------------------------------------------------
def test_netconf_filter_is_checked_and_reserialized() -> None:
    got = oper.filter_bytes(' <interfaces-state xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces">'
                            "<interface><name>eth1</name></interface></interfaces-state> ")
    assert got.startswith(b"<interfaces-state") and b"<name>eth1</name>" in got
    for bad, reason in [("<a>", "well-formed"), ("<a/>", "no namespace"), ("<a xmlns='u'/>text", "text outside"),
                        ('<!DOCTYPE a [<!ENTITY x "y">]><a/>', "DOCTYPE"), ("<?pi x?><a xmlns='u'/>", "processing")]:
        with pytest.raises(oper.FilterError, match=reason):
            oper.filter_bytes(bad)


def test_netconf_records_are_the_leaves_of_each_element() -> None:
    data = etree.fromstring(
        '<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><interfaces-state xmlns="urn:if">'
        "<interface><name>eth1</name><oper-status>up</oper-status><statistics><in-octets>5</in-octets></statistics>"
        "</interface><interface><name>lo</name><oper-status>unknown</oper-status></interface>"
        "</interfaces-state></data>")
    assert oper.xml_records(data) == [{"name": "eth1", "oper-status": "up"}, {"in-octets": "5"},
                                      {"name": "lo", "oper-status": "unknown"}]
    assert oper.xml_records(None) == []


def test_cli_json_output_and_its_bounds() -> None:
    out = '{"eth1": {"administrativeStatus": "up", "operationalStatus": "down", "linkDetection": true}}'
    assert json_records(out) == [{"administrativeStatus": "up", "operationalStatus": "down", "linkDetection": "true"}]
    with pytest.raises(NotJson, match="not JSON"):
        json_records("% Can't find interface eth9")
    with pytest.raises(checks.TooMuch):
        output_records(checks.CliQuery(command="c", json=True), "x" * (checks.MAX_OUTPUT_CHARS + 1))
