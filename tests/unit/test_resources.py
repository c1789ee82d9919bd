"""The pure parts of the resource pools (gateway/resources/): definitions and values, the
free-list arithmetic, allocation requests in parameters, the pools file."""

from __future__ import annotations

import random

import pytest

from gateway.errors import ConfigurationError
from gateway.model import Action, ActivationRequest, TaskSpec
from gateway.resources import allocator, params
from gateway.resources.file import parse_pools
from gateway.resources.pools import PoolDefinitionError, PoolKind, key, parse_pool, unkey


def test_pool_definitions_and_values() -> None:
    v4 = parse_pool("links", {"kind": "ipv4", "prefix": "10.0.0.0/29"})
    assert (v4.bounds, v4.size, v4.shown_range) == ((0x0A000000, 0x0A000007), 8, "10.0.0.0/29")
    assert v4.block_size(31) == 2 and v4.block_size(None) == 1 and v4.block_size(29) == 8
    assert v4.value(0x0A000004, 31) == "10.0.0.4/31" and v4.value(0x0A000005, None) == "10.0.0.5"
    assert v4.value(0x0A000005, 32) == "10.0.0.5/32"
    assert v4.parse_value("10.0.0.4/31") == (0x0A000004, 0x0A000005) and v4.parse_value("10.0.0.5") == (0x0A000005,) * 2
    assert v4.check_prefix_length(28) and v4.check_prefix_length(33) and not v4.check_prefix_length(29)
    v6 = parse_pool("v6", {"kind": "ipv6", "prefix": "2001:db8::/48"})
    assert v6.value(v6.bounds[0], 64) == "2001:db8::/64" and v6.block_size(64) == 2**64
    vlan = parse_pool("vlans", {"kind": "vlan", "first": 100, "last": 199, "description": "access"})
    assert (vlan.bounds, vlan.value(120, None), vlan.parse_value(120)) == ((100, 199), 120, (120, 120))
    assert "takes no prefix_length" in vlan.check_prefix_length(24)
    assert vlan.spec() == {"kind": "vlan", "first": 100, "last": 199, "description": "access"}
    assert key(2**128 - 1) == "f" * 32 and unkey(key(12345)) == 12345 and key(9) < key(10) < key(255)


@pytest.mark.parametrize("name, data, text", [
    ("Bad", {"kind": "vlan", "first": 1, "last": 2}, "not a pool name"),
    ("p", {"kind": "mac"}, "p.kind: must be one of ipv4, ipv6, vlan, id"),
    ("p", {"kind": "ipv4", "prefix": "10.0.0.1/24"}, "host bits set"),
    ("p", {"kind": "ipv4", "prefix": "2001:db8::/32"}, "not an ipv4 network"),
    ("p", {"kind": "ipv4"}, "p.prefix: required"),
    ("p", {"kind": "ipv4", "prefix": "10.0.0.0/8", "first": 1}, "unknown field(s) first"),
    ("p", {"kind": "vlan", "first": 0, "last": 10}, "1 <= first <= last <= 4094"),
    ("p", {"kind": "vlan", "first": 20, "last": 10}, "first <= last"),
    ("p", {"kind": "id", "first": True, "last": 10}, "p.first: required, an integer"),
    ("p", "ipv4", "a pool is a mapping"),
])
def test_bad_pool_definitions_name_the_field(name: str, data: object, text: str) -> None:
    with pytest.raises(PoolDefinitionError, match=None) as caught:
        parse_pool(name, data)
    assert text in str(caught.value)


def test_values_outside_the_pool_or_of_another_kind_are_refused() -> None:
    v4 = parse_pool("links", {"kind": "ipv4", "prefix": "10.0.0.0/29"})
    for bad, text in (("10.0.1.0", "outside pool links"), ("2001:db8::1", "not an ipv4 value"), (7, "an address"),
                      ("10.0.0.1/31", "not an address or a prefix")):
        with pytest.raises(PoolDefinitionError, match=text):
            v4.parse_value(bad)


