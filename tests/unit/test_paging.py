"""Pure parts of paging, the response cap, retention and terminal output: page tokens, clipping,
filling a page, durations, escaping."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from gateway.api import paging as edge
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.engine.retention import parse_duration
from gateway.errors import InputError, StateError
from gateway.journal import paging
from gateway.results import ActivationState, Page
from gateway.terminal import shown

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
CAP = 64 * 1024


# -- page tokens --------------------------------------------------------------------------------
def _token(body: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


def _refusal(token: str, kind: str = "list", digest: str | None = None) -> str:
    filters = paging.ListFilters.of(device="nc1")
    with pytest.raises(InputError) as err:
        paging.decode_token(token, kind, digest or filters.digest(), paging.LIST_SHAPE)
    [violation] = err.value.violations
    assert violation.field == "page_token"
    return violation.reason


def test_a_token_carries_its_cursor_and_is_opaque_url_safe_text() -> None:
    filters = paging.ListFilters.of(states=[ActivationState.FAILED, ActivationState.COMPLETED], device="nc1",
                                    since=T0)
    token = paging.list_resume(filters, T0, "a1")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    at, aid = paging.decode_token(token, "list", filters.digest(), paging.LIST_SHAPE)
    assert (paging.from_micros(at), aid) == (T0, "a1")
    same = paging.ListFilters.of(states=[ActivationState.COMPLETED, ActivationState.FAILED, ActivationState.FAILED],
                                 device="nc1", since=T0.astimezone(timezone(timedelta(hours=-5))))
    assert same.digest() == filters.digest()  # the same filters, however they are written


def test_a_token_of_other_filters_or_another_listing_is_refused() -> None:
    token = paging.list_resume(paging.ListFilters.of(device="nc2"), T0, "a1")
    assert "other filters" in _refusal(token)
    for other in (paging.ListFilters.of(), paging.ListFilters.of(device="nc1", states=[ActivationState.FAILED]),
                  paging.ListFilters.of(device="nc1", until=T0)):
        assert "other filters" in _refusal(paging.list_resume(other, T0, "a1"))
    assert "another listing" in _refusal(paging.fallout_resume(T0, "a1", 0))


@pytest.mark.parametrize("token", [
    "not base64!", "x" * 2000, "AAAA", "_-_-", "e30", _token([1, 2]), _token({"v": 1}),
    _token({"v": 2, "k": "list", "f": "0" * 16, "c": [1, "a"]}),
    _token({"v": 1, "k": "list", "f": "zz", "c": [1, "a"]}),
    _token({"v": 1, "k": "list", "f": paging.ListFilters.of(device="nc1").digest(), "c": [1]}),
    _token({"v": 1, "k": "list", "f": paging.ListFilters.of(device="nc1").digest(), "c": [True, "a"]}),
    _token({"v": 1, "k": "list", "f": paging.ListFilters.of(device="nc1").digest(), "c": ["1", "a"]}),
    _token({"v": 1, "k": "list", "f": paging.ListFilters.of(device="nc1").digest(), "c": [10**20, "a"]}),
    _token({"v": 1, "k": "list", "f": paging.ListFilters.of(device="nc1").digest(), "c": [1, ""]}),
    _token({"v": 1, "k": "list", "f": paging.ListFilters.of(device="nc1").digest(), "c": [1, "a" * 600]}),
    _token({"v": 1, "k": "list", "f": paging.ListFilters.of(device="nc1").digest(), "c": [1, "a"], "x": 0}),
    base64.urlsafe_b64encode(b"\xff\xfe{").decode().rstrip("="),
    _token("[" * 100_000)[:1000],
])
def test_a_garbled_or_made_up_token_is_refused_cleanly(token: str) -> None:
    assert "garbled" in _refusal(token)


def test_a_page_hands_out_the_token_after_any_item() -> None:
    page = Page(items=("a", "b", "c"), resume=("ta", "tb", "tc"), more=False)
    assert page.next_page_token == ""
    assert page.first(3) == page and page.first(2).next_page_token == "tb"
    assert Page(items=("a",), resume=("ta",), more=True).next_page_token == "ta"


# -- clipping and filling pages ------------------------------------------------------------------
def big_activation(aid: str = "a1", *, tasks: int = 4, text_bytes: int = 40_000) -> pb.Activation:
    a = pb.Activation(id=aid, request_id="r", state=pb.ACTIVATION_STATE_FAILED)
    for i in range(tasks):
        t = a.tasks.add(id=f"t{i}", device="nc1", service="interface", rendered="é" * (text_bytes // 2),
                        diff="+" * text_bytes, note="short note")
        t.verification.mismatches.extend(["m" * text_bytes, "small"])
        t.error.message = "\x1b[31m" + "e" * text_bytes
        t.error.device_error.message = "d" * 10
    a.audit.add(actor="spiffe://x/a", action="resolve", note="n" * text_bytes)
    return a


def test_fit_clips_the_longest_text_fields_and_marks_them() -> None:
    a = big_activation()
    assert a.ByteSize() > CAP
    assert edge.fit(a, CAP, cap=CAP) is True
    assert a.ByteSize() <= CAP
    t = a.tasks[0]
    for text in (t.rendered, t.diff, t.verification.mismatches[0], t.error.message, a.audit[0].note):
        assert "[… clipped by the gateway: " in text and f"to keep the response under {CAP} bytes]" in text
    assert t.rendered.startswith("éé") and "\ufffd" not in t.rendered  # never half a character
    kept, total = t.diff.split("clipped by the gateway: ")[1].split(" bytes shown")[0].split(" of ")
    assert int(total) == 40_000 and 0 < int(kept) < 40_000
    assert t.note == "short note" and t.verification.mismatches[1] == "small"
    assert t.error.device_error.message == "d" * 10
    assert (t.id, t.device, a.id) == ("t0", "nc1", "a1")
    small = big_activation(tasks=1, text_bytes=100)
    assert edge.fit(small, CAP, cap=CAP) is False and small == big_activation(tasks=1, text_bytes=100)


def test_fit_refuses_what_cannot_be_clipped_small_enough() -> None:
    a = pb.Activation(id="a1", tasks=[pb.TaskResult(id=f"t{i}" * 50, device="nc1") for i in range(200)])
    with pytest.raises(StateError, match="activation a1 is .* bytes even with its text clipped"):
        edge.fit(a, 1000, cap=1000)


async def test_a_page_ends_before_the_cap_and_an_item_alone_over_it_comes_clipped() -> None:
    sizes = {"a": 10_000, "b": 10_000, "huge": 200_000, "c": 10_000, "d": 30_000}
    order = list(sizes)
    calls: list[tuple[int, str]] = []

    async def fetch(n: int, token: str) -> Page[str]:
        calls.append((n, token))
        start = order.index(token) + 1 if token else 0
        items = tuple(order[start:start + n])
        return Page(items=items, resume=items, more=start + n < len(order))

    def to_msg(name: str) -> pb.Activation:
        return big_activation(name, tasks=1, text_bytes=sizes[name] // 5)

    budget = CAP - edge.token_reserve(1024)
    pages = []
    token = ""
    while True:
        msgs, token = await edge.fill_page(fetch, to_msg, page_size=10, page_token=token, budget=budget, cap=CAP)
        response = pb.ListResponse(activations=msgs, next_page_token=token)
        assert response.ByteSize() <= CAP
        pages.append([m.id for m in msgs])
        if not token:
            break
    assert pages == [["a", "b"], ["huge"], ["c", "d"]]  # every item once, in order
    huge = pb.ListResponse()
    huge.activations.append(to_msg("huge"))
    assert "clipped by the gateway" not in str(huge)
    msgs, _ = await edge.fill_page(fetch, to_msg, page_size=10, page_token="b", budget=budget, cap=CAP)
    assert "clipped by the gateway" in msgs[0].tasks[0].diff
    msgs, token = await edge.fill_page(fetch, to_msg, page_size=1, page_token="", budget=budget, cap=CAP)
    assert [m.id for m in msgs] == ["a"] and token == "a"
    assert calls[-1] == (1, "")  # never more read than the page can hold


async def test_fill_page_reads_a_few_first_then_what_seems_to_fit() -> None:
    names = [f"x{i:03}" for i in range(120)]
    asked: list[int] = []

    async def fetch(n: int, token: str) -> Page[str]:
        asked.append(n)
        start = names.index(token) + 1 if token else 0
        items = tuple(names[start:start + n])
        return Page(items=items, resume=items, more=start + n < len(names))

    msgs, token = await edge.fill_page(fetch, lambda n: pb.Activation(id=n), page_size=110, page_token="",
                                       budget=CAP, cap=CAP)
    assert len(msgs) == 110 and token == "x109" and asked == [10, 100]  # then as many as seem to fit
    msgs, token = await edge.fill_page(fetch, lambda n: pb.Activation(id=n), page_size=50, page_token=token,
                                       budget=CAP, cap=CAP)
    assert [m.id for m in msgs] == names[110:] and token == ""


# -- durations and terminal text -------------------------------------------------------------------
def test_durations() -> None:
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration(" 2W ") == timedelta(weeks=2)
    assert parse_duration("90m") == timedelta(minutes=90) and parse_duration("45s") == timedelta(seconds=45)
    assert parse_duration("0") == timedelta(0)
    for bad in ("", "30", "-1d", "1.5d", "d", "30 days", "9999999w"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_terminal_text_shows_control_characters_visibly() -> None:
    assert shown("ok\x1b[2J\x1b]0;owned\x07") == "ok\\x1b[2J\\x1b]0;owned\\x07"
    assert shown("a\rb\nc\td\x7f\x9b\u202egnp.exe") == "a\\x0db\\x0ac\\x09d\\x7f\\x9b\\u202egnp.exe"
    assert shown("line 1\r\nline 2\n\tindented\x1b[0m", block=True) == "line 1\nline 2\n\tindented\\x1b[0m"
    assert shown("über, 東京, emoji 🙂") == "über, 東京, emoji 🙂"
    assert shown(42) == "42"
