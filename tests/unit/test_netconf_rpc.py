"""RPC builders and the rpc-reply parser (recorded netconfd replies)."""

from __future__ import annotations

import pytest
from lxml import etree

from drivers.netconf import rpc
from gateway.errors import DeviceRejectedError, LockDeniedError, Phase

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"

# replies in the shape netconfd 2.13 sends them (see the integration test for the live ones)
INVALID_VALUE = f"""<rpc-reply xmlns="{NC}" message-id="3"><rpc-error>
<error-type>application</error-type><error-tag>invalid-value</error-tag><error-severity>error</error-severity>
<error-app-tag>data-invalid-value</error-app-tag>
<error-path>/nc:config/if:interfaces/if:interface[if:name='ge1']/if:enabled</error-path>
<error-message xml:lang="en">invalid value</error-message>
<error-info><bad-value>notabool</bad-value><error-number xmlns="http://netconfcentral.org/ns/yuma-ncx">258</error-number></error-info>
</rpc-error></rpc-reply>""".encode()
LOCK_DENIED = f"""<rpc-reply xmlns="{NC}" message-id="4"><rpc-error><error-type>protocol</error-type>
<error-tag>lock-denied</error-tag><error-severity>error</error-severity>
<error-message xml:lang="en">lock denied</error-message><error-info><session-id>5</session-id></error-info>
</rpc-error></rpc-reply>""".encode()
NO_PENDING = f"""<rpc-reply xmlns="{NC}" message-id="2"><rpc-error><error-type>protocol</error-type>
<error-tag>operation-failed</error-tag><error-severity>error</error-severity><error-app-tag>general-error</error-app-tag>
<error-message xml:lang="en">operation failed</error-message>
<error-info><error-number xmlns="http://netconfcentral.org/ns/yuma-ncx">274</error-number></error-info>
</rpc-error></rpc-reply>""".encode()
WARNING = f"""<rpc-reply xmlns="{NC}" message-id="5"><rpc-error><error-type>application</error-type>
<error-tag>operation-failed</error-tag><error-severity>warning</error-severity>
<error-message>careful</error-message></rpc-error><ok/></rpc-reply>""".encode()


def _parse(body: bytes) -> etree._Element:
    return etree.fromstring(b'<rpc xmlns="%s">%s</rpc>' % (NC.encode(), body))[0]


def test_lock_unlock() -> None:
    assert rpc.lock() == b"<lock><target><candidate/></target></lock>"
    assert rpc.unlock("running") == b"<unlock><target><running/></target></unlock>"
    with pytest.raises(ValueError):
        rpc.lock("nonsense")


def test_edit_config_merge_candidate() -> None:
    el = _parse(rpc.edit_config(b'<config xmlns="%s"><x xmlns="urn:x">1</x></config>' % NC.encode()))
    assert el.findtext(f"{{{NC}}}default-operation") == "merge"
    assert el.find(f"{{{NC}}}target/{{{NC}}}candidate") is not None
    assert el.find(f"{{{NC}}}config/{{urn:x}}x").text == "1"
    with pytest.raises(ValueError):
        rpc.edit_config(b"<config/>", default_operation="bogus")


def test_commit_variants() -> None:
    assert rpc.commit() == b"<commit></commit>"
    el = _parse(rpc.commit(confirm_timeout_s=30, persist="a&b"))
    assert el.find(f"{{{NC}}}confirmed") is not None
    assert el.findtext(f"{{{NC}}}confirm-timeout") == "30"
    assert el.findtext(f"{{{NC}}}persist") == "a&b"  # escaped on the wire, intact after parsing
    el = _parse(rpc.commit(persist_id="p<1>"))
    assert el.findtext(f"{{{NC}}}persist-id") == "p<1>"
    assert el.find(f"{{{NC}}}confirmed") is None
    el = _parse(rpc.commit(confirm_timeout_s=10, persist="x", persist_id="x"))  # follow-up confirmed commit
    assert el.find(f"{{{NC}}}confirmed") is not None
    assert el.findtext(f"{{{NC}}}persist-id") == "x" and el.findtext(f"{{{NC}}}persist") == "x"
    with pytest.raises(ValueError):
        rpc.commit(persist="y", persist_id="x")
    with pytest.raises(ValueError):
        rpc.commit(persist="x")
    with pytest.raises(ValueError):
        rpc.commit(confirm_timeout_s=0)


