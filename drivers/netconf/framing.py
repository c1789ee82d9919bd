"""NETCONF message framing over SSH (RFC 6242). Pure: bytes in, messages out.

* base:1.0 — end-of-message framing: each message is followed by ``]]>]]>``.
* base:1.1 — chunked framing: ``\\n#<len>\\n<len bytes>`` chunks, the message ends with ``\\n##\\n``.

:class:`Decoder` is incremental: feed it whatever the channel delivered (any fragmentation, several
messages in one read) and it returns every complete message. The hello is always end-of-message
framed; after it both sides switch to chunked framing when both advertise base:1.1, so the decoder
can be switched between messages (:meth:`Decoder.use_chunked`) without losing buffered bytes.

Cost: linear in the bytes received, however they are fragmented — the end-of-message search
resumes where the previous one stopped, and a chunk's payload is only counted until complete.
A message over ``max_message_bytes`` raises :class:`MessageTooLarge` as soon as the bytes buffered
for it (or a chunk header) exceed the limit.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

EOM = b"]]>]]>"
END_OF_CHUNKS = b"\n##\n"
MAX_CHUNK_SIZE = 4294967295  # RFC 6242 section 4.2
MAX_HEADER_LEN = 13  # "\n#" + up to 10 digits + "\n"


class FramingError(ValueError):
    """The peer sent bytes that break the framing: the session cannot continue."""


class MessageTooLarge(FramingError):
    """A message is larger than the decoder's ``max_message_bytes``: the session cannot continue."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"message larger than {limit} bytes")
        self.limit = limit


def encode_eom(message: bytes) -> bytes:
    return message + EOM


def encode_chunked(message: bytes) -> bytes:
    """One chunk holding the whole message, then the end-of-chunks marker."""
    if not message:
        raise FramingError("an empty message cannot be chunk-framed")
    return b"\n#%d\n%s\n##\n" % (len(message), message)


class Decoder:
    """Incremental decoder for both framings. Not thread-safe (one per channel)."""

    __slots__ = ("_buf", "_chunked", "_parts", "_parts_len", "_need", "_scan", "max_message_bytes")

    def __init__(self, *, chunked: bool = False, max_message_bytes: int = 256 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._chunked = chunked
        self._parts: list[bytes] = []  # chunks of the message being assembled (chunked mode)
        self._parts_len = 0  # their total length
        self._need = 0  # bytes still expected for the current chunk's payload
        self._scan = 0  # base:1.0: where the next search for EOM starts (all before it was searched)
        self.max_message_bytes = max_message_bytes

    @property
    def chunked(self) -> bool:
        return self._chunked

    def use_chunked(self) -> None:
        """Switch to base:1.1 framing for every following message (bytes already buffered included)."""
        self._chunked = True
        self._scan = 0

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a complete message."""
        return len(self._buf) + self._parts_len

    def feed(self, data: bytes, *, limit: int | None = None) -> list[bytes]:
        """Add received bytes; return the messages completed by them (possibly none).

        With ``limit``, at most that many messages are returned and the rest stays buffered
        (``feed(b"")`` later decodes it), so the framing can be switched after the hello.
        """
        self._buf += data
        out: list[bytes] = []
        while limit is None or len(out) < limit:
            msg = self._next_chunked() if self._chunked else self._next_eom()
            if msg is None:
                break
            out.append(msg)
        if self.pending > self.max_message_bytes:
            raise MessageTooLarge(self.max_message_bytes)
        return out

    # -- base:1.0 ------------------------------------------------------------------------
    def _next_eom(self) -> bytes | None:
        buf = self._buf
        idx = buf.find(EOM, self._scan)
        if idx < 0:
            # bytes already searched are not searched again; the last len(EOM)-1 may start an EOM
            self._scan = max(0, len(buf) - (len(EOM) - 1))
            return None
        if idx > self.max_message_bytes:
            raise MessageTooLarge(self.max_message_bytes)
        msg = bytes(buf[:idx])
        del buf[: idx + len(EOM)]
        self._scan = 0
        return msg.strip()

    # -- base:1.1 ------------------------------------------------------------------------
    def _next_chunked(self) -> bytes | None:
        buf = self._buf
        while True:
            if self._need:
                if len(buf) < self._need:
                    return None
                self._parts.append(bytes(buf[: self._need]))
                self._parts_len += self._need
                del buf[: self._need]
                self._need = 0
            # expecting a chunk header "\n#<len>\n" or the end marker "\n##\n"
            if len(buf) < 4:
                return None
            if buf[0:2] != b"\n#":
                raise FramingError(f"expected a chunk header, got {bytes(buf[:16])!r}")
            if buf[2:3] == b"#":
                if buf[3:4] != b"\n":
                    raise FramingError(f"bad end-of-chunks marker {bytes(buf[:4])!r}")
                del buf[:4]
                if not self._parts:
                    raise FramingError("end-of-chunks marker without any chunk")
                msg = b"".join(self._parts)
                self._parts = []
                self._parts_len = 0
                return msg
            nl = buf.find(b"\n", 2, MAX_HEADER_LEN + 1)
            if nl < 0:
                if len(buf) >= MAX_HEADER_LEN:
                    raise FramingError(f"chunk header too long: {bytes(buf[:MAX_HEADER_LEN])!r}")
                return None
            digits = bytes(buf[2:nl])
            if not digits.isdigit() or digits.startswith(b"0"):
                raise FramingError(f"bad chunk size {digits!r}")
            size = int(digits)
            if size > MAX_CHUNK_SIZE:
                raise FramingError(f"chunk size {size} exceeds the maximum")
            if self._parts_len + size > self.max_message_bytes:
                raise MessageTooLarge(self.max_message_bytes)  # announced: no need to wait for it
            del buf[: nl + 1]
            self._need = size


__all__ = ["EOM", "Decoder", "FramingError", "MessageTooLarge", "encode_chunked", "encode_eom"]
