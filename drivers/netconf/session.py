"""A NETCONF session: hello exchange, framing choice, message-ids, request/reply with timeouts.

Protocol errors here are this module's own (:class:`RpcTimeout`, :class:`SessionClosed`,
:class:`ProtocolError`) or asyncssh/OS errors from the transport; the driver translates all of
them into :mod:`drivers.errors` in one place. A timeout or a framing error kills the session (the
connection is aborted, so a late reply can never be taken for the answer to a later request).
A message over ``SessionOptions.max_reply_bytes``, or a hello the driver refuses to parse
(:mod:`.xmlsafe`), aborts the session with :class:`ReplyRefused`, which every pending request
gets as its error.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from dataclasses import dataclass

import asyncssh
from lxml import etree

from drivers.netconf import xmlsafe
from drivers.netconf.framing import Decoder, FramingError, MessageTooLarge, encode_chunked, encode_eom
from drivers.netconf.transport import SshOptions, Transport

log = logging.getLogger(__name__)

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
BASE_10 = "urn:ietf:params:netconf:base:1.0"
BASE_11 = "urn:ietf:params:netconf:base:1.1"
CLIENT_CAPABILITIES = (BASE_10, BASE_11)

_PARSER = xmlsafe.make_parser()
DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024
_MESSAGE_ID = re.compile(rb"""\smessage-id\s*=\s*["']([^"']*)["']""")
_HELLO_TAG = f"{{{NC_NS}}}hello"


class RpcTimeout(Exception):
    """No reply within the operation's timeout; the session has been aborted."""


class SessionClosed(Exception):
    """The session is closed or was lost."""


class ProtocolError(Exception):
    """The peer broke the protocol (framing, hello, malformed XML); the session has been aborted."""


class ReplyRefused(ProtocolError):
    """The peer sent a message the gateway refuses (over ``max_reply_bytes``, or unsafe XML); the
    session has been aborted. Retrying cannot help: the device would send the same."""

    def __init__(self, message: str, *, limit_bytes: int | None = None) -> None:
        super().__init__(message)
        self.limit_bytes = limit_bytes
        """The ``max_reply_bytes`` limit that was exceeded (None: refused for another reason)."""


@dataclass(frozen=True, kw_only=True)
class SessionOptions:
    hello_timeout_s: float = 10.0
    hello_settle_ms: float = 0.0
    """Pause after the hello before the first RPC (netconfd 2.13 drops RPCs sent right after it)."""
    prefer_chunked: bool = True
    """Advertise base:1.1 (chunked framing); used when the server advertises it too."""
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    """Largest message accepted from the server (hello and replies); more aborts the session."""


def _hello(capabilities: tuple[str, ...]) -> bytes:
    caps = "".join(f"<capability>{c}</capability>" for c in capabilities)
    return f'<?xml version="1.0" encoding="UTF-8"?><hello xmlns="{NC_NS}"><capabilities>{caps}</capabilities></hello>'.encode()


