"""base:1.0 / base:1.1 framing, fed in every fragmentation."""

from __future__ import annotations

import pytest

from drivers.netconf.framing import Decoder, FramingError, encode_chunked, encode_eom

MSGS = [b"<rpc-reply message-id='1'><ok/></rpc-reply>", b"<rpc-reply message-id='2'><data>" + b"x" * 5000 + b"</data></rpc-reply>"]


def _feed_in_pieces(dec: Decoder, stream: bytes, size: int) -> list[bytes]:
    out: list[bytes] = []
    for i in range(0, len(stream), size):
        out += dec.feed(stream[i : i + size])
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 100000])
def test_eom_fragmented(size: int) -> None:
    stream = b"".join(encode_eom(m) for m in MSGS)
    assert _feed_in_pieces(Decoder(), stream, size) == MSGS


@pytest.mark.parametrize("size", [1, 2, 3, 5, 13, 64, 100000])
def test_chunked_fragmented(size: int) -> None:
    stream = b"".join(encode_chunked(m) for m in MSGS)
    assert _feed_in_pieces(Decoder(chunked=True), stream, size) == MSGS


def test_chunked_multi_chunk_message() -> None:
    stream = b"\n#4\n<rpc\n#5\n-repl\n#3\ny/>\n##\n"
    assert Decoder(chunked=True).feed(stream) == [b"<rpc-reply/>"]


def test_switch_after_hello_keeps_buffered_bytes() -> None:
    hello = b"<hello/>"
    stream = encode_eom(hello) + encode_chunked(MSGS[0])
    dec = Decoder()
    assert dec.feed(stream, limit=1) == [hello]
    dec.use_chunked()
    assert dec.feed(b"") == [MSGS[0]]
    assert dec.pending == 0


def test_partial_message_stays_pending() -> None:
    dec = Decoder(chunked=True)
    assert dec.feed(b"\n#10\n12345") == []
    assert dec.pending == 5
    assert dec.feed(b"67890\n##\n") == [b"1234567890"]


@pytest.mark.parametrize(
    "bad",
    [b"garbage!", b"\n#abc\nxxx", b"\n#0\n\n##\n", b"\n##\n", b"\n#12345678901234\n", b"\n#5\nabcde\n#x1\n"],
)
def test_chunked_garbage_raises(bad: bytes) -> None:
    with pytest.raises(FramingError):
        Decoder(chunked=True).feed(bad)


def test_oversized_message_raises() -> None:
    dec = Decoder(max_message_bytes=100)
    with pytest.raises(FramingError):
        dec.feed(b"x" * 200)


def test_encode_chunked_rejects_empty() -> None:
    with pytest.raises(FramingError):
        encode_chunked(b"")
