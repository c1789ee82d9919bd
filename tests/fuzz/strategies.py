"""Hypothesis strategies for hostile gRPC requests, built from the message descriptors.

:func:`messages` walks a request's descriptor: every field is left unset or drawn from a
strategy for its type — strings mixing plausible values (known devices, services, task ids) with
hostile text (control characters, terminal escapes, Unicode separators and bidi controls, 60,000
characters, path and SQL look-alikes), integers and enums at and beyond their ranges, NaN and
infinities, timestamps outside 0001..9999, Structs nested up to 60 levels, repeated fields from
empty to thousands of entries. Large values are built from a few drawn choices (a character times
a length), so Hypothesis's own buffer stays small. :data:`MALFORMED` and :func:`raw_bodies` are
bytes no request type accepts, or any bytes at all.
"""

from __future__ import annotations

from typing import Any, Callable

from google.protobuf import message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import strategies as st

FD = FieldDescriptor

CONTROL = ["\x00", "\x07", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]
NASTY = [
    "", " ", "\x1b[2J\x1b[H", "\x1b]0;owned\x07", "\x9b31m", "line\u2028break", "\u202eevil", "\ufeff", "%s%n%x",
    "../../../etc/passwd", "/etc/agw/credentials.yaml", "' OR 1=1 --", "${jndi:x}", "{{ 7*7 }}", "<x/>", "\x00id",
    "é", "\U0001f600", "t1", "t1 ",
]
BIG_CHARS = ["x", "é", "\U0001f600", "\x1b", "%", "\u2028"]
BIG_LENGTHS = [65, 257, 4097, 60_000]

PLAUSIBLE: dict[str, list[str]] = {
    "request_id": ["fuzz-1", "fuzz-2", "fuzz-3"],
    "order_ref": ["ORD-1"],
    "device": ["nc1", "cli1", "snmp1", "nc2", "ghost"],
    "service": ["interface", "system", "prefix-list", "static-route", "vpn", "agw.activation.v1.ActivationService"],
    "id": ["t1", "t2", "t3"],
    "task_id": ["t1", "t2"],
    "depends_on": ["t1", "t2", "t3"],
    "note": ["fixed by hand", "replaced the optic\tticket 7"],
}
"""Field name → values the gateway may accept, so that requests also get past the edge."""

INT_EDGES = {
    FD.TYPE_INT32: [0, 1, -1, 2**31 - 1, -(2**31)],
    FD.TYPE_UINT32: [0, 1, 300_000, 300_001, 2**32 - 1],
    FD.TYPE_INT64: [0, 1, -1, 2**63 - 1, -(2**63), 253402300800, -62135596801],
    FD.TYPE_ENUM: [0, 1, 2, 3, 8, 9, 42, -1, 2**31 - 1, -(2**31)],
}
INT_RANGE = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_ENUM: (-(2**31), 2**31 - 1),
}

hostile_text: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=24),
    st.text(alphabet=st.sampled_from(CONTROL + ["a", "é"]), min_size=1, max_size=12),
    st.builds(lambda c, n: c * n, st.sampled_from(BIG_CHARS), st.sampled_from(BIG_LENGTHS)),
    st.builds(lambda a, b: a + b, st.sampled_from(["t1", "nc1", "ORD-"]), st.sampled_from(CONTROL)),
)


def text_for(name: str) -> st.SearchStrategy[str]:
    pool = PLAUSIBLE.get(name)
    return st.one_of(st.sampled_from(pool), hostile_text) if pool else hostile_text


def nested(levels: int, *, in_list: bool = False) -> struct_pb2.Value:
    """A Value ``levels`` containers deep."""
    v = struct_pb2.Value(string_value="x")
    for _ in range(levels):
        outer = struct_pb2.Value()
        if in_list:
            outer.list_value.values.add().CopyFrom(v)
        else:
            outer.struct_value.fields["a"].CopyFrom(v)
        v = outer
    return v


_leaves = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70).map(float), hostile_text,
)
_trees = st.recursive(
    _leaves,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(text_for("key"), children, max_size=3)),
    max_leaves=12,
)


def _value(tree: Any) -> struct_pb2.Value:
    s = struct_pb2.Struct()
    s.update({"v": tree})
    return s.fields["v"]


values: st.SearchStrategy[struct_pb2.Value] = st.one_of(
    _trees.map(_value),
    st.builds(nested, st.integers(min_value=14, max_value=60), in_list=st.booleans()),
)

