"""Responses under a byte cap (``EdgeLimits.max_response_bytes``, below a stock client's 4 MB).

* A page (List, ListFallout) ends before the response would pass the cap; its
  ``next_page_token`` then continues with the first item left out.
* An item that alone passes the cap is sent as the first item of its page with its big text
  fields clipped (:func:`fit`); so is a single activation (Get, and every call that answers with
  an Activation). A clipped field keeps its beginning and ends with a marker that says how much of
  it is shown; nothing is ever sent over the cap.

Clipped fields, per task: rendered, diff, note, verification detail and mismatches, rollback
reason and diff, error message, the device error's message, path and line; per activation also
the audit notes. Every field above a common length is cut to it (the longest first), so short
fields stay whole.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterator, TypeVar

from google.protobuf.message import Message

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.errors import StateError
from gateway.results import Page

T = TypeVar("T")
M = TypeVar("M", bound=Message)

FIRST_READ = 10
"""Items read from the engine first while a page fills; then as many as the bytes left may hold
(judged by the items read so far), plus one: a page of big items does not read many it cannot send."""
_MARK = "\n[… clipped by the gateway: {kept} of {total} bytes shown, to keep the response under {cap} bytes]"


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def field_bytes(size: int) -> int:
    """What a message of ``size`` bytes adds as one entry of a repeated field numbered below 16."""
    return 1 + _varint_len(size) + size


def token_reserve(max_token_chars: int) -> int:
    """Room kept in a page for its next_page_token."""
    return field_bytes(max_token_chars)


def _mark(kept: int, total: int, cap: int) -> str:
    return _MARK.format(kept=kept, total=total, cap=cap)


def _task_slots(t: pb.TaskResult) -> Iterator[tuple[Any, Any]]:
    yield t, "rendered"
    yield t, "diff"
    yield t, "note"
    if t.HasField("verification"):
        yield t.verification, "detail"
        for i in range(len(t.verification.mismatches)):
            yield t.verification.mismatches, i
    if t.HasField("rollback"):
        yield t.rollback, "reason"
        yield t.rollback, "diff"
    if t.HasField("error"):
        yield t.error, "message"
        if t.error.HasField("device_error"):
            for name in ("message", "path", "line"):
                yield t.error.device_error, name


def _slots(msg: Message) -> Iterator[tuple[Any, Any]]:
    if isinstance(msg, pb.Activation):
        for t in msg.tasks:
            yield from _task_slots(t)
        for entry in msg.audit:
            yield entry, "note"
    elif isinstance(msg, pb.FalloutItem):
        yield from _task_slots(msg.task)
    elif isinstance(msg, pb.TaskResult):
        yield from _task_slots(msg)
    else:  # pragma: no cover - a new message kind must name its fields here
        raise TypeError(f"no clippable fields known for {type(msg).__name__}")


def _read(obj: Any, key: Any) -> str:
    value: str = obj[key] if isinstance(key, int) else getattr(obj, key)  # a string field, or an item of a repeated one
    return value


def _write(obj: Any, key: Any, value: str) -> None:
    if isinstance(key, int):
        obj[key] = value
    else:
        setattr(obj, key, value)


def _what(msg: Message) -> str:
    if isinstance(msg, pb.Activation):
        return f"activation {msg.id}"
    if isinstance(msg, pb.FalloutItem):
        return f"task {msg.task.id} of activation {msg.activation_id}"
    return f"task {getattr(msg, 'id', '?')}"


def fit(msg: M, target: int, *, cap: int) -> bool:
    """Clip ``msg``'s big text fields in place until it is at most ``target`` bytes; True if
    anything was clipped. Raises :class:`StateError` (FAILED_PRECONDITION) when even clipped
    text leaves it over: ids, states and timings alone are too big to send."""
    size = msg.ByteSize()
    if size <= target:
        return False
    slots = [(obj, key, text.encode()) for obj, key in _slots(msg) if (text := _read(obj, key))]
    mark_bytes = len(_mark(10**12, 10**12, cap).encode())  # no marker is longer
    excess = size - target

    def saved(keep: int) -> int:  # at least what cutting every field to ``keep`` bytes saves
        return sum(len(b) - keep - mark_bytes for _, _, b in slots if len(b) > keep + mark_bytes)

    lo, hi = 0, max((len(b) for _, _, b in slots), default=0)
    if saved(lo) >= excess:  # the longest ``keep`` that saves enough (saved(hi) == 0 < excess)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if saved(mid) >= excess else (lo, mid)
    keep = lo
    clipped = False
    for obj, key, raw in slots:
        if len(raw) > keep + mark_bytes:
            head = raw[:keep].decode("utf-8", "ignore")  # never half a character
            _write(obj, key, head + _mark(len(head.encode()), len(raw), cap))
            clipped = True
    final = msg.ByteSize()
    if final > target:
        raise StateError(f"{_what(msg)} is {final} bytes even with its text clipped, over the response limit of "
                         f"{target} bytes")
    return clipped


async def fill_page(
    fetch: Callable[[int, str], Awaitable[Page[T]]],
    to_msg: Callable[[T], M],
    *,
    page_size: int,
    page_token: str,
    budget: int,
    cap: int,
    keep: Callable[[T], bool] | None = None,
) -> tuple[list[M], str]:
    """Messages for one page and its next_page_token ("" on the last page).

    ``fetch(n, token)`` reads the next ``n`` items after ``token`` (:data:`FIRST_READ` first,
    then as many as seem to fit) until ``page_size`` are taken, nothing more follows, or the next
    one would take the repeated field past ``budget`` bytes (the cap less room for the token): then
    the page ends before it. The first item of a page is always sent, clipped by :func:`fit` if it
    alone passes. ``keep``: items it refuses (what the caller may not see) are skipped, the token
    still moving past them; a page may then hold fewer than ``page_size``."""
    out: list[M] = []
    used = seen = 0
    token = page_token
    while True:
        want = page_size - len(out)
        n = min(want, FIRST_READ) if not seen else min(want, (budget - used) // max(1, used // seen) + 1)
        page = await fetch(n, token)
        for item, resume in zip(page.items, page.resume, strict=True):
            if keep is not None and not keep(item):
                seen += 1
                token = resume
                continue
            msg = to_msg(item)
            need = field_bytes(msg.ByteSize())
            seen += 1
            if used + need > budget:
                if out:
                    return out, token  # this item opens the next page
                fit(msg, budget - 1 - _varint_len(budget), cap=cap)  # so that field_bytes(size) <= budget
                need = field_bytes(msg.ByteSize())
            out.append(msg)
            used += need
            token = resume
        if not page.more:
            return out, ""
        if len(out) >= page_size or not page.items:
            return out, token


__all__ = ["FIRST_READ", "field_bytes", "fill_page", "fit", "token_reserve"]
