"""NETCONF operations as bytes, and the reply parser. Pure.

Builders return the body of an ``<rpc>`` (the session adds the envelope and message-id).
:func:`parse_reply` turns an ``<rpc-reply>`` into :class:`Reply`; :func:`raise_for_reply` raises
the gateway error the device's rpc-error calls for (lock-denied / in-use → LockDeniedError, any
other error → DeviceRejectedError), carrying the parsed :class:`DeviceErrorInfo`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping
from xml.sax.saxutils import escape

from lxml import etree

from drivers.netconf import xmlsafe
from drivers.errors import DeviceErrorInfo, DeviceRejectedError, LockDeniedError, Phase

log = logging.getLogger(__name__)

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
_NC = f"{{{NC_NS}}}"
DATASTORES = frozenset({"running", "candidate", "startup"})
LOCK_TAGS = frozenset({"lock-denied", "in-use"})


def _ds(name: str) -> bytes:
    if name not in DATASTORES:
        raise ValueError(f"unknown datastore {name!r}")
    return f"<{name}/>".encode()


# -- builders ---------------------------------------------------------------------------------
def lock(target: str = "candidate") -> bytes:
    return b"<lock><target>" + _ds(target) + b"</target></lock>"


def unlock(target: str = "candidate") -> bytes:
    return b"<unlock><target>" + _ds(target) + b"</target></unlock>"


def edit_config(config: bytes, *, target: str = "candidate", default_operation: str = "merge") -> bytes:
    """``config`` is a serialized ``<config>`` element in the NETCONF base namespace."""
    if default_operation not in ("merge", "replace", "none"):
        raise ValueError(f"bad default-operation {default_operation!r}")
    return (
        b"<edit-config><target>" + _ds(target) + b"</target><default-operation>"
        + default_operation.encode() + b"</default-operation>" + config + b"</edit-config>"
    )


def commit(*, confirm_timeout_s: int | None = None, persist: str | None = None, persist_id: str | None = None) -> bytes:
    """Plain commit; confirmed commit (``confirm_timeout_s``, optional ``persist``); the
    confirming commit of a persisted confirmed commit (``persist_id`` alone); or a follow-up
    confirmed commit (``confirm_timeout_s`` + ``persist_id`` of the pending one, RFC 6241
    8.4.5.1), which adds the new changes under the same revert timer."""
    if persist_id is not None and persist is not None and confirm_timeout_s is None:
        raise ValueError("a confirming commit (persist_id) cannot carry a new persist")
    if persist is not None and confirm_timeout_s is None:
        raise ValueError("persist needs a confirmed commit (confirm_timeout_s)")
    parts = [b"<commit>"]
    if confirm_timeout_s is not None:
        if confirm_timeout_s <= 0:
            raise ValueError("confirm_timeout_s must be positive")
        parts.append(b"<confirmed/><confirm-timeout>%d</confirm-timeout>" % confirm_timeout_s)
        if persist is not None:
            parts.append(b"<persist>" + escape(persist).encode() + b"</persist>")
    if persist_id is not None:
        parts.append(b"<persist-id>" + escape(persist_id).encode() + b"</persist-id>")
    parts.append(b"</commit>")
    return b"".join(parts)


def cancel_commit(*, persist_id: str | None = None) -> bytes:
    if persist_id is None:
        return b"<cancel-commit/>"
    return b"<cancel-commit><persist-id>" + escape(persist_id).encode() + b"</persist-id></cancel-commit>"


def discard_changes() -> bytes:
    return b"<discard-changes/>"


def validate(*, config: bytes | None = None, source: str = "candidate") -> bytes:
    """Validate an inline ``<config>`` (when given) or a datastore.

    netconfd 2.13 drops the candidate's changes at the next commit after ``<validate>`` of the
    candidate (quirk ``validate_drops_candidate``): the driver then validates inline config.
    """
    if config is not None:
        return b"<validate><source>" + config + b"</source></validate>"
    return b"<validate><source>" + _ds(source) + b"</source></validate>"


def get_config(*, source: str = "running", subtree: bytes | None = None) -> bytes:
    """``subtree`` is the content of a subtree filter (its top-level elements), or None for all."""
    body = b"<get-config><source>" + _ds(source) + b"</source>"
    if subtree is not None:
        body += b'<filter type="subtree">' + subtree + b"</filter>"
    return body + b"</get-config>"


def get(*, subtree: bytes) -> bytes:
    """``<get>`` (running configuration and operational state) with a subtree filter."""
    return b'<get><filter type="subtree">' + subtree + b"</filter></get>"


def close_session() -> bytes:
    return b"<close-session/>"


# -- replies ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Reply:
    ok: bool
    """No rpc-error of severity error."""
    errors: tuple[DeviceErrorInfo, ...] = ()
    warnings: tuple[DeviceErrorInfo, ...] = ()
    data: etree._Element | None = None


def _text(el: etree._Element, name: str) -> str:
    return (el.findtext(_NC + name) or "").strip()


def parse_error(err: etree._Element) -> DeviceErrorInfo:
    extra: list[tuple[str, str]] = []
    error_type = _text(err, "error-type")
    if error_type:
        extra.append(("error-type", error_type))
    app_tag = _text(err, "error-app-tag")
    if app_tag:
        extra.append(("error-app-tag", app_tag))
    info = err.find(_NC + "error-info")
    if info is not None:
        for child in info:
            if isinstance(child.tag, str):
                extra.append((etree.QName(child).localname, (child.text or "").strip()))
    return DeviceErrorInfo(
        message=_text(err, "error-message"),
        tag=_text(err, "error-tag"),
        path=_text(err, "error-path"),
        severity=_text(err, "error-severity") or "error",
        extra=tuple(extra),
    )


_PARSER = xmlsafe.make_parser()


def parse_reply(raw: bytes | etree._Element, *, want_data: bool = False) -> Reply:
    """Parse an ``<rpc-reply>``. Without ``want_data`` an error-free reply is not parsed at all
    (an ``<ok/>`` reply costs nothing); malformed XML raises ``lxml.etree.XMLSyntaxError``, a
    reply with a DOCTYPE or nested deeper than :data:`.xmlsafe.MAX_DEPTH` raises
    :class:`.xmlsafe.UnsafeXmlError`."""
    if isinstance(raw, bytes):
        if not want_data and b"rpc-error" not in raw and b"<!DOCTYPE" not in raw:
            return _OK_REPLY
        reply = xmlsafe.parse(raw, _PARSER, what="rpc-reply from the device")
    else:
        reply = raw
    errors: list[DeviceErrorInfo] = []
    warnings: list[DeviceErrorInfo] = []
    for err in reply.iterchildren(_NC + "rpc-error"):
        info = parse_error(err)
        (warnings if info.severity == "warning" else errors).append(info)
    return Reply(ok=not errors, errors=tuple(errors), warnings=tuple(warnings), data=reply.find(_NC + "data"))


_OK_REPLY = Reply(ok=True)


def error_matches(info: DeviceErrorInfo, rule: Mapping[str, object]) -> bool:
    """Does a device error match a profile rule (keys: tag, message, path, app_tag, number)?"""
    extra = dict(info.extra)
    checks = {
        "tag": info.tag,
        "message": info.message,
        "path": info.path,
        "app_tag": extra.get("error-app-tag", ""),
        "number": extra.get("error-number", ""),
    }
    for key, want in rule.items():
        if key not in checks:
            raise ValueError(f"unknown error-rule key {key!r}")
        if str(want) != checks[key]:
            return False
    return True


def raise_for_reply(reply: Reply, *, operation: str, device: str, phase: Phase) -> None:
    """Raise the gateway error for the reply's rpc-errors, if any."""
    if reply.ok:
        for w in reply.warnings:
            log.warning("device %s warned on %s: %s", device, operation, w)
        return
    first = reply.errors[0]
    more = f" (+{len(reply.errors) - 1} more)" if len(reply.errors) > 1 else ""
    message = f"{operation} failed: {first}{more}"
    cls = LockDeniedError if first.tag in LOCK_TAGS else DeviceRejectedError
    raise cls(message, device=device, phase=phase, info=first)


def has_ok(reply: etree._Element) -> bool:
    return reply.find(_NC + "ok") is not None


__all__ = [
    "Reply",
    "cancel_commit",
    "close_session",
    "commit",
    "discard_changes",
    "edit_config",
    "error_matches",
    "get",
    "get_config",
    "has_ok",
    "lock",
    "parse_error",
    "parse_reply",
    "raise_for_reply",
    "unlock",
    "validate",
]