VALID_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "interface": [{"name": "eth1", "description": "uplink"}, {"name": "lo10", "enabled": True}],
    "system": [{"contact": "noc@example.net", "location": "POP 3"}],
    "prefix-list": [{"name": "PL-A", "seq": 10, "rule": "permit", "prefix": "203.0.113.0/24"}],
    "static-route": [{"prefix": "198.51.100.0/24", "nexthop": "192.0.2.1"}],
}


@st.composite
def structs(draw: Callable[..., Any]) -> struct_pb2.Struct:
    """Parameters: a plausible set, with hostile names and values mixed in, or hostile only."""
    s = struct_pb2.Struct()
    if draw(st.booleans()):
        service = draw(st.sampled_from(sorted(VALID_PARAMETERS)))
        s.update(draw(st.sampled_from(VALID_PARAMETERS[service])))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        s.fields[draw(text_for("key"))].CopyFrom(draw(values))
    return s


def timestamps(cls: Any) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda s, n: cls(seconds=s, nanos=n),
        st.one_of(st.sampled_from(INT_EDGES[FD.TYPE_INT64]), st.integers(-(2**63), 2**63 - 1)),
        st.sampled_from([0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31)]),
    )


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_STRING:
        return text_for(field.name)
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=64 if field.type == FD.TYPE_DOUBLE else 32)
    if field.type in INT_RANGE:
        lo, hi = INT_RANGE[field.type]
        return st.one_of(st.sampled_from(INT_EDGES[field.type]), st.integers(min_value=lo, max_value=hi))
    if field.type == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    raise NotImplementedError(f"no strategy for field {field.full_name} of type {field.type}")


