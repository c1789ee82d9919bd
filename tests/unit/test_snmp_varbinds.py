"""Pure logic of the SNMP driver: rendered varbinds, canonical snapshots, diffs, pysnmp codec."""

from __future__ import annotations

import pytest

from drivers.snmp import codec
from drivers.snmp.varbinds import (
    SETTABLE_TYPES,
    SnapshotFormatError,
    Varbind,
    diff_snapshots,
    diff_varbinds,
    format_scope,
    format_snapshot,
    intended,
    normalize_oid,
    parse_scope,
    parse_snapshot,
    parse_varbinds,
)
from gateway.errors import InputError

ALL_TYPES = """
- {oid: .1.3.6.1.2.1.1.4.0, type: OctetString, value: "noc: \\"x\\" # y"}
- {oid: 1.3.6.1.4.1.1.1.0, type: Integer, value: -5}
- {oid: 1.3.6.1.4.1.1.2.0, type: Integer32, value: 2147483647}
- {oid: 1.3.6.1.4.1.1.3.0, type: Counter32, value: 4294967295}
- {oid: 1.3.6.1.4.1.1.4.0, type: Gauge32, value: 0}
- {oid: 1.3.6.1.4.1.1.5.0, type: TimeTicks, value: 100}
- {oid: 1.3.6.1.4.1.1.6.0, type: IpAddress, value: 192.0.2.1}
- {oid: 1.3.6.1.4.1.1.7.0, type: ObjectIdentifier, value: .1.3.6.1.6.3.1}
- {oid: 1.3.6.1.4.1.1.8.0, type: Unsigned32, value: 7}
"""


def test_parse_all_settable_types_in_rendered_order() -> None:
    vbs = parse_varbinds(ALL_TYPES)
    assert [vb.oid for vb in vbs][:2] == ["1.3.6.1.2.1.1.4.0", "1.3.6.1.4.1.1.1.0"]
    assert {vb.type for vb in vbs} == set(SETTABLE_TYPES)
    assert vbs[0].value == b'noc: "x" # y'
    assert vbs[1].value == -5 and vbs[2].type == "Integer"
    assert vbs[6].value == "192.0.2.1"
    assert vbs[7].value == "1.3.6.1.6.3.1"


def test_json_rendered_by_tojson_is_accepted() -> None:
    vbs = parse_varbinds('- {"oid": "1.3.6.1.2.1.1.6.0", "type": "OctetString", "value": "a \\u0027b\\u0027 \\u00e9"}\n')
    assert vbs == (Varbind(oid="1.3.6.1.2.1.1.6.0", type="OctetString", value="a 'b' é".encode()),)


