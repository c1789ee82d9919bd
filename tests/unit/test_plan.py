"""Planning rules: structural checks, cycles, ordering, the final-state table."""

from __future__ import annotations

import pytest

from gateway.engine.plan import find_cycle, fingerprint, structural_violations, topological_order
from gateway.engine.runner import final_activation_state
from gateway.model import Action, ActivationRequest, TaskSpec, TaskState
from gateway.results import ActivationState


def t(tid: str, *deps: str, device: str = "nc1") -> TaskSpec:
    return TaskSpec(id=tid, device=device, service="interface", action=Action.CREATE,
                    parameters={"name": tid}, depends_on=tuple(deps))


def req(*tasks: TaskSpec, request_id: str = "r-1") -> ActivationRequest:
    return ActivationRequest(request_id=request_id, tasks=tasks)


def test_valid_request_has_no_violation() -> None:
    assert structural_violations(req(t("a"), t("b", "a"))) == []


def test_every_structural_problem_is_listed() -> None:
    found = structural_violations(req(t("a"), t("a"), t(""), t("c", "zz"), t("d", "d"), request_id=" "))
    fields = sorted(v.field for v in found)
    assert fields == ["request_id", "tasks[1].id", "tasks[2].id", "tasks[3].depends_on[0]", "tasks[4].depends_on[0]"]
    reasons = " ".join(v.reason for v in found)
    assert "duplicate task id 'a'" in reasons and "unknown task id 'zz'" in reasons and "itself" in reasons


def test_empty_task_list_is_refused() -> None:
    assert [v.field for v in structural_violations(req())] == ["tasks"]


def test_cycle_is_reported_with_its_path() -> None:
    found = structural_violations(req(t("a", "c"), t("b", "a"), t("c", "b")))
    assert len(found) == 1
    assert found[0].field.startswith("tasks[")
    assert "dependency cycle" in found[0].reason
    assert find_cycle([t("a", "c"), t("b", "a"), t("c", "b")])[0] == find_cycle([t("a", "c"), t("b", "a"), t("c", "b")])[-1]


def test_no_cycle_in_a_diamond() -> None:
    assert find_cycle([t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c")]) == []


def test_topological_order_respects_dependencies_and_request_order() -> None:
    order = [x.id for x in topological_order([t("d", "b", "c"), t("b", "a"), t("c", "a"), t("a")])]
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("c") < order.index("d")
    with pytest.raises(ValueError):
        topological_order([t("a", "b"), t("b", "a")])


def test_fingerprint_changes_with_content_not_with_request_id() -> None:
    base = req(t("a"))
    assert fingerprint(base) == fingerprint(req(t("a"), request_id="other"))
    changed = req(TaskSpec(id="a", device="nc1", service="interface", action=Action.CREATE, parameters={"name": "x"}))
    assert fingerprint(base) != fingerprint(changed)


@pytest.mark.parametrize(
    ("states", "cancelled", "expected"),
    [
        ([TaskState.COMPLETED, TaskState.COMPLETED], False, ActivationState.COMPLETED),
        ([TaskState.COMPLETED, TaskState.FALLOUT], False, ActivationState.FALLOUT),
        ([TaskState.ROLLED_BACK, TaskState.CANCELLED], False, ActivationState.ROLLED_BACK),
        ([TaskState.COMPLETED, TaskState.FAILED], False, ActivationState.PARTIAL),
        ([TaskState.FAILED, TaskState.CANCELLED], False, ActivationState.FAILED),
        ([TaskState.ROLLED_BACK, TaskState.CANCELLED], True, ActivationState.CANCELLED),
        ([TaskState.CANCELLED], False, ActivationState.CANCELLED),
    ],
)
def test_final_activation_state(states: list[TaskState], cancelled: bool, expected: ActivationState) -> None:
    assert final_activation_state(states, cancelled=cancelled) == expected


# -- long chains and cycles: iterative, linear, clipped messages ---------------------------------------
def chain(n: int, *, cycle_back_to: int | None = None) -> list[TaskSpec]:
    """t0 depends on t1, t1 on t2, ... (the last one depends on nothing, or on ``cycle_back_to``)."""
    last = () if cycle_back_to is None else (f"t{cycle_back_to}",)
    return [t(f"t{i}", f"t{i + 1}") for i in range(n - 1)] + [t(f"t{n - 1}", *last)]


def test_a_990_task_chain_is_valid_and_ordered_from_its_end() -> None:
    tasks = chain(990)
    assert structural_violations(req(*tasks)) == [] and find_cycle(tasks) == []
    assert [x.id for x in topological_order(tasks)] == [f"t{i}" for i in reversed(range(990))]


def test_chains_far_beyond_the_recursion_limit_are_fine() -> None:
    import sys

    n = sys.getrecursionlimit() * 20
    tasks = chain(n)
    assert find_cycle(tasks) == []
    order = topological_order(tasks)
    assert order[0].id == f"t{n - 1}" and order[-1].id == "t0"


def test_a_1000_task_cycle_is_one_violation_with_a_clipped_message() -> None:
    found = structural_violations(req(*chain(1000, cycle_back_to=0)))
    assert len(found) == 1
    reason = found[0].reason
    assert reason.startswith("dependency cycle of 1000 tasks: t0 -> t1 -> ")
    assert reason.endswith("-> ... 991 more -> t0") and reason.count("->") == 10 and len(reason) < 200
    with pytest.raises(ValueError):
        topological_order(chain(1000, cycle_back_to=0))


def test_a_long_chain_with_a_cycle_at_its_end_names_that_cycle() -> None:
    found = structural_violations(req(*chain(1000, cycle_back_to=997)))
    assert [(v.field, v.reason) for v in found] == [
        ("tasks[997].depends_on", "dependency cycle: t997 -> t998 -> t999 -> t997")]


def test_cycle_text_shows_short_cycles_whole() -> None:
    from gateway.engine.plan import MAX_CYCLE_IDS_SHOWN, cycle_text

    ids = [f"n{i}" for i in range(MAX_CYCLE_IDS_SHOWN)]
    assert cycle_text([*ids, ids[0]]) == "dependency cycle: " + " -> ".join([*ids, ids[0]])
    assert cycle_text(["a", "b", "a"]) == "dependency cycle: a -> b -> a"
