"""Secret parameters (``writeOnly: true``): their paths in a schema, masking, text redaction."""

from __future__ import annotations

from gateway.model import TaskState
from gateway.render.masking import Redactor, masked, redact_transition, secret_paths
from gateway.results import ErrorView, RollbackView, VerificationView
from gateway.secrets import MASK
from gateway.transitions import RecoveryChanges, TaskChanges, Transition

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "key": {"type": "string", "writeOnly": True},
        "auth": {"type": "object", "properties": {"user": {"type": "string"},
                                                  "password": {"type": "string", "writeOnly": True}}},
        "keys": {"type": "array", "writeOnly": True, "items": {"type": "string"}},
        "weird": {"writeOnly": "yes"},  # only the JSON boolean true marks a secret
    },
}


def test_the_paths_of_write_only_properties_nested_included() -> None:
    assert secret_paths(SCHEMA) == (("key",), ("auth", "password"), ("keys",))
    assert secret_paths({"type": "object"}) == ()


def test_masked_replaces_values_and_returns_them_without_touching_the_input() -> None:
    params = {"name": "eth1", "key": "k3y-value", "auth": {"user": "u", "password": "pw-12345"},
              "keys": ["one1", "two2"]}
    shown, values = masked(params, secret_paths(SCHEMA))
    assert shown == {"name": "eth1", "key": MASK, "auth": {"user": "u", "password": MASK}, "keys": MASK}
    assert values == ("k3y-value", "pw-12345", "one1", "two2")
    assert params["auth"] == {"user": "u", "password": "pw-12345"} and params["key"] == "k3y-value"
    assert masked({"name": "x", "auth": "not-a-mapping"}, secret_paths(SCHEMA)) == (
        {"name": "x", "auth": "not-a-mapping"}, ())
    assert masked({"key": None}, secret_paths(SCHEMA)) == ({"key": None}, ())


def test_redactor_masks_longest_first_and_skips_values_too_short_to_search() -> None:
    redact = Redactor(["abcd", "abcdef", "1"])
    assert redact("x abcdef y abcd z 1") == f"x {MASK} y {MASK} z 1"
    assert not Redactor(["1", ""]) and Redactor(["1"])("a1") == "a1"
    assert Redactor(["a.b(c"])("a.b(c and axb(c") == f"{MASK} and axb(c"  # values are literals


def test_a_transition_is_redacted_in_every_shown_text_and_its_recovery_kept() -> None:
    s = "s3cret-value"
    t = Transition(activation_id="a", task_id="t", phase="verify", state=TaskState.ROLLED_BACK.value,
                   message=f"m {s}",
                   task=TaskChanges(rendered=f"r {s}", diff=f"d {s}", note=f"n {s}",
                                    verification=VerificationView(ok=False, checked=1, mismatches=(f"x {s}",),
                                                                  detail=f"v {s}"),
                                    rollback=RollbackView(method="restore", ok=False, reason=f"w {s}", diff=s),
                                    error=ErrorView(kind="K", message=f"e {s}")),
                   recovery=RecoveryChanges(persist_id=s))
    out = redact_transition(t, Redactor([s]))
    assert s not in repr(out.task) and s not in out.message
    assert out.recovery is not None and out.recovery.changed() == {"persist_id": s}
    assert redact_transition(t, Redactor([])) is t
