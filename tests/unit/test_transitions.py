"""The typed journal records (gateway/transitions.py): what a Transition accepts, normalizes and
refuses when it is made, and the layering rule that keeps the journal free of the engine."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from drivers.base import Snapshot
from gateway.errors import JournalError, Phase
from gateway.journal import codec
from gateway.model import TaskState
from gateway.results import ActivationState, ErrorView, PhaseTiming, RollbackView, TaskResult, VerificationView
from gateway.secrets import MASK, Secret
from gateway.transitions import (
    RECOVERY_FIELDS,
    TASK_FIELDS,
    UNCHANGED,
    Pending,
    RecoveryChanges,
    TaskChanges,
    TaskRecovery,
    Transition,
)

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_pending_values_are_the_strings_journals_already_hold() -> None:
    assert {p.name: p.value for p in Pending} == {
        "NONE": "", "STAGED": "staged", "APPLIED": "applied", "CONFIRMED_COMMIT": "confirmed-commit",
    }
    assert TaskRecovery().pending is Pending.NONE


def test_the_change_types_name_exactly_the_mutable_fields() -> None:
    identity = {"id", "device", "service", "action", "depends_on", "parameters"}  # fixed at creation
    assert TASK_FIELDS == {f.name for f in dataclasses.fields(TaskResult)} - identity
    assert RECOVERY_FIELDS == {f.name for f in dataclasses.fields(TaskRecovery)}


def test_values_are_normalized_when_a_transition_is_made() -> None:
    timing = PhaseTiming(phase="push", started_at=T0, duration_ms=1.0)
    t = Transition(
        activation_id="a1", task_id="t1", phase=Phase.PUSH, state=TaskState.IN_PROGRESS,
        message=Secret("pw"),  # type: ignore[arg-type]
        task=TaskChanges(state="failed", timings=[timing]),  # type: ignore[arg-type]
        activation_state="fallout",  # type: ignore[arg-type]
        recovery=RecoveryChanges(pending="confirmed-commit", phase=Phase.COMMIT,  # type: ignore[arg-type]
                                 persist_id=Secret("pw")),  # type: ignore[arg-type]
    )
    assert (t.phase, t.state, t.message) == ("push", "inProgress", MASK)
    assert type(t.phase) is str and type(t.state) is str
    assert t.activation_state is ActivationState.FALLOUT
    assert t.task is not None and t.task.state is TaskState.FAILED and isinstance(t.task.timings, tuple)
    assert t.recovery is not None and t.recovery.pending is Pending.CONFIRMED_COMMIT
    assert (t.recovery.phase, t.recovery.persist_id) == ("commit", MASK)
    assert t.task.changed() == {"state": TaskState.FAILED, "timings": t.task.timings}
    assert t.recovery.changed() == {"persist_id": MASK, "pending": Pending.CONFIRMED_COMMIT, "phase": "commit"}
    assert repr(t.recovery) == ("RecoveryChanges(persist_id='********', "
                                "pending=<Pending.CONFIRMED_COMMIT: 'confirmed-commit'>, phase='commit')")


def test_emulated_notes_are_stored_as_a_tuple_of_text() -> None:
    notes = ["snapshot-and-restore instead of native rollback", "gateway-computed diff"]
    changes = TaskChanges(emulated=notes)  # type: ignore[arg-type]  # a list is taken, kept as a tuple
    assert changes.emulated == tuple(notes) and type(changes.emulated) is tuple
    assert changes.changed() == {"emulated": tuple(notes)}
    assert TaskChanges(emulated=(Phase.PUSH, Secret("pw"))).emulated == ("push", MASK)  # type: ignore[arg-type]
    assert TaskChanges(emulated=()).changed() == {"emulated": ()}  # cleared, not unchanged
    assert TaskChanges().emulated is UNCHANGED
    with pytest.raises(JournalError, match=r"emulated item must be a str, got int") as err:
        TaskChanges(emulated=("ok", 1))  # type: ignore[arg-type]
    assert err.value.retryable is False and err.value.phase is Phase.JOURNAL


def test_unchanged_is_not_none() -> None:
    clear = TaskChanges(verification=None, rollback=None, error=None)
    assert clear.changed() == {"verification": None, "rollback": None, "error": None}
    assert TaskChanges().changed() == {} and TaskChanges().note is UNCHANGED
    assert RecoveryChanges(snapshot=None).changed() == {"snapshot": None}
    cleared = RecoveryChanges(snapshot=None, pending=Pending.NONE)
    assert codec.recovery_values(cleared) == {"snapshot": None, "pending": ""}


def test_empty_changes_are_no_changes() -> None:
    t = Transition(activation_id="a1", task=TaskChanges(), recovery=RecoveryChanges())  # no task_id needed
    assert t.task is None and t.recovery is None


BAD: list[tuple[str, Callable[[], Any]]] = [
    ("event state", lambda: Transition(activation_id="a", state="bogus")),
    ("event state", lambda: Transition(activation_id="a", state="rolledback")),  # case matters
    ("activation state", lambda: Transition(activation_id="a", activation_state="done")),  # type: ignore[arg-type]
    ("task state", lambda: TaskChanges(state="done")),  # type: ignore[arg-type]
    ("pending", lambda: RecoveryChanges(pending="committed")),  # type: ignore[arg-type]
    ("pending", lambda: RecoveryChanges(pending=None)),  # type: ignore[arg-type]
    ("activation_id", lambda: Transition(activation_id=1)),  # type: ignore[arg-type]
    ("message", lambda: Transition(activation_id="a", message=b"bytes")),  # type: ignore[arg-type]
    ("actor", lambda: Transition(activation_id="a", actor=None)),  # type: ignore[arg-type]
    ("task_id", lambda: Transition(activation_id="a", task=TaskChanges(note="n"))),
    ("task_id", lambda: Transition(activation_id="a", recovery=RecoveryChanges(attempt=1))),
    ("TaskChanges", lambda: Transition(activation_id="a", task_id="t", task={"note": "n"})),  # type: ignore[arg-type]
    ("RecoveryChanges",
     lambda: Transition(activation_id="a", task_id="t", recovery={"attempt": 1})),  # type: ignore[arg-type]
    ("note", lambda: TaskChanges(note=3)),  # type: ignore[arg-type]
    ("verification", lambda: TaskChanges(verification="ok")),  # type: ignore[arg-type]
    ("rollback", lambda: TaskChanges(rollback=VerificationView(ok=True, checked=1))),  # type: ignore[arg-type]
    ("error", lambda: TaskChanges(error="boom")),  # type: ignore[arg-type]
    ("timings", lambda: TaskChanges(timings=("1ms",))),  # type: ignore[arg-type]
    ("emulated", lambda: TaskChanges(emulated=("snapshot-and-restore", 3))),  # type: ignore[arg-type]
    ("emulated", lambda: TaskChanges(emulated=(None,))),  # type: ignore[arg-type]
    ("emulated", lambda: TaskChanges(emulated="one note, not a tuple")),  # type: ignore[arg-type]
    ("emulated", lambda: TaskChanges(emulated=None)),  # type: ignore[arg-type]
    ("snapshot", lambda: RecoveryChanges(snapshot="<a/>")),  # type: ignore[arg-type]
    ("after", lambda: RecoveryChanges(after={"content": ""})),  # type: ignore[arg-type]
    ("attempt", lambda: RecoveryChanges(attempt=True)),
    ("attempt", lambda: RecoveryChanges(attempt="2")),  # type: ignore[arg-type]
    ("phase", lambda: RecoveryChanges(phase=1)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("what", "make"), BAD, ids=[f"{i}-{w}" for i, (w, _) in enumerate(BAD)])
def test_a_bad_value_is_refused_when_the_transition_is_made(what: str, make: Callable[[], Any]) -> None:
    with pytest.raises(JournalError) as err:
        make()
    assert err.value.retryable is False and err.value.phase is Phase.JOURNAL
    assert what.split()[0].lower() in str(err.value).lower()


def test_the_constructors_take_exactly_the_fields() -> None:
    for cls in (TaskChanges, RecoveryChanges, Transition):
        params = inspect.signature(cls).parameters
        assert list(params) == [f.name for f in dataclasses.fields(cls)], cls
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values()), cls
        defaults = [dataclasses.MISSING if p.default is inspect.Parameter.empty else p.default for p in params.values()]
        assert defaults == [f.default for f in dataclasses.fields(cls)], cls


def test_replace_and_equality_work_on_what_is_set() -> None:
    a = TaskChanges(note="n", state=TaskState.FAILED)
    assert a == TaskChanges(state="failed", note="n")  # type: ignore[arg-type]
    assert hash(a) == hash(TaskChanges(state=TaskState.FAILED, note="n")) and a != TaskChanges(note="n")
    b = dataclasses.replace(a, state=TaskState.COMPLETED)
    assert b.changed() == {"state": TaskState.COMPLETED, "note": "n"} and a.state is TaskState.FAILED
    t = Transition(activation_id="a", task_id="t", task=a)
    assert dataclasses.replace(t, message="m") == Transition(activation_id="a", task_id="t", task=a, message="m")


def test_unknown_fields_cannot_be_named_and_made_ones_cannot_change() -> None:
    with pytest.raises(TypeError):
        TaskChanges(device="other")  # type: ignore[call-arg]  # identity fields are fixed at creation
    with pytest.raises(TypeError):
        RecoveryChanges(password="x")  # type: ignore[call-arg]
    t = Transition(activation_id="a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.state = "completed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TaskChanges(note="n").note = "m"  # type: ignore[misc]


def test_every_typed_field_becomes_the_column_it_was() -> None:
    view = ErrorView(kind="K", message="m", phase="commit")
    changes = TaskChanges(
        state=TaskState.FALLOUT, platform="p", driver="netconf", rendered="r", diff="d",
        verification=VerificationView(ok=False, checked=2, mismatches=("x",)),
        rollback=RollbackView(method="restore", ok=False),
        error=view, timings=(PhaseTiming(phase="push", started_at=T0, duration_ms=2.5),), note="n",
        emulated=("gateway-computed diff",),
    )
    cols = codec.task_columns(changes)
    assert set(cols) == TASK_FIELDS and cols["state"] == "fallout"
    assert cols["emulated"] == '["gateway-computed diff"]' and codec.decode_texts(cols["emulated"]) == changes.emulated
    assert codec.decode_error(cols["error"]) == view and codec.decode_timings(cols["timings"]) == changes.timings
    snap = Snapshot(content="<a/>", scope="<f/>")
    rec = RecoveryChanges(snapshot=snap, after=snap, persist_id="p", pending=Pending.STAGED, phase="push", attempt=3)
    values = codec.recovery_values(rec)
    plain = {"content": "<a/>", "scope": "<f/>"}
    assert values == {"snapshot": plain, "after": plain, "persist_id": "p", "pending": "staged", "phase": "push",
                      "attempt": 3}
    assert codec.decode_recovery(json.dumps(values)) == TaskRecovery(snapshot=snap, after=snap, persist_id="p",
                                                                     pending=Pending.STAGED, phase="push", attempt=3)


# -- layering: the journal never imports the engine ---------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted([*(REPO / "gateway" / "journal").glob("*.py"),
                                         REPO / "gateway" / "results.py", REPO / "gateway" / "transitions.py"]),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_the_journal_and_its_types_import_nothing_of_the_engine(path: Path) -> None:
    engine = sorted(m for m in _imported_modules(path) if m == "gateway.engine" or m.startswith("gateway.engine."))
    assert engine == [], f"{path.relative_to(REPO)} imports {engine}"
    if path.parent.name != "journal":  # the shared types import neither side
        journal = sorted(m for m in _imported_modules(path) if m.startswith("gateway.journal"))
        assert journal == [], f"{path.relative_to(REPO)} imports {journal}"


def test_importing_the_journal_loads_no_engine_module() -> None:
    code = ("import sys, gateway.journal, gateway.journal.testing; "
            "print(sorted(m for m in sys.modules if m.startswith('gateway.engine')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_expect_is_a_set_of_activation_state_values() -> None:
    from gateway.results import ActivationState

    t = Transition(activation_id="a", expect=(ActivationState.COMPLETED, "partial"))  # type: ignore[arg-type]
    assert t.expect == frozenset({"completed", "partial"})
    assert dataclasses.replace(t, message="m").expect == t.expect
    with pytest.raises(Exception):
        Transition(activation_id="a", expect=("nonsense",))  # type: ignore[arg-type]