def test_every_problem_is_listed_with_its_field() -> None:
    content = """
- {oid: 1.3.6.1.2.1.1.4.0, type: OctetString, value: 5}
- {oid: 1.3.6.1.2.1.1.5.0, type: Integer, value: true}
- {oid: 1.3.6.1.2.1.1.6.0, type: Integer, value: 2147483648}
- {oid: 1.3.6.1.2.1.1.7.0, type: Counter32, value: -1}
- {oid: sysName.0, type: OctetString, value: x}
- {oid: 1.3.6.1.2.1.1.8.0, type: Float, value: 1.5}
- {oid: 1.3.6.1.2.1.1.9.0, type: IpAddress, value: 300.1.1.1}
- {oid: 1.3.6.1.2.1.1.10.0, type: ObjectIdentifier, value: "1.3.x"}
- {oid: 1.3.6.1.2.1.1.11.0, type: OctetString}
- {oid: 1.3.6.1.2.1.1.12.0, type: OctetString, value: a, extra: 1}
- just a string
- {oid: 1.3.6.1.2.1.1.4.0, type: OctetString, value: again}
"""
    with pytest.raises(InputError) as err:
        parse_varbinds(content)
    fields = [v.field for v in err.value.violations]
    assert fields == [
        "content[0].value", "content[1].value", "content[2].value", "content[3].value", "content[4].oid",
        "content[5].type", "content[6].value", "content[7].value", "content[8]", "content[9]", "content[10]",
        "content[11].oid",
    ]
    text = str(err.value)
    assert "OctetString needs a string" in text and "outside -2147483648..2147483647" in text
    assert "not a numeric OID: 'sysName.0'" in text and "missing value" in text and "set twice" in text


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "rendered no varbinds"),
        ("# only a comment\n", "rendered no varbinds"),
        ("oid: 1.3.6.1.2.1.1.4.0\n", "must be a YAML list"),
        ("- {oid: 1.3\n", "not valid YAML at line"),
        ("".join(f"- {{oid: 1.3.6.1.4.1.1.{i}.0, type: Integer, value: 1}}\n" for i in range(65)), "at most 64"),
    ],
)
def test_bad_documents(content: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        parse_varbinds(content, field="system.content")


def test_oid_rules() -> None:
    assert normalize_oid(".1.3.6.1.2.1.1.4.0") == "1.3.6.1.2.1.1.4.0"
    for bad in ("1", "1.3.06.1", "3.1.2", "1.40.1", "1.3.6.1 .2", ""):
        with pytest.raises(ValueError):
            normalize_oid(bad)


def test_snapshot_round_trip_sorted_by_oid_arcs() -> None:
    vbs = [
        Varbind(oid="1.3.6.1.2.1.1.10.0", type="OctetString", value=b"\xff\x00binary"),
        Varbind(oid="1.3.6.1.2.1.1.9.0", type="OctetString", value="a\nb\u2028c \"q\"".encode()),
        Varbind(oid="1.3.6.1.2.1.1.99.0", type="noSuchObject"),
        Varbind(oid="1.3.6.1.2.1.1.3.0", type="TimeTicks", value=42),
        Varbind(oid="1.3.6.1.2.1.1.2.0", type="ObjectIdentifier", value="1.3.6.1.4.1.8072.3.2.10"),
        Varbind(oid="1.3.6.1.4.1.1.6.0", type="IpAddress", value="192.0.2.1"),
        Varbind(oid="1.3.6.1.4.1.1.8.0", type="Unsigned32", value=7),
    ]
    text = format_snapshot(vbs)
    assert text.splitlines() == [
        '1.3.6.1.2.1.1.2.0 = ObjectIdentifier: 1.3.6.1.4.1.8072.3.2.10',
        "1.3.6.1.2.1.1.3.0 = TimeTicks: 42",
        '1.3.6.1.2.1.1.9.0 = OctetString: "a\\nb\\u2028c \\"q\\""',
        "1.3.6.1.2.1.1.10.0 = OctetString: 0xff0062696e617279",
        "1.3.6.1.2.1.1.99.0 = noSuchObject",
        "1.3.6.1.4.1.1.6.0 = IpAddress: 192.0.2.1",
        "1.3.6.1.4.1.1.8.0 = Gauge32: 7",  # Unsigned32 and Gauge32 share one wire tag
    ]
    back = parse_snapshot(text)
    assert format_snapshot(back.values()) == text
    assert back["1.3.6.1.2.1.1.9.0"].value == "a\nb\u2028c \"q\"".encode()
    assert back["1.3.6.1.2.1.1.99.0"].is_exception


@pytest.mark.parametrize("line", ["1.3.6.1.2.1.1.4.0 OctetString x", "1.3.6.1.2.1.1.4.0 = OctetString: x",
                                  "x = Integer: 1", "1.3.6.1.2.1.1.4.0 = Integer: one", "1.3.6.1.2.1.1.4.0 = Foo: 1"])
def test_snapshot_parse_errors(line: str) -> None:
    with pytest.raises(SnapshotFormatError, match="bad SNMP snapshot line 1"):
        parse_snapshot(line)


def test_scope_is_sorted_and_deduplicated() -> None:
    scope = format_scope(["1.3.6.1.2.1.1.6.0", "1.3.6.1.2.1.1.10.0", "1.3.6.1.2.1.1.6.0", "1.3.6.1.2.1.1.4.0"])
    assert scope == "1.3.6.1.2.1.1.4.0\n1.3.6.1.2.1.1.6.0\n1.3.6.1.2.1.1.10.0"
    assert parse_scope(scope) == scope.splitlines()
    with pytest.raises(SnapshotFormatError):
        parse_scope("1.3.6.1.2.1.1.4.0\nsysName.0")


def test_diff_and_intended_state() -> None:
    before = parse_snapshot('1.3.6.1.2.1.1.4.0 = OctetString: "old"\n1.3.6.1.2.1.1.6.0 = OctetString: "same"')
    change = parse_varbinds('- {"oid": "1.3.6.1.2.1.1.4.0", "type": "OctetString", "value": "new"}\n'
                            '- {"oid": "1.3.6.1.2.1.1.6.0", "type": "OctetString", "value": "same"}')
    after = intended(before, change)
    assert diff_varbinds(before, after) == (
        '- 1.3.6.1.2.1.1.4.0 = OctetString: "old"\n+ 1.3.6.1.2.1.1.4.0 = OctetString: "new"')
    assert diff_varbinds(before, before) == ""
    assert diff_snapshots('1.3.6.1.2.1.1.4.0 = noSuchObject', '1.3.6.1.2.1.1.4.0 = OctetString: ""') == (
        '- 1.3.6.1.2.1.1.4.0 = noSuchObject\n+ 1.3.6.1.2.1.1.4.0 = OctetString: ""')


def test_codec_round_trips_every_type_through_pyasn1() -> None:
    vbs = parse_varbinds(ALL_TYPES)
    wire = codec.to_wire(vbs)
    back = [codec.from_wire(name, value) for name, value in wire]
    assert [vb.line for vb in back] == [vb.line for vb in vbs]
    assert [str(name) for name, _ in codec.get_request(["1.3.6.1.2.1.1.4.0"])] == ["1.3.6.1.2.1.1.4.0"]
    with pytest.raises(ValueError, match="cannot SET"):
        codec.to_wire([Varbind(oid="1.3.6.1.2.1.1.4.0", type="noSuchInstance")])


def test_codec_rejects_replies_that_do_not_answer_the_request() -> None:
    from pysnmp.proto import rfc1902

    pairs = codec.to_wire(parse_varbinds('- {"oid": "1.3.6.1.2.1.1.4.0", "type": "OctetString", "value": "x"}'))
    assert codec.decode_reply(["1.3.6.1.2.1.1.4.0"], pairs)[0].value == b"x"
    with pytest.raises(ValueError, match="answered for"):
        codec.decode_reply(["1.3.6.1.2.1.1.5.0"], pairs)
    with pytest.raises(ValueError, match="unsupported SNMP value type Null"):
        codec.from_wire(rfc1902.ObjectName("1.3.6.1.2.1.1.4.0"), rfc1902.Null())