def test_cancel_discard_validate_get() -> None:
    assert rpc.cancel_commit() == b"<cancel-commit/>"
    assert _parse(rpc.cancel_commit(persist_id="z")).findtext(f"{{{NC}}}persist-id") == "z"
    assert rpc.discard_changes() == b"<discard-changes/>"
    inline = _parse(rpc.validate(config=b'<config xmlns="%s"/>' % NC.encode()))
    assert inline.find(f"{{{NC}}}source/{{{NC}}}config") is not None
    assert inline.find(f"{{{NC}}}source/{{{NC}}}candidate") is None
    assert _parse(rpc.validate()).find(f"{{{NC}}}source/{{{NC}}}candidate") is not None
    el = _parse(rpc.get_config(subtree=b'<a xmlns="urn:a"/>'))
    assert el.find(f"{{{NC}}}filter").get("type") == "subtree"
    assert el.find(f"{{{NC}}}filter/{{urn:a}}a") is not None
    assert b"filter" not in rpc.get_config(source="candidate")


def test_parse_invalid_value() -> None:
    reply = rpc.parse_reply(INVALID_VALUE)
    assert not reply.ok
    (info,) = reply.errors
    assert info.tag == "invalid-value"
    assert info.path == "/nc:config/if:interfaces/if:interface[if:name='ge1']/if:enabled"
    assert info.message == "invalid value"
    assert info.severity == "error"
    assert ("bad-value", "notabool") in info.extra
    assert ("error-type", "application") in info.extra
    with pytest.raises(DeviceRejectedError) as ei:
        rpc.raise_for_reply(reply, operation="edit-config", device="nc1", phase=Phase.PUSH)
    assert ei.value.info is info and ei.value.device == "nc1" and ei.value.phase is Phase.PUSH
    assert "invalid-value" in str(ei.value)


def test_lock_denied_maps_to_lock_error() -> None:
    with pytest.raises(LockDeniedError) as ei:
        rpc.raise_for_reply(rpc.parse_reply(LOCK_DENIED), operation="lock", device="nc1", phase=Phase.LOCK)
    assert ei.value.retryable and ei.value.info.tag == "lock-denied"


def test_ok_reply_fast_path_and_data() -> None:
    ok = b'<rpc-reply xmlns="%s" message-id="1"><ok/></rpc-reply>' % NC.encode()
    assert rpc.parse_reply(ok).ok
    data = rpc.parse_reply(b'<rpc-reply xmlns="%s"><data><x xmlns="urn:x">1</x></data></rpc-reply>' % NC.encode(), want_data=True)
    assert data.ok and data.data is not None and data.data[0].text == "1"
    with pytest.raises(etree.XMLSyntaxError):
        rpc.parse_reply(b"<rpc-reply><data>", want_data=True)


def test_warning_is_not_an_error() -> None:
    reply = rpc.parse_reply(WARNING)
    assert reply.ok and reply.warnings[0].message == "careful"
    rpc.raise_for_reply(reply, operation="commit", device="d", phase=Phase.COMMIT)


def test_error_rules() -> None:
    (info,) = rpc.parse_reply(NO_PENDING).errors
    assert rpc.error_matches(info, {"tag": "operation-failed", "number": "274"})
    assert not rpc.error_matches(info, {"tag": "operation-failed", "number": "380"})
    (other,) = rpc.parse_reply(INVALID_VALUE).errors
    assert not rpc.error_matches(other, {"tag": "operation-failed", "number": "274"})
    with pytest.raises(ValueError):
        rpc.error_matches(info, {"colour": "red"})
