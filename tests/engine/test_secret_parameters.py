"""Task parameters are journaled, shown and sent in result events, with a service's secret
parameters (``writeOnly: true``) masked: in the parameters, and in every text of the run (rendered
intent, diff, verification, errors). The journal file is searched byte by byte for the secret;
the only place it may be is the recovery record (what the device really held, needed to restore).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import DeviceRejectedError, Phase
from gateway.model import Action, TaskSpec, TaskState
from gateway.secrets import MASK
from tests.scripted_gateway import CLI, NC, NC1, TEMPLATE, Gateway, cut_overrun_grace, kv, task, write_templates

SECRET = "Tr0ub4dor-and-3"
SECRET_SERVICE = """\
description: one key of a scripted device, its value a secret
keys: [key]
parameters:
  type: object
  additionalProperties: false
  required: [key]
  properties:
    key: {type: string, pattern: "^[a-z]+[.][a-z0-9]+$"}
    value: {type: string, writeOnly: true, pattern: "^[A-Za-z0-9 _-]*$"}
    note: {type: string}
"""


@pytest.fixture
def secret_templates(tmp_path: Path) -> Path:
    root = write_templates(tmp_path / "templates")
    (root / "skv").mkdir()
    (root / "skv" / "service.yaml").write_text(SECRET_SERVICE)
    for platform in (NC, NC1, CLI):
        (root / "skv" / f"{platform}.j2").write_text(TEMPLATE)
    return root


def skv(tid: str, device: str, value: str = SECRET) -> TaskSpec:
    return TaskSpec(id=tid, device=device, service="skv", action=Action.CREATE,
                    parameters={"key": "if.ge1", "value": value, "note": "plain"})


def journal_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: db.execute(f"SELECT * FROM {t}").fetchall() for t in tables}


def where_secret(path: Path) -> set[str]:
    """``table.column`` of every stored value holding the secret."""
    found: set[str] = set()
    with sqlite3.connect(path) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            cur = db.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                found.update(f"{table}.{n}" for n, v in zip(names, row) if SECRET in str(v))
    return found


async def test_parameters_are_journaled_shown_and_sent_with_secrets_masked(
        tmp_path: Path, secret_templates: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch)
    g = Gateway.create(tmp_path, templates_root=secret_templates)
    try:
        engine = await g.engine()
        result = await g.run(engine, skv("a", "r1"), kv("b", "r2", "if.ge2", "up"))
        assert result.state.value == "completed"
        assert g.net.config("r1")["if.ge1"] == SECRET  # the device got the real value
        a, b = task(result, "a"), task(result, "b")
        assert a.parameters == {"key": "if.ge1", "value": MASK, "note": "plain"}
        assert b.parameters == {"key": "if.ge2", "value": "up"}
        assert SECRET not in a.rendered and MASK in a.rendered and "if.ge1" in a.rendered
        assert SECRET not in a.diff and MASK in a.diff
        payload = json.loads(journal_rows(g.journal_path)["agw_outbox"][0][5])
        sent = {t["id"]: t for t in payload["tasks"]}
        assert sent["a"]["parameters"] == {"key": "if.ge1", "value": MASK, "note": "plain"}
        assert sent["b"]["parameters"] == {"key": "if.ge2", "value": "up"}
        assert where_secret(g.journal_path) <= {"agw_tasks.recovery"}
    finally:
        await g.close()


async def test_a_failed_push_and_its_rollback_mask_the_secret_in_every_text(
        tmp_path: Path, secret_templates: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The device echoes the secret in its refusal, and a mismatch names the value: neither the
    error, the verification nor the events keep it."""
    cut_overrun_grace(monkeypatch)
    g = Gateway.create(tmp_path, templates_root=secret_templates)
    try:
        engine = await g.engine()
        g.net.fail("r1", "validate", DeviceRejectedError(f"bad value {SECRET!r} for if.ge1", device="r1",
                                                                 phase=Phase.VALIDATE))
        failed = await g.run(engine, skv("a", "r1"), request_id="refused")
        assert task(failed, "a").state is TaskState.ROLLED_BACK
        error = task(failed, "a").error
        assert error is not None and SECRET not in error.message and MASK in error.message
        g.net.mismatch("r1")
        mismatched = await g.run(engine, skv("a", "r1"), request_id="mismatch")
        t = task(mismatched, "a")
        assert t.state is TaskState.ROLLED_BACK and t.verification is not None and not t.verification.ok
        shown = " ".join(t.verification.mismatches) + t.verification.detail + t.diff + t.rendered
        assert SECRET not in shown
        events = [e for e in journal_rows(g.journal_path)["agw_events"]]
        assert all(SECRET not in str(e) for e in events)
        assert where_secret(g.journal_path) <= {"agw_tasks.recovery"}
    finally:
        await g.close()


async def test_a_dry_run_masks_the_secret(tmp_path: Path, secret_templates: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.scripted_gateway import request

    cut_overrun_grace(monkeypatch)
    g = Gateway.create(tmp_path, templates_root=secret_templates)
    try:
        engine = await g.engine()
        result = await engine.dry_run(request(skv("a", "r1")))
        a = task(result, "a")
        assert a.parameters["value"] == MASK and SECRET not in a.rendered + a.diff and MASK in a.diff
    finally:
        await g.close()


async def test_logs_mask_the_secret_parameters_of_running_activations(
        tmp_path: Path, secret_templates: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """What ``agw serve`` installs (gateway.app.build_engine): the log filter knows the secret
    values of the activations running, so a device error quoting one is logged masked."""
    import logging

    from gateway.inventory import RedactingFilter

    cut_overrun_grace(monkeypatch)
    g = Gateway.create(tmp_path, templates_root=secret_templates)
    try:
        engine = await g.engine()
        caplog.handler.addFilter(RedactingFilter(lambda: engine.ctx.secret_values()))
        caplog.set_level(logging.DEBUG)
        g.net.fail("r1", "validate", DeviceRejectedError(f"bad value {SECRET!r} for if.ge1", device="r1",
                                                         phase=Phase.VALIDATE))
        await g.run(engine, skv("a", "r1"))
        assert "bad value" in caplog.text and MASK in caplog.text  # the error was logged, masked
        assert SECRET not in caplog.text
        assert engine.ctx.secret_values() == frozenset()  # forgotten once the run ended
    finally:
        await g.close()
