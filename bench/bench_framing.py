"""NETCONF framing: one large message arriving in many small reads, through the decoder.

A reply of ``--size-mb`` MB (XML-like text) is fed in ``--read-kib`` KiB pieces, as an SSH channel
delivers it, through :class:`drivers.netconf.framing.Decoder` in both framings, and through a copy
of the decoder's previous base:1.0 algorithm (it searched the whole buffer for ``]]>]]>`` on every
read: quadratic in the number of reads), measured in the same run. Printed: seconds and MB/s per
decoder, then the ratio previous / current for base:1.0 framing.

``python -m bench framing`` or ``python -m bench.bench_framing [--size-mb 4] [--read-kib 4]``
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Callable

from drivers.netconf.framing import EOM, Decoder, encode_chunked, encode_eom

log = logging.getLogger(__name__)


class PreviousEomDecoder:
    """The base:1.0 part of the decoder as it was (the baseline): every read searches the whole
    buffer from its start."""

    def __init__(self, *, max_message_bytes: int = 256 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self.max_message_bytes = max_message_bytes

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            idx = self._buf.find(EOM)
            if idx < 0:
                break
            msg = bytes(self._buf[:idx])
            del self._buf[: idx + len(EOM)]
            out.append(msg.strip())
        if len(self._buf) > self.max_message_bytes:
            raise ValueError(f"message larger than {self.max_message_bytes} bytes")
        return out


def make_message(size: int) -> bytes:
    """An rpc-reply of about ``size`` bytes: many list entries, as a get-config of a large device."""
    head = b'<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><data>'
    tail = b"</data></rpc-reply>"
    entries = []
    n = 0
    total = len(head) + len(tail)
    while total < size:
        entry = (b"<interface><name>eth%d</name><description>customer circuit %d</description>"
                 b"<enabled>true</enabled></interface>" % (n, n))
        entries.append(entry)
        total += len(entry)
        n += 1
    return head + b"".join(entries) + tail


def _run(feed: Callable[[bytes], list[bytes]], stream: bytes, read: int) -> tuple[float, list[bytes]]:
    out: list[bytes] = []
    start = time.perf_counter()
    for i in range(0, len(stream), read):
        out += feed(stream[i : i + read])
    return time.perf_counter() - start, out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench framing", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=4.0, help="message size in MB (10^6 bytes)")
    parser.add_argument("--read-kib", type=int, default=4, help="bytes per read, in KiB")
    args = parser.parse_args(argv)
    message = make_message(int(args.size_mb * 1_000_000))
    read = args.read_kib * 1024
    mb = len(message) / 1e6
    log.info("framing: one %.1f MB message in %d-byte reads (%d reads)", mb, read, -(-len(message) // read))

    results: dict[str, float] = {}
    eom, chunked = encode_eom(message), encode_chunked(message)
    for name, feed, stream in (
        ("base:1.0 current", Decoder().feed, eom),
        ("base:1.1 current", Decoder(chunked=True).feed, chunked),
        ("base:1.0 previous (baseline)", PreviousEomDecoder().feed, eom),
    ):
        seconds, out = _run(feed, stream, read)
        if out != [message]:
            log.error("%s: decoded %d message(s), not the one sent", name, len(out))
            return 1
        results[name] = seconds
        log.info("%-30s %8.3f s  %9.1f MB/s", name, seconds, mb / seconds)
    ratio = results["base:1.0 previous (baseline)"] / results["base:1.0 current"]
    log.info("base:1.0 framing: current is %.1fx faster than the previous algorithm (baseline / current)", ratio)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
