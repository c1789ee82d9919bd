"""The contract: generated code is current, imports resolve as a package, translation round-trips."""

from __future__ import annotations

import filecmp
import importlib.util
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway.api import convert
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.errors import DeviceErrorInfo
from gateway.model import Action, ActivationRequest, TaskSpec, TaskState
from gateway.results import (
    ActivationResult,
    ActivationState,
    ErrorView,
    Event,
    PhaseTiming,
    RollbackView,
    TaskResult,
    VerificationView,
)

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "gateway" / "api" / "generated"


def _load_generate():
    spec = importlib.util.spec_from_file_location("agw_proto_generate", REPO / "proto" / "generate.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_committed_generated_code_matches_the_proto(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    subprocess.run([sys.executable, str(REPO / "proto" / "generate.py"), "--out", str(out)], check=True,
                   capture_output=True)
    assert _tree(out) == _tree(GENERATED)
    for rel in sorted(_tree(out)):
        assert filecmp.cmp(out / rel, GENERATED / rel, shallow=False), f"{rel} is stale: run `make proto`"


def test_imports_between_generated_modules_become_relative() -> None:
    gen = _load_generate()
    roots = frozenset({"activation", "common"})
    text = (
        "from google.protobuf import struct_pb2 as g\n"
        "from activation.v1 import activation_pb2 as a\n"
        "from common.v1 import money_pb2 as m\n"
    )
    out = gen.rewrite_imports(text, module_package=("activation", "v1"), local_roots=roots)
    assert out.splitlines() == [
        "from google.protobuf import struct_pb2 as g",
        "from . import activation_pb2 as a",
        "from ...common.v1 import money_pb2 as m",
    ]
    assert "from activation" not in (GENERATED / "activation" / "v1" / "activation_pb2_grpc.py").read_text()


def test_descriptor_keeps_the_clean_proto_path() -> None:
    assert pb.DESCRIPTOR.name == "activation/v1/activation.proto"
    assert pb.DESCRIPTOR.package == "agw.activation.v1"


T = datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=timezone.utc)


def test_results_round_trip_through_the_contract() -> None:
    task = TaskResult(
        id="t1", device="nc1", service="interface", action=Action.DELETE, state=TaskState.FALLOUT,
        depends_on=("t0",), platform="netconfd", driver="netconf", rendered="<config/>", diff="- x",
        verification=VerificationView(ok=False, checked=4, mismatches=("/a: expected '1', found '2'",), detail="d"),
        rollback=RollbackView(method="restore", ok=False, reason="unreachable", diff="+ y"),
        error=ErrorView(kind="DeviceRejectedError", message="m", phase="commit", retryable=True,
                        device_error=DeviceErrorInfo(message="bad", tag="invalid-value", path="/p", line="l",
                                                     extra=(("a", "1"), ("b", "2")))),
        timings=(PhaseTiming(phase="push", started_at=T, duration_ms=2.25),),
        note="n",
        emulated=("snapshot-and-restore instead of native rollback", "gateway-computed diff"),
    )
    bare = TaskResult(id="t0", device="r1", service="system", action=Action.MODIFY, state=TaskState.COMPLETED)
    for state in ActivationState:
        a = ActivationResult(id="a1", request_id="r", order_ref="o", atomic=False, state=state, created_at=T,
                             updated_at=T + timedelta(seconds=1), dry_run=True, tasks=(bare, task))
        assert convert.activation_from_proto(convert.activation_to_proto(a)) == a
    for ts in TaskState:
        t = TaskResult(id="x", device="d", service="s", action=Action.CREATE, state=ts)
        assert convert.task_from_proto(convert.task_to_proto(t)) == t
    ev = Event(activation_id="a1", seq=3, time=T, task_id="t1", phase="verify", state=TaskState.FAILED, message="m")
    back = convert.event_from_proto(convert.event_to_proto(ev))
    assert back.state == "failed" and back.time == T and back.seq == 3


def test_emulated_notes_are_translated_in_order() -> None:
    assert pb.TaskResult.DESCRIPTOR.fields_by_name["emulated"].number == 16
    notes = ("snapshot-and-restore instead of native rollback", "no confirmed-commit timer on the device")
    t = TaskResult(id="x", device="d", service="s", action=Action.MODIFY, state=TaskState.COMPLETED, emulated=notes)
    msg = convert.task_to_proto(t)
    assert list(msg.emulated) == list(notes)
    back = convert.task_from_proto(pb.TaskResult.FromString(msg.SerializeToString()))
    assert back.emulated == notes and type(back.emulated) is tuple
    # a message from a gateway that predates the field: nothing emulated
    assert convert.task_from_proto(pb.TaskResult(id="x", device="d", service="s")).emulated == ()
    assert convert.to_plain(t)["emulated"] == list(notes)  # --json


def test_request_round_trip_and_struct_numbers() -> None:
    req = ActivationRequest(request_id="r", order_ref="o", atomic=False, tasks=(
        TaskSpec(id="a", device="nc1", service="interface", action=Action.MODIFY,
                 parameters={"n": 7, "f": 2.5, "big": 2**53, "l": [1, {"x": 0}], "s": "v", "b": False, "z": None},
                 depends_on=()),
    ))
    msg = convert.request_to_proto(req)
    assert msg.HasField("atomic") and msg.tasks[0].action == pb.ACTION_MODIFY
    back = convert.request_from_proto(msg)
    assert back == req
    assert type(back.tasks[0].parameters["l"][1]["x"]) is int
    unset = pb.SubmitRequest(request_id="r", tasks=[pb.Task(id="a", device="d", service="s", action=pb.ACTION_CREATE)])
    assert convert.request_from_proto(unset).atomic is True


def test_to_plain_is_json_ready() -> None:
    import json

    t = TaskResult(id="x", device="d", service="s", action=Action.CREATE, state=TaskState.ROLLED_BACK,
                   error=ErrorView(kind="K", message="m", device_error=DeviceErrorInfo(message="e", extra=(("k", "v"),))))
    plain = convert.to_plain(t)
    assert plain["state"] == "rolledBack" and plain["error"]["device_error"]["extra"] == {"k": "v"}
    json.dumps(plain)
