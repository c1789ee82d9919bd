"""Pure conversions between result views and journal rows: exact round trips, masking, refusals."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import gateway.journal
from drivers.base import Snapshot
from gateway.errors import DeviceErrorInfo, JournalError
from gateway.journal import Pending, RecoveryChanges, TaskChanges, TaskRecovery, codec
from gateway.model import Action, TaskState
from gateway.results import ErrorView, PhaseTiming, RollbackView, TaskResult, VerificationView
from gateway.secrets import MASK, Secret

T0 = datetime(2026, 3, 1, 12, 0, 0, 654321, tzinfo=timezone.utc)


def test_public_surface_is_pinned() -> None:
    assert sorted(gateway.journal.__all__) == [
        "Journal",
        "JournalOptions",
        "Pending",
        "RECOVERY_FIELDS",
        "RecoveryChanges",
        "SqlJournal",
        "TASK_FIELDS",
        "TaskChanges",
        "TaskRecovery",
        "Transition",
        "UNCHANGED",
        "open_journal",
    ]


@pytest.mark.parametrize(
    ("value", "encode", "decode"),
    [
        (VerificationView(ok=True, checked=4), codec.encode_verification, codec.decode_verification),
        (
            VerificationView(ok=False, checked=2, mismatches=("a", "b"), detail="d"),
            codec.encode_verification,
            codec.decode_verification,
        ),
        (
            RollbackView(method="restore", ok=False, reason="r", diff="-a\n+b"),
            codec.encode_rollback,
            codec.decode_rollback,
        ),
        (
            ErrorView(kind="ConnectError", message="m", phase="connect", retryable=True),
            codec.encode_error,
            codec.decode_error,
        ),
        (
            ErrorView(
                kind="DeviceRejectedError",
                message="m",
                device_error=DeviceErrorInfo(
                    message="x",
                    tag="invalid-value",
                    path="/p",
                    severity="warning",
                    line="ip address 1",
                    extra=(("k", "v"), ("k2", "v2")),
                ),
            ),
            codec.encode_error,
            codec.decode_error,
        ),
        (None, codec.encode_error, codec.decode_error),
    ],
)
def test_nested_views_round_trip(value: object, encode, decode) -> None:  # type: ignore[no-untyped-def]
    assert decode(encode(value)) == value


def test_timings_round_trip_in_utc_whatever_the_zone() -> None:
    tz = timezone(timedelta(hours=-5))
    timings = (
        PhaseTiming(phase="push", started_at=T0.astimezone(tz), duration_ms=3.5),
        PhaseTiming(phase="verify", started_at=T0, duration_ms=0.0),
    )
    back = codec.decode_timings(codec.encode_timings(timings))
    assert back == timings and all(t.started_at.tzinfo == timezone.utc for t in back)
    assert codec.decode_timings(codec.encode_timings(())) == ()


def test_task_row_round_trip() -> None:
    t = TaskResult(
        id="t",
        device="d",
        service="s",
        action=Action.DELETE,
        state=TaskState.ROLLED_BACK,
        depends_on=("x",),
        platform="p",
        driver="netconf",
        rendered="r",
        diff="df",
        verification=VerificationView(ok=True, checked=1),
        rollback=RollbackView(method="none", ok=True),
        error=ErrorView(kind="K", message="M"),
        timings=(PhaseTiming(phase="p", started_at=T0, duration_ms=1.0),),
        note="n",
        emulated=("snapshot-and-restore instead of native rollback", "no confirmed-commit timer on the device"),
    )
    row = codec.task_row("a", 0, t)
    assert codec.decode_task([row[c] for c in codec.TASK_COLUMNS]) == t
    assert row["recovery"] == "{}" and row["position"] == 0
    assert json.loads(row["emulated"]) == list(t.emulated)
    bare = TaskResult(id="t", device="d", service="s", action=Action.CREATE, state=TaskState.ACKNOWLEDGED)
    assert codec.task_row("a", 1, bare)["emulated"] == "[]"


def test_a_task_row_from_before_emulated_reads_back_empty() -> None:
    """Rows of a version-2 journal get the column's default '[]' when it is upgraded."""
    row = ["t", "d", "s", "create", "completed", "[]", "", "", "", "", None, None, None, "[]", "", "[]", "{}"]
    assert len(row) == len(codec.TASK_COLUMNS) and codec.TASK_COLUMNS[-2:] == ("emulated", "parameters")
    assert codec.decode_task(row).emulated == ()
    assert codec.decode_texts(None) == () and codec.decode_texts("") == ()


