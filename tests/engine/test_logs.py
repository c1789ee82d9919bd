"""`--log-format json`: every record of an activation's work carries its activation id, task id,
device and the correlation id of the call that started it; secrets never appear (the redaction
filter sees the records before the JSON formatter)."""

from __future__ import annotations

import io
import json
import logging
from typing import Iterator

import pytest

from gateway import logs
from gateway.engine import Engine
from gateway.inventory.redaction import RedactingFilter
from gateway.results import ActivationState
from tests.scripted_gateway import Gateway, kv, request

SECRET = "p4ssw0rd-7f3a"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    handler.addFilter(RedactingFilter(lambda: {SECRET}))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_records_of_an_activation_carry_its_ids_and_no_secret(gw: Gateway, engine: Engine,
                                                                    json_log: io.StringIO) -> None:
    gw.net.bug("c1", "load", RuntimeError(f"driver bug, the password was {SECRET}"))
    token = logs.correlation_id.set("corr-42")  # as the edge's interceptor does for a call
    try:
        submitted = await engine.submit(request(kv("a", "c1", "if.ge1", "up")))
    finally:
        logs.correlation_id.reset(token)
    await engine.wait_idle()
    assert (await engine.get(submitted.activation_id)).state != ActivationState.COMPLETED
    text = json_log.getvalue()
    assert SECRET not in text and "********" in text
    records = [json.loads(line) for line in text.splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    ours = [r for r in records if r.get("activation_id") == submitted.activation_id]
    assert ours, records
    assert all(r.get("correlation_id") == "corr-42" for r in ours)
    on_task = [r for r in ours if r.get("task_id") == "a"]
    assert on_task and all(r.get("device") == "c1" for r in on_task)
    assert any("exception" in r for r in on_task)  # the incident's traceback, redacted, in the object


def test_configure_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError):
        logs.configure(level=logging.INFO, fmt="xml")


def test_a_record_outside_any_work_has_no_ids(json_log: io.StringIO) -> None:
    logging.getLogger("agw.test").warning("plain %s", "record")
    (record,) = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert record["message"] == "plain record" and not set(logs.CONTEXT_FIELDS) & record.keys()
