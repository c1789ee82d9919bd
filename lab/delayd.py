"""A tiny packet-delay daemon: ``python -m lab.delayd QUEUE DELAY_MS [JITTER_MS] [READY_FILE]``.

This kernel has no ``netem``, so delay is emulated in user space: iptables sends the node's
packets to NFQUEUE ``QUEUE`` (with ``--queue-bypass``, so packets pass untouched whenever this
daemon is not running) and each packet gets its verdict ``DELAY_MS`` later. It runs inside the
node's network namespace (NFQUEUE is per namespace).
"""

from __future__ import annotations

import heapq
import itertools
import random
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    from netfilterqueue import NetfilterQueue  # imported here: only the daemon needs it

    queue, delay_s = int(argv[0]), float(argv[1]) / 1000
    jitter_s = float(argv[2]) / 1000 if len(argv) > 2 else 0.0
    ready = Path(argv[3]) if len(argv) > 3 else None
    heap: list[tuple[float, int, Any]] = []
    seq = itertools.count()

    def on_packet(pkt: Any) -> None:
        pkt.retain()
        due = time.monotonic() + max(0.0, delay_s + random.uniform(-jitter_s, jitter_s))  # noqa: S311
        heapq.heappush(heap, (due, next(seq), pkt))

    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    nfq = NetfilterQueue()
    nfq.bind(queue, on_packet, max_len=4096)
    fd = nfq.get_fd()
    if ready:
        ready.write_text("ready\n")
    try:
        while running:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                heapq.heappop(heap)[2].accept()
            wait = max(0.0, heap[0][0] - now) if heap else 0.5
            if select.select([fd], [], [], wait)[0]:
                nfq.run(block=False)
    finally:
        for _, _, pkt in heap:
            pkt.accept()
        nfq.unbind()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