def test_task_parameters_round_trip_and_rows_from_before_version_6_read_back_empty() -> None:
    t = TaskResult(id="t", device="d", service="s", action=Action.CREATE, state=TaskState.ACKNOWLEDGED,
                   parameters={"name": "eth1", "mtu": 9000, "tags": ["a", None], "auth": Secret("s3cret")})
    row = codec.task_row("a", 0, t)
    assert json.loads(row["parameters"]) == {"name": "eth1", "mtu": 9000, "tags": ["a", None], "auth": MASK}
    assert codec.decode_task([row[c] for c in codec.TASK_COLUMNS]).parameters["auth"] == MASK
    old = [row[c] for c in codec.TASK_COLUMNS]
    old[-1] = "{}"  # the column's default on an upgraded journal
    assert codec.decode_task(old).parameters == {}


def test_secrets_are_masked_everywhere() -> None:
    nested = {"k": [Secret("s3cret")], "e": ErrorView(kind="K", message=Secret("s3cret"))}  # type: ignore[arg-type]
    text = codec.dumps(nested)
    assert "s3cret" not in text and json.loads(text)["k"] == [MASK]
    assert codec.text(Secret("s3cret"), "note") == MASK
    assert codec.task_columns(TaskChanges(note=Secret("s3cret"))) == {"note": MASK}  # type: ignore[arg-type]
    masked = RecoveryChanges(persist_id=Secret("s3cret"))  # type: ignore[arg-type]
    assert codec.recovery_values(masked) == {"persist_id": MASK}


def test_task_changes_refuse_what_cannot_be_stored() -> None:
    for changes in ({"id": "x"}, {"depends_on": ()}, {"bogus": 1}):
        with pytest.raises(TypeError):
            TaskChanges(**changes)  # type: ignore[arg-type]
    for changes in (
        {"state": "nope"},
        {"note": 3},
        {"rollback": VerificationView(ok=True, checked=1)},
        {"timings": (1,)},
        {"emulated": ("gateway-computed diff", 1)},
        {"emulated": "gateway-computed diff"},
    ):
        with pytest.raises(JournalError) as err:
            TaskChanges(**changes)  # type: ignore[arg-type]
        assert err.value.retryable is False
    assert codec.task_columns(TaskChanges(state="completed")) == {"state": "completed"}  # type: ignore[arg-type]


def test_recovery_changes_and_decode() -> None:
    snap = Snapshot(content="<a/>", scope="<f/>")
    after = Snapshot(content="<b/>", scope="<f/>")
    plain = codec.recovery_values(RecoveryChanges(snapshot=snap, after=after, undo="no a\n", attempt=2,
                                                  pending=Pending.APPLIED))
    assert plain["pending"] == "applied"  # stored as before the enum
    assert codec.decode_recovery(json.dumps(plain)) == TaskRecovery(
        snapshot=snap, after=after, undo="no a\n", attempt=2, pending=Pending.APPLIED
    )
    assert codec.decode_recovery("{}") == TaskRecovery()
    bad_changes = ({"attempt": True}, {"attempt": "1"}, {"snapshot": "<a/>"}, {"after": "<b/>"}, {"phase": 1},
                   {"pending": "bogus"}, {"undo": 3})
    for bad in bad_changes:
        with pytest.raises(JournalError):
            RecoveryChanges(**bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RecoveryChanges(secret="x")  # type: ignore[call-arg]


def test_utc_refuses_naive_and_converts_aware() -> None:
    with pytest.raises(JournalError, match="timezone-aware"):
        codec.utc(datetime(2026, 1, 1), "created_at")
    tz = timezone(timedelta(hours=3))
    assert codec.utc(T0.astimezone(tz), "x") == T0 and codec.utc(T0.astimezone(tz), "x").tzinfo == timezone.utc


def test_stored_times_come_back_aware_utc() -> None:
    from datetime import datetime, timedelta, timezone

    from gateway.journal.codec import utc_time

    want = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert utc_time("2026-03-01 12:00:00.123456") == want  # SQLite's text
    assert utc_time(datetime(2026, 3, 1, 12, 0, 0, 123456)) == want  # naive UTC
    cet = want.astimezone(timezone(timedelta(hours=1)))
    assert utc_time(cet) == want and utc_time(cet).tzinfo is timezone.utc  # PostgreSQL, other zone
    with pytest.raises(TypeError):
        utc_time(12)
