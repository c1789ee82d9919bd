"""The NETCONF protocol floor: the fewest steps a client can take for a verified activation.

A raw asyncssh channel with hand-made framing (``]]>]]>`` for the hello, then base:1.1 chunks:
netconfd refuses ``<persist>`` on a base:1.0 session), sessions opened beforehand, no XML
parsing beyond what verification needs (a substring check of the read-back). Six RPCs:
lock candidate, edit-config, commit confirmed (persist), get-config subtree, confirming commit,
unlock. Reused by the gateway benchmark as its baseline.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncssh

log = logging.getLogger(__name__)

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
EOM = b"]]>]]>"
HELLO = (
    f'<?xml version="1.0" encoding="UTF-8"?><hello xmlns="{NC}"><capabilities>'
    "<capability>urn:ietf:params:netconf:base:1.0</capability>"
    "<capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>"
).encode() + EOM


class FloorError(Exception):
    pass


class _Proto(asyncssh.SSHClientSession[bytes]):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.chunked = False
        self.parts: list[bytes] = []
        self.waiter: asyncio.Future[bytes] | None = None

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.buf += data
        while (msg := self._chunk_message() if self.chunked else self._eom_message()) is not None:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(msg)

    def _eom_message(self) -> bytes | None:
        i = self.buf.find(EOM)
        if i < 0:
            return None
        msg = bytes(self.buf[:i])
        del self.buf[: i + len(EOM)]
        self.chunked = True  # the hello: chunks from now on (both sides speak base:1.1)
        return msg

    def _chunk_message(self) -> bytes | None:
        buf = self.buf
        while True:
            if buf[:4] == b"\n##\n":
                del buf[:4]
                msg = b"".join(self.parts)
                self.parts = []
                return msg
            nl = buf.find(b"\n", 2)
            if nl < 0 or buf[:2] != b"\n#":
                return None
            size = int(buf[2:nl])
            if len(buf) < nl + 1 + size:
                return None
            self.parts.append(bytes(buf[nl + 1 : nl + 1 + size]))
            del buf[: nl + 1 + size]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(FloorError(f"connection lost: {exc}"))


@dataclass
class FloorSession:
    conn: asyncssh.SSHClientConnection
    chan: asyncssh.SSHClientChannel[bytes]
    proto: _Proto
    next_id: int = 1

    async def rpc(self, body: bytes, *, timeout_s: float = 10.0) -> bytes:
        self.next_id += 1
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.proto.waiter = fut
        msg = b'<rpc xmlns="%s" message-id="%d">%s</rpc>' % (NC.encode(), self.next_id, body)
        self.chan.write(b"\n#%d\n%s\n##\n" % (len(msg), msg))
        reply = await asyncio.wait_for(fut, timeout_s)
        if b"<rpc-error" in reply:
            raise FloorError(reply.decode(errors="replace")[:500])
        return reply

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


async def open_floor_session(
    host: str, port: int, username: str, password: str, *, settle_s: float = 0.01
) -> FloorSession:
    """Connect, exchange hellos (base:1.1), wait ``settle_s`` (netconfd drops RPCs sent right after it)."""
    conn = await asyncssh.connect(
        host, port, username=username, password=password, known_hosts=None, client_keys=None,
        agent_path=None, config=[], preferred_auth=("password",),
    )
    proto = _Proto()
    fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    proto.waiter = fut
    chan, _ = await conn.create_session(lambda: proto, subsystem="netconf", encoding=None)
    chan.write(HELLO)
    await asyncio.wait_for(fut, 10)
    await asyncio.sleep(settle_s)
    return FloorSession(conn=conn, chan=chan, proto=proto)


async def floor_activation(session: FloorSession, *, config: bytes, filter_: bytes, expect: list[bytes],
                           persist_id: str, confirm_timeout_s: int = 120) -> None:
    """The six-RPC verified activation. ``config`` is a ``<config>`` element; ``expect`` are byte
    strings (rendered leaves) that the get-config read-back must contain."""
    p = persist_id.encode()
    await session.rpc(b"<lock><target><candidate/></target></lock>")
    try:
        await session.rpc(b"<edit-config><target><candidate/></target><default-operation>merge"
                          b"</default-operation>" + config + b"</edit-config>")
        await session.rpc(b"<commit><confirmed/><confirm-timeout>%d</confirm-timeout><persist>%s</persist></commit>"
                          % (confirm_timeout_s, p))
        data = await session.rpc(b'<get-config><source><running/></source><filter type="subtree">'
                                 + filter_ + b"</filter></get-config>")
        missing = [e for e in expect if e not in data]
        if missing:
            await session.rpc(b"<cancel-commit><persist-id>%s</persist-id></cancel-commit>" % p)
            raise FloorError(f"verification failed: {missing!r} not read back")
        await session.rpc(b"<commit><persist-id>%s</persist-id></commit>" % p)
    finally:
        await session.rpc(b"<unlock><target><candidate/></target></unlock>")


__all__ = ["FloorError", "FloorSession", "floor_activation", "open_floor_session"]