def test_fit_takes_the_lowest_aligned_block() -> None:
    assert allocator.fit([(0, 0), (3, 9)], 2) == (4, 3, 9)  # 3 is not aligned on 2; 0-0 too small
    assert allocator.fit([(1, 6)], 4) is None  # 6 integers, but no aligned block of 4 inside
    assert allocator.fit([(1, 6), (8, 11)], 4) == (8, 8, 11)
    assert allocator.fit([(5, 5)], 1) == (5, 5, 5) and allocator.fit([], 1) is None
    assert allocator.split(0, 9, 4, 2) == [(0, 3), (6, 9)] and allocator.split(4, 5, 4, 2) == []
    with pytest.raises(ValueError):
        allocator.split(0, 3, 2, 4)
    assert allocator.merge(4, 5, (0, 3), (6, 9)) == (0, 9) and allocator.merge(4, 5, None, None) == (4, 5)
    with pytest.raises(ValueError):
        allocator.merge(4, 5, (0, 2), None)
    assert list(allocator.free_ranges(0, 9, [(0, 1), (4, 5)])) == [(2, 3), (6, 9)]
    assert list(allocator.free_ranges(0, 3, [(0, 3)])) == []
    assert allocator.span_bits(0, 0) == 0 and allocator.span_bits(0, 7) == 3 and allocator.span_bits(0, 8) == 3


def test_a_free_list_model_never_hands_out_a_value_twice_and_merges_back_whole() -> None:
    """Random allocations and releases of mixed sizes on a model of the journal's free list."""
    rng = random.Random(7)
    lo, hi = 0, 255
    free = [(lo, hi)]
    taken: dict[int, int] = {}  # start -> size
    for _ in range(2000):
        if taken and rng.random() < 0.45:
            start = rng.choice(sorted(taken))
            size = taken.pop(start)
            before = next((r for r in free if r[1] == start - 1), None)
            after = next((r for r in free if r[0] == start + size), None)
            free = [r for r in free if r not in (before, after)] + [allocator.merge(start, start + size - 1,
                                                                                    before, after)]
            free.sort()
            continue
        size = 2 ** rng.randrange(0, 4)
        found = allocator.fit(free, size)
        if found is None:
            continue
        start, a, b = found
        assert start % size == 0
        assert all(start + size - 1 < s or start > s + n - 1 for s, n in taken.items())  # never shared
        taken[start] = size
        free = sorted([r for r in free if r != (a, b)] + allocator.split(a, b, start, size))
    for start in sorted(taken):
        size = taken.pop(start)
        before = next((r for r in free if r[1] == start - 1), None)
        after = next((r for r in free if r[0] == start + size), None)
        free = sorted([r for r in free if r not in (before, after)]
                      + [allocator.merge(start, start + size - 1, before, after)])
    assert free == [(lo, hi)]


def req(*tasks: TaskSpec) -> ActivationRequest:
    return ActivationRequest(request_id="r", tasks=tasks)


