"""Keyset paging of the journal's listings: opaque page tokens and the queries they resume.

A page token is url-safe base64 (unpadded) of a small JSON object::

    {"v": 1, "k": "list", "f": "<filter digest>", "c": [<created_at µs>, "<activation id>"]}

``v`` the token version, ``k`` the listing (``list`` or ``fallout``), ``f`` a digest of the
listing's filters (a token only continues the listing it came from), ``c`` the cursor: the sort
key of the last item sent. The next page starts strictly after the cursor in the listing's order,
which is total (the activation id breaks ties between equal ``created_at``; a task's position
breaks ties within an activation), so no row is skipped or repeated between pages, whatever
was added or removed meanwhile. A token is not signed: it grants nothing the filters do not
(it only says where to resume), but anything that is not exactly what this module writes, or that
was written for other filters, is refused as :class:`~gateway.errors.InputError` on ``page_token``.

Orders: ``list`` newest first by (created_at, id) descending; ``fallout`` oldest activation first
by (activation created_at, activation id, task position). Pure: the reads that run these queries
are in :mod:`gateway.journal.reads`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import sqlalchemy as sa

from gateway.errors import FieldViolation, InputError
from gateway.journal import codec
from gateway.journal.schema import activations, stored_time, tasks
from gateway.model import TaskState
from gateway.results import ActivationState

TOKEN_VERSION = 1
MAX_TOKEN_CHARS = 1024
"""Longer tokens are refused before they are decoded (the edge refuses them too)."""
MAX_CURSOR_ID_CHARS = 512
MAX_PAGE_SIZE = 10_000
"""What the journal serves in one page (the edge allows far fewer)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_US = (datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+\Z")

GARBLED = "not a page token of this listing (garbled, truncated or made up); start again without one"
OTHER_FILTERS = ("was issued for other filters; send the same filters as for the first page, or start again "
                 "without a token")


def micros(value: datetime) -> int:
    """A UTC time as whole microseconds since the epoch (exact: what both backends store)."""
    return (codec.utc(value, "time") - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


@dataclass(frozen=True)
class ListFilters:
    """The filters of ``list``, normalized: the same filters always give the same digest."""

    states: tuple[str, ...] = ()
    device: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def of(cls, *, states: Sequence[ActivationState] = (), device: str = "", since: datetime | None = None,
           until: datetime | None = None) -> ListFilters:
        return cls(
            states=tuple(sorted({ActivationState(s).value for s in states})),
            device=codec.text(device, "device"),
            since=None if since is None else codec.utc(since, "since"),
            until=None if until is None else codec.utc(until, "until"),
        )

    def digest(self) -> str:
        return digest("list", [list(self.states), self.device, _opt_micros(self.since), _opt_micros(self.until)])


def _opt_micros(value: datetime | None) -> int | None:
    return None if value is None else micros(value)


def digest(kind: str, filters: Any) -> str:
    """A short digest of a listing's kind and filters (JSON-ready values)."""
    text = json.dumps([kind, filters], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(kind: str, filter_digest: str, cursor: Sequence[Any]) -> str:
    body = json.dumps({"v": TOKEN_VERSION, "k": kind, "f": filter_digest, "c": list(cursor)},
                      separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(body.encode()).rstrip(b"=").decode()


def _refused(reason: str) -> InputError:
    return InputError([FieldViolation("page_token", reason)])


def decode_token(token: str, kind: str, filter_digest: str, shape: tuple[type, ...]) -> list[Any]:
    """The cursor in ``token`` for the listing ``kind`` with filters ``filter_digest``; each cursor
    value must have the type in ``shape`` (``int``: a time in µs or a position; ``str``: an id).
    Anything else raises :class:`InputError` naming ``page_token``."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.match(token):
        raise _refused(GARBLED)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise _refused(GARBLED) from None
    if not isinstance(body, dict) or set(body) != {"v", "k", "f", "c"} or body["v"] != TOKEN_VERSION:
        raise _refused(GARBLED)
    if body["k"] != kind:
        raise _refused(f"is a token of another listing ({str(body['k'])[:16]!r}, not {kind!r})")
    if body["f"] != filter_digest:
        if isinstance(body["f"], str) and len(body["f"]) == len(filter_digest):
            raise _refused(OTHER_FILTERS)
        raise _refused(GARBLED)
    cursor = body["c"]
    if not isinstance(cursor, list) or len(cursor) != len(shape):
        raise _refused(GARBLED)
    for value, want in zip(cursor, shape):
        if type(value) is not want:  # bool is not an int here
            raise _refused(GARBLED)
        if type(value) is int and not _MIN_US <= value <= _MAX_US:
            raise _refused(GARBLED)
        if type(value) is str and not 0 < len(value) <= MAX_CURSOR_ID_CHARS:
            raise _refused(GARBLED)
    return cursor


def check_page_size(page_size: int) -> int:
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise codec.usage_error(f"page_size must be an int from 1 to {MAX_PAGE_SIZE}, not {page_size!r}")
    return page_size


# -- the queries --------------------------------------------------------------------------------------
LIST_SHAPE = (int, str)
FALLOUT_SHAPE = (int, str, int)
_FALLOUT_DIGEST = digest("fallout", [])


def list_query(filters: ListFilters, page_token: str, page_size: int) -> sa.Select[Any]:
    """Ids and created_at of the next ``page_size + 1`` activations (one more: is there more?)."""
    a = activations.c
    q = sa.select(a.id, a.created_at)
    if filters.states:
        q = q.where(a.state.in_(filters.states))
    if filters.device:
        q = q.where(sa.exists().where(tasks.c.activation_id == a.id, tasks.c.device == filters.device))
    if filters.since is not None:
        q = q.where(a.created_at >= stored_time(filters.since))
    if filters.until is not None:
        q = q.where(a.created_at < stored_time(filters.until))
    if page_token:
        at_us, after_id = decode_token(page_token, "list", filters.digest(), LIST_SHAPE)
        at = stored_time(from_micros(at_us))
        q = q.where(sa.or_(a.created_at < at, sa.and_(a.created_at == at, a.id < after_id)))
    return q.order_by(a.created_at.desc(), a.id.desc()).limit(page_size + 1)


def list_resume(filters: ListFilters, created_at: datetime, activation_id: str) -> str:
    return encode_token("list", filters.digest(), [micros(created_at), activation_id])


def fallout_query(page_token: str, page_size: int) -> sa.Select[Any]:
    """The next ``page_size + 1`` tasks in fallout: rows of (activation id, task position,
    activation created_at, the task's :data:`~gateway.journal.codec.TASK_COLUMNS`...)."""
    a, t = activations.c, tasks.c
    q = (sa.select(t.activation_id, t.position, a.created_at, *(t[name] for name in codec.TASK_COLUMNS))
         .join(activations, a.id == t.activation_id)
         .where(t.state == TaskState.FALLOUT.value))
    if page_token:
        at_us, after_id, after_pos = decode_token(page_token, "fallout", _FALLOUT_DIGEST, FALLOUT_SHAPE)
        at = stored_time(from_micros(at_us))
        q = q.where(sa.or_(
            a.created_at > at,
            sa.and_(a.created_at == at, a.id > after_id),
            sa.and_(a.created_at == at, a.id == after_id, t.position > after_pos),
        ))
    return q.order_by(a.created_at, a.id, t.position).limit(page_size + 1)


def fallout_resume(created_at: datetime, activation_id: str, position: int) -> str:
    return encode_token("fallout", _FALLOUT_DIGEST, [micros(created_at), activation_id, position])


__all__ = [
    "FALLOUT_SHAPE",
    "LIST_SHAPE",
    "ListFilters",
    "MAX_TOKEN_CHARS",
    "TOKEN_VERSION",
    "check_page_size",
    "decode_token",
    "digest",
    "encode_token",
    "fallout_query",
    "fallout_resume",
    "from_micros",
    "list_query",
    "list_resume",
    "micros",
]
