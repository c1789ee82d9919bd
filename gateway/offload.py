"""CPU-heavy work of the request path, off the event loop, on a few threads shared by all of it.

Planning a large request (validating and rendering every task), validating and converting a large
message at the edge, encoding a large activation's journal rows: each takes tens to hundreds of
milliseconds of pure Python for a thousand tasks. On the event loop that would keep every other
call waiting (health checks among them). On threads the loop is free, but it still needs the GIL:
every thread that runs Python competes with the loop's thread for it, and with many (a thread per
concurrent request) the loop waits its turn among all of them. So this work shares one small pool
(:data:`WORKERS` threads, ``EngineSettings.plan_workers``): however many large requests arrive at
once, at most that many threads compete with the loop; the rest wait in the pool's queue.

The threads live as long as the process (lxml asks that trees parsed on a thread are not used
after the thread ends; nothing parsed here outlives its call anyway).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")

WORKERS = 2
"""Threads of the pool (set by :func:`configure` before first use)."""

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def configure(workers: int) -> None:
    """Size the pool; takes effect when it is made (first use), later calls change nothing then."""
    global WORKERS
    if workers < 1:
        raise ValueError("workers must be at least 1")
    WORKERS = workers


def executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="agw-cpu")
        return _executor


async def run(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the pool (the caller's context variables go with it)."""
    ctx = contextvars.copy_context()
    call = functools.partial(ctx.run, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(executor(), call)


SWITCH_INTERVAL_S = 0.001
"""The GIL switch interval of a serving gateway (Python's default: 5 ms)."""


def tune_serving_process() -> None:
    """For a gateway process that has started (``agw serve``): the event loop answers first.

    * ``gc.freeze()``: the objects of start-up (modules, templates, profiles: ~150,000) leave the
      collector's generations, so a full collection under load walks only what the load made
      (measured: the longest pause halved).
    * ``sys.setswitchinterval(SWITCH_INTERVAL_S)``: a thread that wants the GIL (the event loop's,
      the gRPC poller's) gets it after 1 ms instead of 5 from a thread running Python (planning a
      large request); one call needs it several times (``bench edge``: health p99 under load from
      ~110 to ~40 ms). Threads only switch this often while they compete."""
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_S)


__all__ = ["WORKERS", "configure", "executor", "run", "tune_serving_process"]
