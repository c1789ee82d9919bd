"""What an SNMP agent sends back is untrusted: an unreadable varbind is a device error, never a
pyasn1 exception escaping the driver (pure)."""

from __future__ import annotations

import pytest
from pysnmp.proto import rfc1902

from drivers.snmp import codec
from drivers.snmp.errors import translate
from gateway import errors as e

OID = rfc1902.ObjectName("1.3.6.1.2.1.1.5.0")


@pytest.mark.parametrize("value", [rfc1902.Integer32(), rfc1902.OctetString(), rfc1902.IpAddress(),
                                   rfc1902.ObjectIdentifier(), rfc1902.Counter64(), rfc1902.Null(), object()],
                         ids=["int-no-value", "octets-no-value", "ip-no-value", "oid-no-value", "c64-no-value",
                              "null", "not-asn1"])
def test_unreadable_varbinds_are_reply_errors(value: object) -> None:
    with pytest.raises(codec.ReplyError):
        codec.from_wire(OID, value)
    with pytest.raises(codec.ReplyError):
        codec.decode_reply(["1.3.6.1.2.1.1.5.0"], [(OID, value)])


def test_large_values_are_read_as_they_are() -> None:  # a datagram bounds them (pysnmp drops what it cannot decode)
    vb = codec.from_wire(OID, rfc1902.OctetString(b"z" * 65_000))
    assert vb.value == b"z" * 65_000
    assert codec.from_wire(OID, rfc1902.Counter64(2**64 - 1)).value == 2**64 - 1


def test_a_reply_error_is_a_non_retryable_device_reply_error() -> None:
    err = translate(device="s1", phase=e.Phase.VERIFY, operation="GET", timeout_s=3,
                    exc=codec.ReplyError("the agent answered for ['1.2'], asked for ['1.3']"))
    assert type(err) is e.DeviceReplyError and not err.retryable and "s1" in str(err)
    other = translate(device="s1", phase=e.Phase.PUSH, operation="SET", timeout_s=3, exc=ValueError("ours"))
    assert type(other) is e.ConnectError  # only the agent's reply is a reply error