def _single(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type != FD.TYPE_MESSAGE:
        return _scalar(field)
    name = field.message_type.full_name
    if name == "google.protobuf.Struct":
        return structs()
    if name == "google.protobuf.Value":
        return values
    if name == "google.protobuf.Timestamp":
        return timestamps(message_factory.GetMessageClass(field.message_type))
    return messages(field.message_type, depth=depth + 1)


HUGE_FIELD_BYTES = 3 * 1024 * 1024
"""A huge repeated field (top level only) holds at most this much: requests stay near the
gateway's 8 MiB receive limit instead of growing without bound (copies of a 60,000-character
item, 10,000 times, would be gigabytes in the client before anything is sent)."""


def _size(item: Any) -> int:
    return len(item.encode()) + 3 if isinstance(item, str) else int(getattr(item, "ByteSize", lambda: 8)()) + 3


def _copies(item: Any, n: int) -> list[Any]:
    return [item] * max(1, min(n, HUGE_FIELD_BYTES // _size(item)))


def _repeated(field: FieldDescriptor, depth: int) -> st.SearchStrategy[list[Any]]:
    one = _single(field, depth)
    few = st.lists(one, max_size=3)
    if depth > 0:  # huge repeated fields inside repeated items would multiply
        return few
    counts = [1001, 2500] if field.name == "tasks" else [1001, 10_000]
    return st.one_of(few, st.builds(_copies, one, st.sampled_from(counts)))


def messages(descriptor: Descriptor, *, depth: int = 0) -> st.SearchStrategy[Any]:
    """Instances of ``descriptor``'s message with any subset of its fields set, hostile values."""
    cls = message_factory.GetMessageClass(descriptor)
    fields = {f.name: (_repeated(f, depth) if f.is_repeated else _single(f, depth)) for f in descriptor.fields}

    def build(chosen: dict[str, Any]) -> Any:
        msg = cls()
        for name, value in chosen.items():
            field = descriptor.fields_by_name[name]
            try:
                if field.is_repeated and field.type == FD.TYPE_MESSAGE:
                    for item in value:  # add + CopyFrom: extend would re-parse, refusing deep items
                        getattr(msg, name).add().CopyFrom(item)
                elif field.is_repeated:
                    getattr(msg, name).extend(value)
                elif field.type == FD.TYPE_MESSAGE:
                    getattr(msg, name).CopyFrom(value)
                else:
                    setattr(msg, name, value)
            except (DecodeError, ValueError, TypeError):  # protobuf's own library refuses (copying
                msg.ClearField(name)  # a message nested beyond its limit): leave the field unset
        return msg

    return st.fixed_dictionaries({}, optional=fields).map(build)


DEVICE_SERVICES = {"nc1": ["interface", "system"], "nc2": ["interface"], "cli1": ["prefix-list", "static-route", "interface"],
                   "snmp1": ["system"]}


@st.composite
def plausible_tasks(draw: Callable[..., Any], tid: str) -> Any:
    from gateway.api.generated.activation.v1 import activation_pb2 as pb

    device = draw(st.sampled_from(sorted(DEVICE_SERVICES)))
    service = draw(st.sampled_from(DEVICE_SERVICES[device]))
    task = pb.Task(id=tid, device=device, service=service,
                   action=draw(st.sampled_from([pb.ACTION_CREATE, pb.ACTION_MODIFY, pb.ACTION_DELETE])))
    task.parameters.update(draw(st.sampled_from(VALID_PARAMETERS[service])))
    if draw(st.integers(min_value=0, max_value=3)) == 0:  # one hostile parameter, 1 in 4
        task.parameters.fields[draw(text_for("key"))].CopyFrom(draw(values))
    return task


@st.composite
def plausible_submits(draw: Callable[..., Any]) -> Any:
    """Submit requests the gateway accepts, mostly: known devices and services, valid parameters,
    fresh or repeated request ids (idempotency and conflicts), an occasional hostile field."""
    from gateway.api.generated.activation.v1 import activation_pb2 as pb

    n = draw(st.integers(min_value=1, max_value=3))
    tasks = [draw(plausible_tasks(f"t{i}")) for i in range(1, n + 1)]
    for i, t in enumerate(tasks[1:], start=1):
        if draw(st.booleans()):
            t.depends_on.append(f"t{draw(st.integers(min_value=1, max_value=i))}")
    rid = draw(st.one_of(st.uuids().map(str), st.integers(min_value=0, max_value=20).map(str)))  # new, or again
    msg = pb.SubmitRequest(request_id=f"plausible-{rid}")
    for t in tasks:
        msg.tasks.add().CopyFrom(t)
    if draw(st.booleans()):
        msg.atomic = draw(st.booleans())
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        msg.order_ref = draw(text_for("order_ref"))
    return msg


# -- raw bytes --------------------------------------------------------------------------------
MALFORMED: dict[str, bytes] = {
    "garbage": b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    "truncated length": b"\x0a\x40abc",
    "truncated varint": b"\x08\x80",
    "overlong varint": b"\x08" + b"\x80" * 11 + b"\x01",
    "huge length": b"\x0a\xff\xff\xff\xff\x07abc",
    "end group without start": b"\x0c",
    "wire type 7": b"\x0f",
    "field number 0": b"\x00\x01",
    "nested groups": b"\x7b" * 200 + b"\x7c" * 200,
    "unterminated group": b"\x7b\x08\x01",
}
"""Bytes that are not a valid message of any of our request types."""

VALID_ODDITIES: dict[str, bytes] = {
    "empty": b"",
    "unknown varint field": b"\xf8\x3f\x01",
    "unknown length-delimited field": b"\xfa\x3f\x03abc",
    "unknown fixed64": b"\xf9\x3f" + b"\x00" * 8,
}
"""Bytes every request type accepts (unknown fields are kept, not refused)."""


def invalid_utf8(descriptor: Descriptor) -> dict[str, bytes]:
    """A message whose first string field holds bytes that are not UTF-8 (if it has one)."""
    for f in descriptor.fields:
        if f.type == FD.TYPE_STRING and f.number < 16:
            return {"invalid UTF-8": bytes([f.number << 3 | 2, 3]) + b"a\xc3\x28",
                    "lone surrogate": bytes([f.number << 3 | 2, 3]) + b"\xed\xa0\x80"}
    return {}


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` truncated, with bytes flipped, inserted or repeated: mostly malformed."""
    n = max(len(valid), 1)
    return st.one_of(
        st.integers(min_value=0, max_value=n).map(lambda k: valid[:k]),
        st.builds(lambda i, b: valid[:i] + bytes([b]) + valid[i + 1:], st.integers(0, n - 1), st.integers(0, 255)),
        st.builds(lambda i, junk: valid[:i] + junk + valid[i:], st.integers(0, n), st.binary(min_size=1, max_size=8)),
        st.integers(min_value=2, max_value=50).map(lambda k: valid * k),
        st.binary(max_size=64),
    )


__all__ = [
    "MALFORMED",
    "VALID_ODDITIES",
    "hostile_text",
    "invalid_utf8",
    "messages",
    "mutations",
    "nested",
    "plausible_submits",
    "values",
]