def test_requests_are_found_at_any_depth_and_substituted() -> None:
    t = TaskSpec(id="a", device="d", service="s", action=Action.CREATE, parameters={
        "name": "x", "ipv4": {"address": {"allocate": {"pool": "lab-v4"}}, "prefix_length": 24},
        "links": [{"prefix": {"allocate": {"pool": "p2p", "prefix_length": 31.0}}}]})
    d = TaskSpec(id="b", device="d", service="s", action=Action.DELETE,
                 parameters={"vlan": {"release": {"pool": "vlans", "value": 120.0}}})
    allocations, releases, violations = params.find(req(t, d))
    assert violations == []
    assert [(a.task_id, a.path, a.field, a.pool, a.prefix_length, a.param) for a in allocations] == [
        ("a", ("ipv4", "address"), "tasks[0].parameters.ipv4.address", "lab-v4", None, "ipv4.address"),
        ("a", ("links", 0, "prefix"), "tasks[0].parameters.links[0].prefix", "p2p", 31, "links[0].prefix")]
    assert [(r.task_id, r.pool, r.value) for r in releases] == [("b", "vlans", 120)]
    out = params.substitute(req(t, d), {("a", ("ipv4", "address")): "10.0.0.5",
                                        ("a", ("links", 0, "prefix")): "10.1.0.0/31",
                                        **params.release_values(releases)})
    assert out.tasks[0].parameters == {"name": "x", "ipv4": {"address": "10.0.0.5", "prefix_length": 24},
                                       "links": [{"prefix": "10.1.0.0/31"}]}
    assert out.tasks[1].parameters == {"vlan": 120}
    assert t.parameters["ipv4"]["address"] == {"allocate": {"pool": "lab-v4"}}  # the request is left as it was


@pytest.mark.parametrize("action, value, field, text", [
    (Action.DELETE, {"allocate": {"pool": "p"}}, "tasks[0].parameters.v", "a delete task cannot allocate"),
    (Action.CREATE, {"allocate": {"pool": "P Q"}}, "tasks[0].parameters.v.allocate.pool", "a pool name"),
    (Action.CREATE, {"allocate": {"pool": "p", "prefix_length": 200}}, "tasks[0].parameters.v.allocate.prefix_length",
     "0-128"),
    (Action.CREATE, {"allocate": {"pool": "p", "prefix_length": True}}, "tasks[0].parameters.v.allocate.prefix_length",
     "0-128"),
    (Action.CREATE, {"allocate": ["p"]}, "tasks[0].parameters.v.allocate", "must be a mapping"),
    (Action.CREATE, {"release": {"pool": "p", "value": 1}}, "tasks[0].parameters.v", "only a delete task"),
    (Action.DELETE, {"release": {"pool": "p"}}, "tasks[0].parameters.v.release", "exactly pool and value"),
    (Action.DELETE, {"release": {"pool": "p", "value": [1]}}, "tasks[0].parameters.v.release.value", "allocated value"),
])
def test_bad_requests_are_violations_naming_the_parameter(action: Action, value: object, field: str,
                                                          text: str) -> None:
    t = TaskSpec(id="a", device="d", service="s", action=action, parameters={"v": value})
    _, _, violations = params.find(req(t))
    assert [(v.field, text in v.reason) for v in violations] == [(field, True)], violations


def test_too_many_requests_and_a_value_released_twice_are_refused() -> None:
    many = TaskSpec(id="a", device="d", service="s", action=Action.CREATE,
                    parameters={"l": [{"allocate": {"pool": "p"}}] * (params.MAX_REQUESTS + 1)})
    assert "more than the limit" in params.find(req(many))[2][-1].reason
    twice = TaskSpec(id="b", device="d", service="s", action=Action.DELETE, parameters={
        "x": {"release": {"pool": "p", "value": 5}}, "y": {"release": {"pool": "p", "value": 5}}})
    assert "again" in params.find(req(twice))[2][0].reason


def test_the_pools_file() -> None:
    defs = parse_pools({"pools": {"a": {"kind": "id", "first": 1, "last": 9}, "b": {"kind": "ipv6",
                                                                                     "prefix": "2001:db8::/48"}}})
    assert [(d.name, d.kind) for d in defs] == [("a", PoolKind.ID), ("b", PoolKind.IPV6)]
    with pytest.raises(ConfigurationError, match=r"f.yaml: a.kind: must be one of .*; b.prefix: required"):
        parse_pools({"pools": {"a": {"kind": "x"}, "b": {"kind": "ipv4"}}}, source="f.yaml")
    with pytest.raises(ConfigurationError, match="one key, pools"):
        parse_pools({"pool": {}}, source="f.yaml")
