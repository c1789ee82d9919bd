"""An activation's own retry policy at the edge: SubmitRequest.retry (validated, each field named
when out of bounds, INVALID_ARGUMENT before the engine is called), in the idempotency check, in
the activation files of ``agw activate``, and through the client's conversion."""

from __future__ import annotations

import math

import pytest

from gateway.api import convert, status
from gateway.api.activation_file import parse_activation
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.errors import InputError
from gateway.model import ActivationRequest, RetryOverride
from tests.unit.test_api_server import Code, Edge, edge, rpc_error, submit  # noqa: F401 - edge is a fixture


async def test_the_policy_reaches_the_engine_and_is_journaled_with_the_task(edge: Edge) -> None:  # noqa: F811
    resp = await edge.stub.Submit(submit(retry=pb.RetryPolicy(attempts=4, max_delay_s=2.5)))
    req = edge.calls.last("submit").args[0]
    assert req.retry == RetryOverride(attempts=4, max_delay_s=2.5)
    got = await edge.outcome(resp.activation_id)
    assert got.state == pb.ACTIVATION_STATE_COMPLETED
    rec = await edge.engine.journal.recovery(resp.activation_id, "t1")
    assert rec.retry == RetryOverride(attempts=4, max_delay_s=2.5)
    assert got.HasField("retry") and (got.retry.attempts, got.retry.max_delay_s) == (4, 2.5)  # Get shows it
    assert not got.retry.HasField("deadline_s")  # a field not given stays the profile's
    assert convert.activation_from_proto(got).retry == {"attempts": 4, "max_delay_s": 2.5}


async def test_an_empty_policy_is_no_policy(edge: Edge) -> None:  # noqa: F811
    resp = await edge.stub.Submit(submit(retry=pb.RetryPolicy()))
    assert not (await edge.outcome(resp.activation_id)).HasField("retry")
    assert edge.calls.last("submit").args[0].retry is None


async def test_every_field_out_of_bounds_is_named_and_the_engine_is_not_called(edge: Edge) -> None:  # noqa: F811
    bad = pb.RetryPolicy(attempts=0, initial_delay_s=math.nan, max_delay_s=-1, deadline_s=3601)
    err = await rpc_error(edge.stub.Submit(submit(retry=bad)))
    assert err.code() == Code.INVALID_ARGUMENT
    fields = {v.field: v.reason for v in status.bad_request_details(err.trailing_metadata())}
    assert set(fields) == {"retry.attempts", "retry.initial_delay_s", "retry.max_delay_s", "retry.deadline_s"}
    assert "from 1 (no retry) to 20" in fields["retry.attempts"] and "at most 3600" in fields["retry.deadline_s"]
    err = await rpc_error(edge.stub.Submit(submit(retry=pb.RetryPolicy(attempts=21))))
    assert err.code() == Code.INVALID_ARGUMENT and "retry.attempts" in err.details()
    assert edge.calls.names() == []


async def test_the_same_request_id_with_another_policy_is_already_exists(edge: Edge) -> None:  # noqa: F811
    first = await edge.stub.Submit(submit(retry=pb.RetryPolicy(attempts=3)))
    again = await edge.stub.Submit(submit(retry=pb.RetryPolicy(attempts=3)))
    assert again.activation_id == first.activation_id and not again.created
    for other in (pb.RetryPolicy(attempts=4), None):
        err = await rpc_error(edge.stub.Submit(submit(retry=other)))
        assert err.code() == Code.ALREADY_EXISTS and "different content" in err.details()


def test_the_client_sends_the_policy_it_was_given() -> None:
    req = ActivationRequest(request_id="r", retry=RetryOverride(attempts=2, deadline_s=30))
    msg = convert.request_to_proto(req)
    assert msg.HasField("retry") and not msg.retry.HasField("max_delay_s")
    assert convert.request_from_proto(msg).retry == RetryOverride(attempts=2, deadline_s=30.0)
    assert not convert.request_to_proto(ActivationRequest(request_id="r")).HasField("retry")


TASKS = [{"id": "t", "device": "nc1", "service": "interface", "action": "create", "parameters": {"name": "e"}}]


def test_an_activation_file_may_carry_a_policy() -> None:
    req = parse_activation({"request_id": "r", "retry": {"attempts": 5, "max_delay_s": 4}, "tasks": TASKS})
    assert req.retry == RetryOverride(attempts=5, max_delay_s=4)
    assert parse_activation({"request_id": "r", "tasks": TASKS}).retry is None


@pytest.mark.parametrize("retry, field, reason", [
    ({"attempts": 0}, "retry.attempts", "from 1 (no retry) to 20"),
    ({"attempts": True}, "retry.attempts", "whole number"),
    ({"deadline_s": "60"}, "retry.deadline_s", "number of seconds"),
    ({"max_delay_s": 0}, "retry.max_delay_s", "greater than 0"),
    ({"backoff": 2}, "retry.backoff", "unknown field"),
    ([5], "retry", "must be a mapping"),
])
def test_a_bad_policy_in_a_file_is_named(retry: object, field: str, reason: str) -> None:
    with pytest.raises(InputError) as err:
        parse_activation({"request_id": "r", "retry": retry, "tasks": TASKS})
    assert [(v.field, reason in v.reason) for v in err.value.violations] == [(field, True)]