class NetconfSession:
    """One NETCONF session. Use :meth:`connect`; then :meth:`rpc` one request at a time or several."""

    def __init__(self, *, options: SessionOptions) -> None:
        self.options = options
        self.session_id: str = ""
        self.server_capabilities: frozenset[str] = frozenset()
        self.chunked = False
        self._decoder = Decoder(max_message_bytes=options.max_reply_bytes)
        self._transport: Transport | None = None
        self._ids = itertools.count(1)
        self._waiters: dict[str, asyncio.Future[bytes]] = {}
        self._hello: asyncio.Future[etree._Element] | None = None
        self._dead: BaseException | None = None
        self._hello_done = False

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        ssh: SshOptions,
        *,
        options: SessionOptions,
        conn_options: asyncssh.SSHClientConnectionOptions | None = None,
    ) -> "NetconfSession":
        """Open the transport and exchange hellos, within ``ssh.connect_timeout_s`` overall."""
        self = cls(options=options)
        loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        try:
            async with asyncio.timeout(ssh.connect_timeout_s):
                self._transport = await Transport.open(
                    ssh, on_data=self._on_data, on_lost=self._on_lost, conn_options=conn_options
                )
                caps = CLIENT_CAPABILITIES if options.prefer_chunked else (BASE_10,)
                self._transport.write(encode_eom(_hello(caps)))
                hello = await self._hello
        except TimeoutError:
            self._kill(RpcTimeout("no NETCONF hello from the server in time"))
            raise RpcTimeout(f"no NETCONF session within {ssh.connect_timeout_s} s") from None
        except BaseException:
            self._kill(SessionClosed("connect failed"))
            raise
        self._read_hello(hello)
        if options.hello_settle_ms > 0:
            await asyncio.sleep(options.hello_settle_ms / 1000)
        return self

    def _read_hello(self, hello: etree._Element) -> None:
        caps = frozenset(
            (c.text or "").strip() for c in hello.iter(f"{{{NC_NS}}}capability")
        )
        self.server_capabilities = caps
        self.session_id = (hello.findtext(f"{{{NC_NS}}}session-id") or "").strip()
        log.debug("netconf session %s, %d server capabilities, chunked=%s", self.session_id, len(caps), self.chunked)

    @property
    def is_open(self) -> bool:
        return self._dead is None and self._transport is not None and not self._transport.closing

    async def close(self) -> None:
        """Send close-session if the session is healthy, then close the transport. Never raises."""
        transport = self._transport
        if transport is None:
            return
        if self.is_open:
            try:
                await self.rpc(b"<close-session/>", timeout_s=2.0)
            except Exception:  # noqa: BLE001 - best effort
                pass
        self._kill(SessionClosed("session closed"), abort=False)
        await transport.close()

    def abort(self, reason: BaseException) -> None:
        """Kill the session now (timeout, framing error): pending and later calls fail."""
        self._kill(reason)

    # -- request / reply ---------------------------------------------------------------------
    def has_capability(self, prefix: str) -> bool:
        return any(c == prefix or c.startswith(prefix + "?") for c in self.server_capabilities)

    async def rpc(self, body: bytes, *, timeout_s: float) -> bytes:
        """Send ``<rpc>body</rpc>``; return the raw ``<rpc-reply>`` message (parse it with :mod:`.rpc`).

        The timeout is a plain timer on the reply future (cheaper than ``asyncio.wait_for``); when
        it fires the session is aborted, so a late reply can never answer a later request.
        """
        if self._dead is not None:
            raise SessionClosed(f"session is not usable: {self._dead}")
        assert self._transport is not None
        msg_id = str(next(self._ids))
        message = b'<rpc xmlns="' + NC_NS.encode() + b'" message-id="' + msg_id.encode() + b'">' + body + b"</rpc>"
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        self._waiters[msg_id] = fut
        timer = loop.call_later(timeout_s, self._expire, msg_id, timeout_s)
        try:
            self._transport.write(encode_chunked(message) if self.chunked else encode_eom(message))
            return await fut
        finally:
            timer.cancel()
            self._waiters.pop(msg_id, None)

    def _expire(self, msg_id: str, timeout_s: float) -> None:
        fut = self._waiters.get(msg_id)
        if fut is not None and not fut.done():
            fut.set_exception(RpcTimeout(f"no reply within {timeout_s} s"))
            self._kill(RpcTimeout(f"no reply to message-id {msg_id} within {timeout_s} s"))

    # -- transport callbacks -------------------------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        try:
            if not self._hello_done:
                msgs = self._decoder.feed(data, limit=1)
                if not msgs:
                    return
                self._handle_hello(msgs[0])
                data = b""
            for raw in self._decoder.feed(data):
                self._handle_message(raw)
        except MessageTooLarge as exc:
            log.warning("netconf message over max_reply_bytes (%d bytes), aborting session", exc.limit)
            self._kill(ReplyRefused(f"a message from the server exceeds max_reply_bytes ({exc.limit} bytes)",
                                    limit_bytes=exc.limit))
        except xmlsafe.UnsafeXmlError as exc:
            log.warning("netconf hello refused, aborting session: %s", exc)
            self._kill(ReplyRefused(str(exc)))
        except (FramingError, etree.XMLSyntaxError, ProtocolError) as exc:  # the session cannot go on
            log.warning("netconf protocol error, aborting session: %s", exc)
            self._kill(ProtocolError(str(exc)))

    def _handle_hello(self, raw: bytes) -> None:
        root = xmlsafe.parse(raw, _PARSER, what="hello from the device")
        if root.tag != _HELLO_TAG:
            raise ProtocolError(f"expected <hello>, got <{etree.QName(root).localname}>")
        self._hello_done = True
        caps = {(c.text or "").strip() for c in root.iter(f"{{{NC_NS}}}capability")}
        if self.options.prefer_chunked and BASE_11 in caps:
            self.chunked = True
            self._decoder.use_chunked()
        elif BASE_10 not in caps:
            raise ProtocolError("server advertises neither base:1.0 nor base:1.1")
        if self._hello is not None and not self._hello.done():
            self._hello.set_result(root)

    def _handle_message(self, raw: bytes) -> None:
        # Only the root start tag is looked at here (message-id); the driver parses the body.
        start = raw.find(b"?>") + 2 if raw.startswith(b"<?xml") else 0  # skip an XML declaration
        head_end = raw.find(b">", start)
        head = raw[start:head_end] if head_end > 0 else raw[start:]
        if b"rpc-reply" not in head:
            log.debug("ignoring a non-reply message: %r", head[:80])
            return
        m = _MESSAGE_ID.search(head)
        msg_id = m.group(1).decode() if m else None
        fut = self._waiters.get(msg_id) if msg_id is not None else None
        if fut is None and msg_id is None and len(self._waiters) == 1:
            fut = next(iter(self._waiters.values()))  # some errors come back without a message-id
        if fut is None:
            log.warning("reply to unknown message-id %r ignored", msg_id)
            return
        if not fut.done():
            fut.set_result(raw)

    def _on_lost(self, exc: BaseException | None) -> None:
        self._kill(SessionClosed(f"connection lost: {exc}" if exc else "the server closed the session"), abort=False)

    def _kill(self, reason: BaseException, *, abort: bool = True) -> None:
        if self._dead is None:
            self._dead = reason

        def error() -> Exception:  # a refusal keeps its type (not retryable); anything else: closed
            if isinstance(reason, ReplyRefused):
                return ReplyRefused(str(reason), limit_bytes=reason.limit_bytes)
            return SessionClosed(str(reason))

        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(error())
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(error())
            self._hello.exception()  # mark retrieved: nobody may be awaiting it any more
        if abort and self._transport is not None:
            self._transport.abort()


__all__ = [
    "BASE_10",
    "BASE_11",
    "NC_NS",
    "NetconfSession",
    "ProtocolError",
    "ReplyRefused",
    "RpcTimeout",
    "SessionClosed",
    "SessionOptions",
]
